//! The master keys both binaries start with: the environment's versions and the KMS-held versions the
//! `master_keys` table lists (each decrypted once by the KMS and checked against its stored key check value),
//! built into one keyring; adding a KMS-held version (`byoc keys create --kms`) and listing every version
//! (`byoc keys list`).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use byoc_credential_store::service::stored_key_version;
use byoc_credential_store::{CredentialRepository, NewMasterKey, StoredMasterKey};
use byoc_crypto::{KeyCheckValue, KeyVersion, Keyring, MASTER_KEYS_VAR};
use chrono::Utc;

use crate::config::{invalid, EnvironmentKeys};
use crate::kms::held::{
    unwrap_held_versions, wrap_new_version, HeldKeyError, HeldVersion, RetryPolicy,
};
use crate::kms::{Kms, KmsKeyId, WrappedMasterKey};
use crate::services::StartupError;

/// Where the KMS client comes from when the database lists KMS-held versions.
#[derive(Clone)]
pub enum KmsAccess {
    /// AWS KMS configured by the SDK's standard chain (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL_KMS`),
    /// set up only when a version is KMS-held; needs the `kms` feature.
    Environment,
    /// This client (a mock in tests, or another KMS).
    Given(Arc<dyn Kms>),
}

impl KmsAccess {
    /// The client.
    pub async fn client(&self) -> Result<Arc<dyn Kms>, StartupError> {
        match self {
            KmsAccess::Given(kms) => Ok(Arc::clone(kms)),
            KmsAccess::Environment => environment_kms().await,
        }
    }
}

#[cfg(feature = "kms")]
async fn environment_kms() -> Result<Arc<dyn Kms>, StartupError> {
    crate::kms::aws::AwsKms::from_environment()
        .await
        .map(|kms| Arc::new(kms) as Arc<dyn Kms>)
        .map_err(|error| StartupError::Setup(error.to_string()))
}

#[cfg(not(feature = "kms"))]
async fn environment_kms() -> Result<Arc<dyn Kms>, StartupError> {
    Err(StartupError::Setup(
        "KMS: master key versions are held by KMS but this build has no KMS client (cargo feature `kms`)"
            .to_owned(),
    ))
}

/// A stored row as a [`HeldVersion`]; a row the store's constraints should have kept out is refused by name.
fn held_version(row: &StoredMasterKey) -> Result<HeldVersion, StartupError> {
    let version = KeyVersion::new(row.key_version.get())
        .map_err(|error| StartupError::Setup(format!("master_keys: {error}")))?;
    let bad_row = |what: &str| {
        StartupError::Setup(format!(
            "master_keys: version {version} has an unusable {what}"
        ))
    };
    Ok(HeldVersion {
        version,
        kms_key: KmsKeyId::parse(&row.kms_key_id).map_err(|_| bad_row("kms_key_id"))?,
        wrapped: WrappedMasterKey::from_bytes(row.ciphertext.clone()),
        check_value: KeyCheckValue::from_bytes(&row.check_value)
            .map_err(|_| bad_row("check_value"))?,
    })
}

/// The keyring a start built, and what the process knows of its KMS (`KmsStatus::none()` without KMS-held
/// versions). No credential read or write calls KMS after this.
pub struct StartKeyring {
    /// The environment's and the KMS-held versions.
    pub keyring: Keyring,
    /// How many versions are KMS-held, when KMS last answered, and how to ask it again.
    pub kms: KmsStatus,
}

/// What a process holding KMS-held master keys knows of its KMS: how many versions it holds from it, when KMS
/// last answered (the start-up decryption, then each [`KmsStatus::check`]), and a version to check it with.
/// Cloning shares the time of the last contact.
#[derive(Clone)]
pub struct KmsStatus {
    held_versions: usize,
    last_success: Arc<AtomicI64>,
    probe: Option<(Arc<dyn Kms>, HeldVersion)>,
}

impl std::fmt::Debug for KmsStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsStatus")
            .field("held_versions", &self.held_versions)
            .field("last_success", &self.last_success())
            .finish()
    }
}

impl KmsStatus {
    /// No KMS-held version: nothing to check, never contacted.
    pub fn none() -> KmsStatus {
        KmsStatus {
            held_versions: 0,
            last_success: Arc::new(AtomicI64::new(0)),
            probe: None,
        }
    }

    /// How many master key versions this process holds from KMS.
    pub fn held_versions(&self) -> usize {
        self.held_versions
    }

    /// Unix time (seconds) of the last successful KMS contact; 0 when there was none.
    pub fn last_success(&self) -> i64 {
        self.last_success.load(Ordering::Relaxed)
    }

    /// Asks KMS to decrypt one KMS-held version again (one attempt) and checks it against its key check value,
    /// then drops it: proof that a restart now would find its keys. On success records the time of contact.
    /// Without KMS-held versions it does nothing. Credentials never wait for this: the keys in use stay in
    /// memory whatever KMS answers.
    pub async fn check(&self) -> Result<(), HeldKeyError> {
        let Some((kms, version)) = &self.probe else {
            return Ok(());
        };
        let once = RetryPolicy {
            attempts: 1,
            first_backoff: std::time::Duration::ZERO,
        };
        unwrap_held_versions(kms.as_ref(), std::slice::from_ref(version), &once).await?;
        self.last_success
            .store(Utc::now().timestamp(), Ordering::Relaxed);
        Ok(())
    }
}

/// Builds the keyring: the environment's versions and every KMS-held version (decrypted once, with a bounded
/// retry while KMS is unreachable, and checked against its key check value). Without any version at all the
/// start is refused naming `BYOC_MASTER_KEYS`.
pub async fn build_keyring(
    keys: &EnvironmentKeys,
    repository: &dyn CredentialRepository,
    kms: &KmsAccess,
    retry: &RetryPolicy,
) -> Result<StartKeyring, StartupError> {
    let held = repository
        .master_keys()
        .await?
        .iter()
        .map(held_version)
        .collect::<Result<Vec<_>, _>>()?;
    let (unwrapped, kms) = match held.first() {
        None => (Vec::new(), KmsStatus::none()),
        Some(first) => {
            let client = kms.client().await?;
            let unwrapped = unwrap_held_versions(client.as_ref(), &held, retry).await?;
            tracing::info!(versions = held.len(), "decrypted the KMS-held master keys");
            let status = KmsStatus {
                held_versions: held.len(),
                last_success: Arc::new(AtomicI64::new(Utc::now().timestamp())),
                probe: Some((client, first.clone())),
            };
            (unwrapped, status)
        }
    };
    if keys.is_empty() && unwrapped.is_empty() {
        return Err(invalid(
            MASTER_KEYS_VAR,
            "required when DATABASE_URL is set (or the legacy CREDENTIAL_ENCRYPTION_KEY, or a KMS-held version \
             made with `byoc keys create --kms`)",
        )
        .into());
    }
    let keyring = keys
        .keyring(unwrapped)
        .map_err(crate::config::ConfigError::from)?;
    Ok(StartKeyring { keyring, kms })
}

/// A version `byoc keys create --kms` added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedVersion {
    /// The new version.
    pub version: KeyVersion,
    /// Its key check value.
    pub check_value: KeyCheckValue,
}

/// Adds a KMS-held master key version: the next version after every one in use (environment, `master_keys`,
/// stored check values, credentials), a fresh key encrypted by `kms` under `kms_key` with the version's
/// encryption context, stored as ciphertext with its check value. The key itself is never stored or shown.
pub async fn create_kms_held_version(
    keys: &EnvironmentKeys,
    repository: &dyn CredentialRepository,
    kms: &dyn Kms,
    kms_key: &KmsKeyId,
) -> Result<CreatedVersion, StartupError> {
    let mut highest = keys.versions().last().map_or(0, |version| version.get());
    for row in repository.master_keys().await? {
        highest = highest.max(row.key_version.get());
    }
    for value in repository.key_check_values().await? {
        highest = highest.max(value.key_version.get());
    }
    for count in repository.credentials_per_key_version().await? {
        highest = highest.max(count.key_version.get());
    }
    let version = highest
        .checked_add(1)
        .and_then(|next| KeyVersion::new(next).ok())
        .ok_or_else(|| StartupError::Setup("every key version number is taken".to_owned()))?;
    let (wrapped, check_value) = wrap_new_version(kms, kms_key, version).await?;
    repository
        .operator_add_master_key(&NewMasterKey {
            key_version: stored_key_version(version),
            kms_key_id: kms_key.to_string(),
            ciphertext: wrapped.as_bytes().to_vec(),
            check_value: check_value.as_bytes().to_vec(),
        })
        .await?;
    repository
        .insert_key_check_value_if_absent(stored_key_version(version), check_value.as_bytes())
        .await?;
    Ok(CreatedVersion {
        version,
        check_value,
    })
}

/// Where a master key version is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeldBy {
    /// `BYOC_MASTER_KEYS` (or the legacy key).
    Environment,
    /// The `master_keys` table, encrypted under this KMS key.
    Kms(String),
    /// Nowhere this process knows: credentials or a check value name the version, but no key is configured.
    Missing,
}

/// One line of `byoc keys list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionListing {
    /// The version.
    pub version: KeyVersion,
    /// Where its key is held.
    pub held_by: HeldBy,
    /// Whether it wraps new data keys.
    pub active: bool,
    /// Its key check value, when its key is in the keyring.
    pub check_value: Option<KeyCheckValue>,
    /// How many credentials it wraps.
    pub credentials: u64,
}

/// Every version the keyring, `master_keys` or the credentials know, in ascending order.
pub async fn list_versions(
    keyring: &Keyring,
    repository: &dyn CredentialRepository,
) -> Result<Vec<VersionListing>, StartupError> {
    let held: BTreeMap<NonZeroU32, String> = repository
        .master_keys()
        .await?
        .into_iter()
        .map(|row| (row.key_version, row.kms_key_id))
        .collect();
    let counts: BTreeMap<NonZeroU32, u64> = repository
        .credentials_per_key_version()
        .await?
        .into_iter()
        .map(|count| (count.key_version, count.credentials))
        .collect();
    let mut versions: Vec<NonZeroU32> = keyring.versions().map(stored_key_version).collect();
    versions.extend(held.keys().copied());
    versions.extend(counts.keys().copied());
    versions.sort_unstable();
    versions.dedup();
    versions
        .into_iter()
        .map(|number| {
            let version = KeyVersion::new(number.get())
                .map_err(|error| StartupError::Setup(format!("key version: {error}")))?;
            let held_by = match (held.get(&number), keyring.contains(version)) {
                (Some(kms_key), _) => HeldBy::Kms(kms_key.clone()),
                (None, true) => HeldBy::Environment,
                (None, false) => HeldBy::Missing,
            };
            Ok(VersionListing {
                version,
                held_by,
                active: keyring.active_version() == version,
                check_value: keyring.key_check_value(version),
                credentials: counts.get(&number).copied().unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use byoc_crypto::MasterKey;
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::{Deployment, RuntimeConfig};
    use crate::kms::held::HeldKeyError;
    use crate::kms::{KmsContext, KmsError};

    /// A KMS in memory: a ciphertext is an index into the keys it encrypted, bound to the key and context.
    #[derive(Default)]
    struct MemoryKms {
        keys: Mutex<Vec<([u8; 32], KmsKeyId, KmsContext)>>,
        decrypts: AtomicU32,
        disabled: Mutex<bool>,
    }

    #[async_trait]
    impl Kms for MemoryKms {
        async fn encrypt_master_key(
            &self,
            key: &KmsKeyId,
            master_key: &MasterKey,
            context: &KmsContext,
        ) -> Result<WrappedMasterKey, KmsError> {
            let mut keys = self.keys.lock().expect("lock");
            keys.push((
                *master_key.expose_for_wrapping(),
                key.clone(),
                context.clone(),
            ));
            Ok(WrappedMasterKey::from_bytes(
                (keys.len() as u32 - 1).to_be_bytes().to_vec(),
            ))
        }

        async fn decrypt_master_key(
            &self,
            key: &KmsKeyId,
            wrapped: &WrappedMasterKey,
            context: &KmsContext,
        ) -> Result<MasterKey, KmsError> {
            self.decrypts.fetch_add(1, Ordering::SeqCst);
            if *self.disabled.lock().expect("lock") {
                return Err(KmsError::Refused {
                    key: key.to_string(),
                    reason: "DisabledException: the key is disabled".to_owned(),
                });
            }
            let index = u32::from_be_bytes(wrapped.as_bytes().try_into().expect("4 bytes"));
            let keys = self.keys.lock().expect("lock");
            match keys.get(index as usize) {
                Some((bytes, made_with, made_in)) if made_with == key && made_in == context => {
                    Ok(MasterKey::from_bytes(*bytes))
                }
                _ => Err(KmsError::Refused {
                    key: key.to_string(),
                    reason: "InvalidCiphertextException".to_owned(),
                }),
            }
        }
    }

    fn environment_keys(variables: &[(&str, &str)]) -> EnvironmentKeys {
        let config = RuntimeConfig::from_lookup(|name| {
            variables
                .iter()
                .chain(&[
                    ("DATABASE_URL", "sqlite://unused.db"),
                    ("BYOC_JWT_SECRET", "a-jwt-secret-of-at-least-32-characters"),
                ])
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
        .expect("valid configuration");
        match config.deployment {
            Deployment::Configured { keys, .. } => keys,
            Deployment::Dev => panic!("a database is configured"),
        }
    }

    fn no_wait() -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            first_backoff: Duration::ZERO,
        }
    }

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn CredentialRepository> {
        byoc_credential_store::connect(&format!(
            "sqlite://{}",
            dir.path().join("byoc.db").display()
        ))
        .await
        .expect("sqlite store")
    }

    #[tokio::test]
    async fn without_kms_held_versions_there_is_nothing_to_check() {
        let status = KmsStatus::none();
        assert_eq!((status.held_versions(), status.last_success()), (0, 0));
        status.check().await.expect("nothing to ask");
        assert_eq!(status.last_success(), 0);
    }

    #[tokio::test]
    async fn environment_and_kms_held_versions_make_one_keyring() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repository = store(&dir).await;
        let env_key = MasterKey::generate();
        let list = format!("1:{}", env_key.to_hex().expose_secret());
        let keys = environment_keys(&[("BYOC_MASTER_KEYS", &list)]);
        let kms = Arc::new(MemoryKms::default());
        let alias = KmsKeyId::parse("alias/byoc").expect("valid");

        let created = create_kms_held_version(&keys, repository.as_ref(), kms.as_ref(), &alias)
            .await
            .expect("created");
        assert_eq!(
            created.version.get(),
            2,
            "after the environment's version 1"
        );
        let stored = repository.master_keys().await.expect("rows");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].kms_key_id, "alias/byoc");
        assert_eq!(
            stored[0].check_value,
            created.check_value.as_bytes().to_vec()
        );

        let access = KmsAccess::Given(kms.clone());
        let before = kms.decrypts.load(Ordering::SeqCst);
        let started = build_keyring(&keys, repository.as_ref(), &access, &no_wait())
            .await
            .expect("keyring");
        assert_eq!(started.kms.held_versions(), 1);
        assert!(started.kms.last_success() > 0, "KMS answered at start");
        let keyring = started.keyring;
        assert_eq!(
            kms.decrypts.load(Ordering::SeqCst) - before,
            1,
            "one Decrypt per version"
        );
        assert_eq!(
            keyring.versions().map(KeyVersion::get).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(keyring.active_version().get(), 2, "the highest of all");
        assert_eq!(
            keyring.key_check_value(created.version),
            Some(created.check_value)
        );

        let pinned = environment_keys(&[
            ("BYOC_MASTER_KEYS", &list),
            ("BYOC_ACTIVE_KEY_VERSION", "1"),
        ]);
        let keyring = build_keyring(&pinned, repository.as_ref(), &access, &no_wait())
            .await
            .expect("keyring")
            .keyring;
        assert_eq!(
            keyring.active_version().get(),
            1,
            "BYOC_ACTIVE_KEY_VERSION picks among all"
        );

        let listed = list_versions(&keyring, repository.as_ref())
            .await
            .expect("list");
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].held_by, HeldBy::Environment);
        assert!(listed[0].active);
        assert_eq!(listed[1].held_by, HeldBy::Kms("alias/byoc".to_owned()));
        assert_eq!(listed[1].check_value, Some(created.check_value));

        let unknown = environment_keys(&[
            ("BYOC_MASTER_KEYS", &list),
            ("BYOC_ACTIVE_KEY_VERSION", "9"),
        ]);
        let line = build_keyring(&unknown, repository.as_ref(), &access, &no_wait())
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(line.starts_with("BYOC_ACTIVE_KEY_VERSION:"), "{line}");
    }

    #[tokio::test]
    async fn kms_held_versions_alone_suffice_and_a_refusing_kms_stops_the_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repository = store(&dir).await;
        let none = environment_keys(&[]);
        let access = KmsAccess::Given(Arc::new(MemoryKms::default()));
        let line = build_keyring(&none, repository.as_ref(), &access, &no_wait())
            .await
            .err()
            .expect("no key at all")
            .to_string();
        assert!(
            line.starts_with("BYOC_MASTER_KEYS:") && line.contains("keys create --kms"),
            "{line}"
        );

        let kms = Arc::new(MemoryKms::default());
        let alias = KmsKeyId::parse("alias/only").expect("valid");
        let created = create_kms_held_version(&none, repository.as_ref(), kms.as_ref(), &alias)
            .await
            .expect("created");
        assert_eq!(
            created.version.get(),
            1,
            "the first version of a fresh install"
        );
        let access = KmsAccess::Given(kms.clone());
        let started = build_keyring(&none, repository.as_ref(), &access, &no_wait())
            .await
            .expect("KMS-held keys alone");
        assert_eq!(started.keyring.active_version().get(), 1);
        let status = started.kms;
        status.last_success.store(1, Ordering::Relaxed);
        status.check().await.expect("KMS answers the check");
        assert!(status.last_success() > 1, "a check records the contact");

        *kms.disabled.lock().expect("lock") = true;
        status.last_success.store(1, Ordering::Relaxed);
        let line = status.check().await.expect_err("disabled").to_string();
        assert!(line.contains("KMS key alias/only"), "{line}");
        assert_eq!(status.last_success(), 1, "a failed check records nothing");
        assert_eq!(
            started.keyring.active_version().get(),
            1,
            "the keys in memory stay"
        );
        let error = build_keyring(&none, repository.as_ref(), &access, &no_wait())
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(error, StartupError::Kms(HeldKeyError::Kms { .. })),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "master key version 1: KMS key alias/only: KMS refused: DisabledException: the key is disabled"
        );
    }

    #[tokio::test]
    async fn after_the_start_credential_reads_never_call_kms() {
        use byoc_credential_store::postgres::DatabaseRole;
        use byoc_credential_store::{DisplayName, HotLeadThreshold, OrganizationName, ServiceName};
        use byoc_credential_types::{E164Phone, TwilioAccountSid, TwilioCredential};

        use crate::Services;

        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("byoc.db").display());
        let config = RuntimeConfig::from_lookup(|name| match name {
            "DATABASE_URL" => Some(url.clone()),
            "BYOC_JWT_SECRET" => Some("a-jwt-secret-of-at-least-32-characters".to_owned()),
            _ => None,
        })
        .expect("valid");
        let keys = match &config.deployment {
            Deployment::Configured { keys, .. } => keys.clone(),
            Deployment::Dev => panic!("configured"),
        };
        let kms = Arc::new(MemoryKms::default());
        {
            let repository = store(&dir).await;
            let alias = KmsKeyId::parse("alias/byoc").expect("valid");
            create_kms_held_version(&keys, repository.as_ref(), kms.as_ref(), &alias)
                .await
                .expect("created");
        }
        let before_start = kms.decrypts.load(Ordering::SeqCst);
        let services = Services::open_with_kms(
            &config,
            DatabaseRole::Operator,
            &KmsAccess::Given(kms.clone()),
        )
        .await
        .expect("starts on the KMS-held key alone");
        assert_eq!(
            kms.decrypts.load(Ordering::SeqCst) - before_start,
            1,
            "one Decrypt at start"
        );
        let organization = services
            .repository
            .operator_create_organization(
                &OrganizationName::parse("KMS clinic").expect("valid"),
                HotLeadThreshold::DEFAULT,
            )
            .await
            .expect("organization");
        let twilio = TwilioCredential {
            account_sid: TwilioAccountSid::parse("accountSid", &format!("AC{}", "a".repeat(32)))
                .expect("valid"),
            auth_token: secrecy::SecretString::from("kms-test-token".to_owned()),
            phone_number: E164Phone::parse_dialable("phoneNumber", "+14155550123").expect("valid"),
        };
        services
            .credential_service
            .import(
                organization.id,
                ServiceName::parse("byoc-cli").expect("valid"),
                "tester",
                &twilio,
                DisplayName::parse("Twilio").expect("valid"),
            )
            .await
            .expect("stored under the KMS-held key");
        let after_start = kms.decrypts.load(Ordering::SeqCst);
        for _ in 0..20 {
            let report = services
                .credential_service
                .check_all()
                .await
                .expect("check");
            assert_eq!((report.ok, report.failures.len()), (1, 0));
        }
        assert_eq!(
            kms.decrypts.load(Ordering::SeqCst),
            after_start,
            "20 decrypting reads, 0 KMS calls"
        );
        services
            .credential_service
            .shutdown()
            .await
            .expect("flushed");
    }

    #[tokio::test]
    async fn a_replaced_ciphertext_is_refused_by_its_check_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repository = store(&dir).await;
        let none = environment_keys(&[]);
        let kms = Arc::new(MemoryKms::default());
        let alias = KmsKeyId::parse("alias/byoc").expect("valid");
        create_kms_held_version(&none, repository.as_ref(), kms.as_ref(), &alias)
            .await
            .expect("created");
        // Another key encrypted under the same KMS key and context takes the place of the stored one.
        {
            let mut keys = kms.keys.lock().expect("lock");
            let (_, key, context) = keys[0].clone();
            keys[0] = ([0x5a; 32], key, context);
        }
        let line = build_keyring(
            &none,
            repository.as_ref(),
            &KmsAccess::Given(kms),
            &no_wait(),
        )
        .await
        .err()
        .expect("refused")
        .to_string();
        assert!(
            line.starts_with("master key version 1: KMS key alias/byoc")
                && line.contains("check value"),
            "{line}"
        );
    }
}
