//! The credential service: the facade a Rust service calls when it wants "organization X's Twilio
//! credential", and nothing lower.
//!
//! [`CredentialService`] seals payloads with the keyring (bound to org, type and id) and stores them, lists
//! metadata, hands out decrypted credentials that are active and verified (typed
//! [`CredentialServiceError::NotConfigured`] otherwise), records verification outcomes, runs the providers'
//! verifiers, deactivates and purges, imports the legacy env credentials, and audits every access and change.
//!
//! - **Cache.** Decrypted credentials are cached per (organization, type) for the configured TTL
//!   (`BYOC_CACHE_TTL_SECS`, default 60 s, 0 turns it off). Concurrent misses for one key share one database
//!   read and one decryption (moka's `try_get_with`). Every change made through this service invalidates its
//!   key at once; [`CredentialService::follow_changes`] does the same for changes made by other replicas
//!   (Postgres `LISTEN`). A load that overlaps an invalidation is not cached.
//! - **Database outage.** While that listener is disconnected the cache is not trusted: every lookup reads
//!   the database, so no replica serves a value another replica changed. Only when the database cannot
//!   answer (unreachable, or no answer within [`OUTAGE_READ_WAIT`]; for [`OUTAGE_MEMORY`] after such a
//!   read, without asking again) is the cached value served, until its TTL. So hot-lead SMS and
//!   availability keep working through a short outage with the credentials, member roles
//!   ([`CredentialService::member_role`]) and organization settings ([`CredentialService::organization`])
//!   last read. The listener drops the credential cache when it listens again, since notifications may
//!   have been missed (roles and organizations are refreshed by every read that reaches the database).
//! - **Audit.** Events are queued without waiting and written in batches per organization by a background
//!   task, so a cached read costs no database round trip; changes wait for their event to be written
//!   (a flush). [`CredentialService::shutdown`] writes everything left.
//! - **Keys.** [`check_keyring`] at start-up, [`rotate`] and [`check_all`] for the operator (see [`keys`]).
//! - **Fallback.** [`LegacyTwilioFallback`] for organizations listed in `BYOC_LEGACY_FALLBACK_ORGS`.

mod audit;
mod error;
pub mod keys;
mod legacy;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use byoc_credential_types::{CredentialJson, CredentialPayload, GoogleCalendarCredential};
use byoc_crypto::{EnvelopeContext, Keyring, Plaintext};
use moka::future::Cache;
use tokio::task::JoinHandle;

use crate::access::{check, Need};
use crate::model::{
    AuditAction, AuditEvent, AuditPage, CredentialMetadata, CredentialRecord, CredentialType,
    DisplayName, EncryptedEnvelope, InvalidValue, NewAuditEvent, NewCredential, Organization,
    ProviderAccountId, PublicHint, Purpose, Role, VerificationOutcome, VerificationStatus,
};
use crate::repository::{ChangeListener, CredentialRepository};
use crate::tenant::{Actor, CredentialId, OrgId, ServiceName, Tenant, UserId};

pub use audit::AuditError;
pub use error::{CredentialServiceError, ServiceResult};
pub use keys::{
    check_all, check_keyring, rotate, stored_key_version, CheckReport, EnvelopeFailure,
    KeyringMismatch, KeyringReport, RotationOptions, RotationProgress, RotationReport,
};
pub use legacy::LegacyTwilioFallback;

use legacy::Fallback;

/// The cache TTL when `BYOC_CACHE_TTL_SECS` is not set.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Decrypted credentials kept at most, by default.
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;
/// Rows per batch of [`CredentialService::check_all`].
const CHECK_BATCH: u32 = 2_000;
/// While the change listener is disconnected, how long a lookup waits for the database before it answers
/// from the cache (when the cache holds the answer; otherwise it waits for the database).
pub const OUTAGE_READ_WAIT: Duration = Duration::from_millis(500);

/// While the change listener is disconnected, how long after a read found the database unavailable further
/// reads go straight to the cache without waiting [`OUTAGE_READ_WAIT`] again. Short, so that a database that
/// is back is read again within a second.
pub const OUTAGE_MEMORY: Duration = Duration::from_secs(1);

/// Loads retried when an invalidation overlapped them, before reading past the cache.
const LOAD_ATTEMPTS: usize = 3;

/// Parses `BYOC_CACHE_TTL_SECS` (whole seconds; unset means [`DEFAULT_CACHE_TTL`], 0 turns the cache off).
pub fn cache_ttl_from_env(value: Option<&str>) -> Result<Duration, InvalidValue> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_CACHE_TTL),
        Some(text) => text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| InvalidValue {
                field: "BYOC_CACHE_TTL_SECS",
                reason: "must be a whole number of seconds (0 turns the cache off)",
            }),
    }
}

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// How long a decrypted credential is served from memory; zero turns the cache off.
    pub cache_ttl: Duration,
    /// Most decrypted credentials kept in memory.
    pub cache_capacity: u64,
    /// The service principal this service acts as when it reacts on its own (it marks a credential failed
    /// when the provider refuses a use: [`CredentialService::record_refused_use`]).
    pub service_name: ServiceName,
    /// The transition fallback to the legacy Twilio credentials, if configured.
    pub legacy_fallback: Option<LegacyTwilioFallback>,
}

impl ServiceConfig {
    /// The defaults (60 s cache, no fallback) for a service principal.
    pub fn new(service_name: ServiceName) -> ServiceConfig {
        ServiceConfig {
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            service_name,
            legacy_fallback: None,
        }
    }
}

/// A decrypted stored credential as cached.
struct StoredSecret {
    metadata: CredentialMetadata,
    plaintext: Plaintext,
}

enum Secret {
    Stored(Arc<StoredSecret>),
    Legacy {
        credential_type: CredentialType,
        json: Arc<CredentialJson>,
    },
}

/// A decrypted credential, ready to use. The JSON payload is reachable only through
/// [`DecryptedCredential::expose_json`] or [`DecryptedCredential::parse`]; the bytes are zeroed when the
/// last holder (cache entry or caller) drops them; `Debug` shows the type and id only.
pub struct DecryptedCredential {
    secret: Secret,
}

impl DecryptedCredential {
    /// The provider.
    pub fn credential_type(&self) -> CredentialType {
        match &self.secret {
            Secret::Stored(stored) => stored.metadata.credential_type,
            Secret::Legacy {
                credential_type, ..
            } => *credential_type,
        }
    }

    /// The stored credential's metadata; `None` for the legacy fallback.
    pub fn metadata(&self) -> Option<&CredentialMetadata> {
        match &self.secret {
            Secret::Stored(stored) => Some(&stored.metadata),
            Secret::Legacy { .. } => None,
        }
    }

    /// The stored credential's id; `None` for the legacy fallback.
    pub fn id(&self) -> Option<CredentialId> {
        self.metadata().map(|metadata| metadata.id)
    }

    /// Whether this is the legacy env credential served by the transition fallback.
    pub fn is_legacy_fallback(&self) -> bool {
        matches!(self.secret, Secret::Legacy { .. })
    }

    /// The decrypted JSON payload. Keep the borrow short; do not copy it into types that are not zeroed.
    pub fn expose_json(&self) -> &[u8] {
        match &self.secret {
            Secret::Stored(stored) => stored.plaintext.expose_secret(),
            Secret::Legacy { json, .. } => json.as_bytes(),
        }
    }

    /// Parses the payload as the provider's type (its secrets are `SecretString`s).
    pub fn parse<P: CredentialPayload>(&self) -> ServiceResult<P> {
        let provider = self.credential_type();
        if P::KIND != provider {
            return Err(CredentialServiceError::NotConfigured { provider: P::KIND });
        }
        P::from_json_bytes(self.expose_json())
            .map_err(|source| CredentialServiceError::InvalidPayload { provider, source })
    }
}

impl fmt::Debug for DecryptedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedCredential")
            .field("credential_type", &self.credential_type())
            .field("id", &self.id())
            .field("legacy_fallback", &self.is_legacy_fallback())
            .finish_non_exhaustive()
    }
}

/// A credential parsed as its provider's payload type.
#[derive(Debug)]
pub struct UsableCredential<P> {
    /// The stored credential's id; `None` for the legacy fallback (record SMS with no credential id).
    pub credential_id: Option<CredentialId>,
    /// Whether this is the legacy env credential served by the transition fallback.
    pub legacy_fallback: bool,
    /// The payload; its secrets are `SecretString`s.
    pub payload: P,
}

/// Which credential [`CredentialService::get_payload_any_status`] decrypts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSelector {
    /// The organization's newest active credential of the payload's type (by creation time, then id),
    /// whatever its verification status.
    NewestActive,
    /// This credential, which must be active and of the payload's type.
    Id(CredentialId),
}

/// The audit actions the service writes.
struct Actions {
    created: AuditAction,
    read: AuditAction,
    verified: AuditAction,
    verification_failed: AuditAction,
    verification_reset: AuditAction,
    deactivated: AuditAction,
    purged: AuditAction,
    updated: AuditAction,
    legacy_fallback_used: AuditAction,
}

impl Actions {
    fn new() -> Actions {
        let action =
            |name| AuditAction::parse(name).expect("the service's audit action names are valid");
        Actions {
            created: action("created"),
            read: action("read"),
            verified: action("verified"),
            verification_failed: action("verification_failed"),
            verification_reset: action("verification_reset"),
            deactivated: action("deactivated"),
            purged: action("purged"),
            updated: action("updated"),
            legacy_fallback_used: action("legacy_fallback_used"),
        }
    }
}

type CacheKey = (OrgId, CredentialType);

/// Where an answer came from: the store, or a cache because the store could not answer. A last-known
/// answer is never cached again (that would extend it past its TTL).
enum Answer<T> {
    /// Read from the store now.
    Fresh(T),
    /// Served from a cache during a database outage.
    LastKnown(T),
}

impl<T> Answer<T> {
    fn into_inner(self) -> T {
        match self {
            Answer::Fresh(value) | Answer::LastKnown(value) => value,
        }
    }
}

/// Why a cached load did not produce a value.
#[derive(Clone)]
enum LoadError {
    /// An invalidation overlapped the load: its value may be stale and is not cached.
    Stale,
    /// The load failed.
    Failed(CredentialServiceError),
}

/// Credential lookups since start: how many the cache answered and how many read the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answered from the cache of decrypted credentials.
    pub hits: u64,
    /// Read from the store and decrypted (a miss, or the cache off or not trusted).
    pub misses: u64,
    /// Answered from the cache because the database could not answer (an outage): credentials, member
    /// roles and organizations served as last read, within their TTL.
    pub outage_answers: u64,
}

struct Inner {
    repository: Arc<dyn CredentialRepository>,
    keyring: Arc<Keyring>,
    cache: Option<Cache<CacheKey, Arc<StoredSecret>>>,
    /// Bumped on every invalidation; a load that sees it change is not cached.
    generation: AtomicU64,
    /// False while the change listener is reconnecting: lookups read the database then, and use the cache
    /// only when the database cannot answer.
    cache_trusted: AtomicBool,
    /// Member roles last read, for a database outage (never served while the database answers).
    roles: Option<Cache<(OrgId, UserId), Role>>,
    /// Organizations last read, for a database outage (never served while the database answers).
    organizations: Option<Cache<OrgId, Organization>>,
    /// Credential lookups answered from the cache.
    cache_hits: AtomicU64,
    /// Credential lookups that read the store (cache miss, cache off or not trusted).
    cache_misses: AtomicU64,
    /// Answers served from a cache because the database could not answer.
    outage_answers: AtomicU64,
    /// When a read last found the database unavailable, in milliseconds since `started` (0: never).
    unreachable_at_ms: AtomicU64,
    /// When the service started (the origin of `unreachable_at_ms`).
    started: std::time::Instant,
    audit: audit::AuditBatcher,
    fallback: Option<Fallback>,
    service_name: ServiceName,
    actions: Actions,
    followers: Mutex<Vec<JoinHandle<()>>>,
}

/// The credential service. Cheap to clone; build one per process (inside a tokio runtime) and share it.
#[derive(Clone)]
pub struct CredentialService {
    inner: Arc<Inner>,
}

impl fmt::Debug for CredentialService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialService")
            .field("keyring", &self.inner.keyring)
            .field("cache", &self.inner.cache.is_some())
            .field("pending_audit_events", &self.pending_audit_events())
            .finish_non_exhaustive()
    }
}

impl CredentialService {
    /// Runs the start-up key check ([`check_keyring`]) and, when it passes, starts the service. A mismatch
    /// refuses before the service writes anything.
    pub async fn start(
        repository: Arc<dyn CredentialRepository>,
        keyring: Arc<Keyring>,
        config: ServiceConfig,
    ) -> Result<(CredentialService, KeyringReport), KeyringMismatch> {
        let report = check_keyring(repository.as_ref(), &keyring).await?;
        Ok((CredentialService::new(repository, keyring, config), report))
    }

    /// Starts the service without the key check (for callers that ran [`check_keyring`] themselves, and
    /// tests). Spawns the audit writer on the current tokio runtime.
    pub fn new(
        repository: Arc<dyn CredentialRepository>,
        keyring: Arc<Keyring>,
        config: ServiceConfig,
    ) -> CredentialService {
        let cache = new_cache(&config);
        let roles = new_cache(&config);
        let organizations = new_cache(&config);
        let audit = audit::AuditBatcher::start(Arc::clone(&repository));
        CredentialService {
            inner: Arc::new(Inner {
                repository,
                keyring,
                cache,
                generation: AtomicU64::new(0),
                cache_trusted: AtomicBool::new(true),
                roles,
                organizations,
                cache_hits: AtomicU64::new(0),
                cache_misses: AtomicU64::new(0),
                outage_answers: AtomicU64::new(0),
                unreachable_at_ms: AtomicU64::new(0),
                started: std::time::Instant::now(),
                audit,
                fallback: Fallback::new(config.legacy_fallback),
                service_name: config.service_name,
                actions: Actions::new(),
                followers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The repository underneath (for what the facade does not cover: organizations, members, OAuth
    /// states, SMS messages, usage counters).
    pub fn repository(&self) -> &Arc<dyn CredentialRepository> {
        &self.inner.repository
    }

    /// The keyring.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.inner.keyring
    }

    // Storing and listing.

    /// Encrypts `payload` (bound to org, type and a fresh id) and stores it, `pending`, created by the
    /// tenant's user (owner or admin). Audited as `created`.
    pub async fn store<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        payload: &P,
        display_name: DisplayName,
    ) -> ServiceResult<CredentialMetadata> {
        let credential = self.new_credential(tenant.org_id, payload, display_name)?;
        let metadata = self
            .inner
            .repository
            .insert_credential(tenant, &credential)
            .await?;
        self.changed(
            tenant,
            &self.inner.actions.created,
            &metadata,
            serde_json::json!({"display_name": metadata.display_name}),
        )
        .await;
        Ok(metadata)
    }

    /// Operator: encrypts and stores `payload` in `org_id` with no user (`byoc import-env`), audited as
    /// `created` by the service `actor` with `source: import-env` in the same transaction (on Postgres, the
    /// store must be the operator's).
    pub async fn import<P: CredentialPayload>(
        &self,
        org_id: OrgId,
        actor: ServiceName,
        payload: &P,
        display_name: DisplayName,
    ) -> ServiceResult<CredentialMetadata> {
        let credential = self.new_credential(org_id, payload, display_name)?;
        let detail = serde_json::json!({
            "display_name": credential.display_name.as_str(),
            "source": "import-env",
        });
        let metadata = self
            .inner
            .repository
            .operator_insert_credential(org_id, &credential, &actor, &detail)
            .await?;
        self.inner
            .invalidate(metadata.org_id, metadata.credential_type)
            .await;
        Ok(metadata)
    }

    /// Every credential of the organization (active or not), metadata only, newest first.
    pub async fn list(&self, tenant: &Tenant) -> ServiceResult<Vec<CredentialMetadata>> {
        Ok(self.inner.repository.list_credentials(tenant).await?)
    }

    /// One credential's metadata (`Store(NotFound)` for a missing one or another organization's).
    pub async fn metadata(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> ServiceResult<CredentialMetadata> {
        Ok(self
            .inner
            .repository
            .get_credential(tenant, id)
            .await?
            .metadata)
    }

    // Using credentials.

    /// The organization's active, verified credential of `credential_type`, decrypted, for `purpose`
    /// (such as `sms:hot_lead`). Audited as `read` with the purpose (queued: a cached read costs no
    /// database round trip). With no usable credential: [`CredentialServiceError::NotConfigured`], except
    /// for Twilio in an organization allowed the legacy fallback, which gets the legacy credential (logged,
    /// audited as `legacy_fallback_used`, counted).
    pub async fn get_credential(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
        purpose: &Purpose,
    ) -> ServiceResult<DecryptedCredential> {
        let credential = self.usable_credential(tenant, credential_type).await?;
        self.audit_use(tenant, &credential, purpose);
        Ok(credential)
    }

    /// [`CredentialService::get_payload`] for a caller that uses the credential only to authenticate a request
    /// signed with it (Twilio's status callback): the read is audited only when `authenticates` accepts the
    /// payload. `Ok(None)` when it does not, and nothing is audited, so forged requests leave no trace in the
    /// organization's audit log (count them elsewhere).
    pub async fn get_payload_if<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        purpose: &Purpose,
        authenticates: impl FnOnce(&P) -> bool,
    ) -> ServiceResult<Option<UsableCredential<P>>> {
        let credential = self.usable_credential(tenant, P::KIND).await?;
        let payload: P = credential.parse()?;
        if !authenticates(&payload) {
            return Ok(None);
        }
        self.audit_use(tenant, &credential, purpose);
        Ok(Some(UsableCredential {
            credential_id: credential.id(),
            legacy_fallback: credential.is_legacy_fallback(),
            payload,
        }))
    }

    /// The provider's id of the account (Twilio's Account SID; not a secret) of the credential that
    /// [`CredentialService::get_credential`] would serve for `credential_type`, known without decrypting or
    /// auditing anything: a caller can refuse a request made for another account before it decrypts. `None`
    /// when the credential was stored without one; the legacy fallback's account for
    /// an organization allowed it; [`CredentialServiceError::NotConfigured`] without a usable credential.
    pub async fn provider_account_id(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> ServiceResult<Option<String>> {
        let inner = &self.inner;
        if let Some(cache) = inner.cache.as_ref() {
            if inner.cache_trusted.load(Ordering::Acquire) {
                if let Some(hit) = cache.get(&(tenant.org_id, credential_type)).await {
                    return Ok(hit.metadata.provider_account_id.clone());
                }
            }
        }
        let usable = inner
            .repository
            .get_active_credential(tenant, credential_type)
            .await?
            .filter(|record| is_usable(&record.metadata));
        if let Some(record) = usable {
            return Ok(record.metadata.provider_account_id);
        }
        inner
            .fallback
            .as_ref()
            .filter(|_| credential_type == CredentialType::Twilio)
            .and_then(|fallback| fallback.account_sid_for(tenant.org_id))
            .map(|account_sid| Some(account_sid.to_owned()))
            .ok_or(CredentialServiceError::NotConfigured {
                provider: credential_type,
            })
    }

    /// The credential [`CredentialService::get_credential`] serves, not audited yet: the organization's usable
    /// one, or for Twilio the legacy fallback when the organization is allowed it.
    async fn usable_credential(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> ServiceResult<DecryptedCredential> {
        match self.lookup(tenant, credential_type).await {
            Ok(stored) => Ok(DecryptedCredential {
                secret: Secret::Stored(stored),
            }),
            Err(CredentialServiceError::NotConfigured { provider })
                if provider == CredentialType::Twilio =>
            {
                let json = self
                    .inner
                    .fallback
                    .as_ref()
                    .and_then(|fallback| fallback.payload_for(tenant.org_id))
                    .ok_or(CredentialServiceError::NotConfigured { provider })?;
                Ok(DecryptedCredential {
                    secret: Secret::Legacy {
                        credential_type,
                        json,
                    },
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Audits one use of `credential` for `purpose` (queued, never waits): `read`, or for the legacy fallback
    /// `legacy_fallback_used`, which is also logged and counted.
    fn audit_use(&self, tenant: &Tenant, credential: &DecryptedCredential, purpose: &Purpose) {
        let detail = serde_json::json!({"purpose": purpose.as_str()});
        let credential_type = Some(credential.credential_type());
        match &credential.secret {
            Secret::Stored(stored) => self.record(
                tenant,
                &self.inner.actions.read,
                Some(stored.metadata.id),
                credential_type,
                detail,
            ),
            Secret::Legacy { .. } => {
                if let Some(fallback) = &self.inner.fallback {
                    fallback.count_use();
                }
                tracing::warn!(
                    org_id = %tenant.org_id,
                    purpose = purpose.as_str(),
                    "no usable Twilio credential: using the legacy TWILIO_* credentials (transition fallback)"
                );
                self.record(
                    tenant,
                    &self.inner.actions.legacy_fallback_used,
                    None,
                    credential_type,
                    detail,
                );
            }
        }
    }

    /// [`CredentialService::get_credential`] parsed as the provider's payload type `P` (for example
    /// `TwilioCredential`).
    pub async fn get_payload<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        purpose: &Purpose,
    ) -> ServiceResult<UsableCredential<P>> {
        let credential = self.get_credential(tenant, P::KIND, purpose).await?;
        Ok(UsableCredential {
            credential_id: credential.id(),
            legacy_fallback: credential.is_legacy_fallback(),
            payload: credential.parse()?,
        })
    }

    /// For owners and admins: a credential decrypted **whatever its verification status** (pending, failed
    /// or verified), for `purpose`. Reconnecting Google Calendar needs the organization's own OAuth client
    /// precisely when its credential went `failed`, which [`CredentialService::get_payload`] never serves.
    ///
    /// Only active credentials are decrypted: [`CredentialSelector::NewestActive`] answers
    /// [`CredentialServiceError::NotConfigured`] when the organization has no active credential of the type,
    /// [`CredentialSelector::Id`] answers [`CredentialServiceError::Inactive`] for a deactivated one and
    /// `NotConfigured` for one of another type. Members and services get `Store(Forbidden)`. Never cached,
    /// never the legacy fallback. Audited as `read` with the purpose and the verification status found.
    pub async fn get_payload_any_status<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        which: CredentialSelector,
        purpose: &Purpose,
    ) -> ServiceResult<UsableCredential<P>> {
        let wanted = P::KIND;
        let role = self.inner.repository.member_role(tenant).await?;
        check(&tenant.actor, role, Need::Manager)?;
        let id = match which {
            CredentialSelector::Id(id) => id,
            CredentialSelector::NewestActive => self
                .inner
                .repository
                .list_credentials(tenant)
                .await?
                .into_iter()
                .find(|metadata| metadata.credential_type == wanted && metadata.is_active)
                .map(|metadata| metadata.id)
                .ok_or(CredentialServiceError::NotConfigured { provider: wanted })?,
        };
        let record = self.inner.repository.get_credential(tenant, id).await?;
        let metadata = &record.metadata;
        if metadata.credential_type != wanted {
            return Err(CredentialServiceError::NotConfigured { provider: wanted });
        }
        if !metadata.is_active {
            return Err(CredentialServiceError::Inactive { id });
        }
        let payload: P = self.inner.open_payload(tenant.org_id, &record)?;
        self.record(
            tenant,
            &self.inner.actions.read,
            Some(id),
            Some(wanted),
            serde_json::json!({
                "purpose": purpose.as_str(),
                "verification_status": metadata.verification_status.as_str(),
            }),
        );
        Ok(UsableCredential {
            credential_id: Some(id),
            legacy_fallback: false,
            payload,
        })
    }

    /// How many times the legacy fallback was used since start (for the API's metrics).
    pub fn legacy_fallback_uses(&self) -> u64 {
        self.inner.fallback.as_ref().map_or(0, Fallback::uses)
    }

    /// Credential lookups since start, answered from the cache and not (for the API's metrics).
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.cache_hits.load(Ordering::Relaxed),
            misses: self.inner.cache_misses.load(Ordering::Relaxed),
            outage_answers: self.inner.outage_answers.load(Ordering::Relaxed),
        }
    }

    /// Whether the database may be unreachable: the change listener (Postgres, after
    /// [`CredentialService::follow_changes`]) lost its connection and does not listen again yet. Callers can
    /// queue writes instead of waiting for the pool then. Always false without a listener.
    pub fn database_in_doubt(&self) -> bool {
        !self.inner.cache_trusted.load(Ordering::Acquire)
    }

    /// The caller's role in the organization (`None`: not a member; services have none), read from the
    /// store on every call. When the store cannot answer (a database outage), the role last read for this
    /// user is answered until the cache TTL, so members keep using cached credentials through the outage.
    pub async fn member_role(&self, tenant: &Tenant) -> ServiceResult<Option<Role>> {
        let read = async { Ok(self.inner.repository.member_role(tenant).await?) };
        let (Some(roles), Actor::User(user_id)) = (&self.inner.roles, &tenant.actor) else {
            return read.await;
        };
        let key = (tenant.org_id, *user_id);
        match self
            .inner
            .fresh_or_last_known(read, roles.get(&key).await.map(Some))
            .await?
        {
            Answer::Fresh(Some(role)) => {
                roles.insert(key, role).await;
                Ok(Some(role))
            }
            Answer::Fresh(None) => {
                roles.invalidate(&key).await;
                Ok(None)
            }
            Answer::LastKnown(role) => Ok(role),
        }
    }

    /// The caller's organization (name, hot-lead threshold), read from the store on every call; through a
    /// database outage, the organization as last read until the cache TTL (as [`CredentialService::member_role`]).
    pub async fn organization(&self, tenant: &Tenant) -> ServiceResult<Organization> {
        let read = async { Ok(self.inner.repository.get_organization(tenant).await?) };
        let Some(organizations) = &self.inner.organizations else {
            return read.await;
        };
        match self
            .inner
            .fresh_or_last_known(read, organizations.get(&tenant.org_id).await)
            .await?
        {
            Answer::Fresh(organization) => {
                organizations
                    .insert(tenant.org_id, organization.clone())
                    .await;
                Ok(organization)
            }
            Answer::LastKnown(organization) => Ok(organization),
        }
    }

    async fn lookup(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> ServiceResult<Arc<StoredSecret>> {
        let inner = &self.inner;
        let Some(cache) = inner.cache.as_ref() else {
            inner.cache_misses.fetch_add(1, Ordering::Relaxed);
            return inner.load(tenant, credential_type).await;
        };
        let key = (tenant.org_id, credential_type);
        if !inner.cache_trusted.load(Ordering::Acquire) {
            inner.cache_misses.fetch_add(1, Ordering::Relaxed);
            let last_known = cache.get(&key).await;
            return inner
                .fresh_or_last_known(inner.load(tenant, credential_type), last_known)
                .await
                .map(Answer::into_inner);
        }
        if let Some(hit) = cache.get(&key).await {
            inner.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        inner.cache_misses.fetch_add(1, Ordering::Relaxed);
        for _ in 0..LOAD_ATTEMPTS {
            let generation = inner.generation.load(Ordering::Acquire);
            let load = async {
                let stored = inner
                    .load(tenant, credential_type)
                    .await
                    .map_err(LoadError::Failed)?;
                if inner.generation.load(Ordering::Acquire) == generation {
                    Ok(stored)
                } else {
                    Err(LoadError::Stale)
                }
            };
            match cache.try_get_with(key, load).await {
                Ok(stored) => return Ok(stored),
                Err(error) => match error.as_ref() {
                    LoadError::Stale => continue,
                    LoadError::Failed(error) => return Err(error.clone()),
                },
            }
        }
        inner.load(tenant, credential_type).await
    }

    // Verification.

    /// Records a verification outcome (status, error; the store's time) for a credential, audited as
    /// `verified`, `verification_failed` or `verification_reset`. Owners, admins and services may record one;
    /// a member's use that the provider refuses goes through [`CredentialService::record_refused_use`].
    /// `error` is the provider's reason, never a secret.
    pub async fn record_verification(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        status: VerificationStatus,
        error: Option<String>,
    ) -> ServiceResult<CredentialMetadata> {
        let outcome = VerificationOutcome { status, error };
        let metadata = self
            .inner
            .repository
            .record_verification(tenant, id, &outcome)
            .await?;
        let detail = match &outcome.error {
            Some(reason) => serde_json::json!({"error": reason}),
            None => serde_json::json!({}),
        };
        self.changed(tenant, self.verification_action(status), &metadata, detail)
            .await;
        Ok(metadata)
    }

    /// Marks a credential `failed` because its provider refused a use (an SMS the provider refused with a
    /// credential error, an availability check that hit `invalid_grant`). Recording a verification outcome is
    /// an owner's or admin's action, which a member's request only triggers, so the service records it in its
    /// own name ([`ServiceConfig::service_name`], a service context: on Postgres, the service login). Audited
    /// as `verification_failed` with the provider's reason and who triggered it.
    pub async fn record_refused_use(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        reason: String,
    ) -> ServiceResult<CredentialMetadata> {
        let service = Tenant::service(tenant.org_id, self.inner.service_name.clone());
        let outcome = VerificationOutcome {
            status: VerificationStatus::Failed,
            error: Some(reason),
        };
        let metadata = self
            .inner
            .repository
            .record_verification(&service, id, &outcome)
            .await?;
        self.changed(
            &service,
            &self.inner.actions.verification_failed,
            &metadata,
            serde_json::json!({"error": outcome.error, "triggered_by": tenant.actor.to_string()}),
        )
        .await;
        Ok(metadata)
    }

    /// The credential `id` decrypted for verifying it against its provider: owners, admins and services only
    /// (verifying is an admin's action), active credentials only ([`CredentialServiceError::Inactive`]
    /// otherwise), whatever its verification status. Never cached, not audited as a read: the outcome
    /// recorded with [`CredentialService::record_verification`] is the audit of a verification.
    pub async fn credential_to_verify(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> ServiceResult<DecryptedCredential> {
        let role = self.inner.repository.member_role(tenant).await?;
        check(&tenant.actor, role, Need::ManagerOrService)?;
        let record = self.inner.repository.get_credential(tenant, id).await?;
        if !record.metadata.is_active {
            return Err(CredentialServiceError::Inactive { id });
        }
        let plaintext = self.inner.open(
            tenant.org_id,
            record.metadata.credential_type,
            id,
            &record.encrypted_data,
        )?;
        Ok(DecryptedCredential {
            secret: Secret::Stored(Arc::new(StoredSecret {
                metadata: record.metadata,
                plaintext,
            })),
        })
    }

    /// Replaces a credential's payload with `payload` (owner or admin), sealed with a fresh data key under the
    /// active key version and bound to the same (org, type, id): for a provider that handed back a changed
    /// credential while it was verified. Audited as `updated` with `reason`.
    pub async fn replace_payload(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        payload: &CredentialJson,
        reason: &str,
    ) -> ServiceResult<CredentialMetadata> {
        let current = self.metadata(tenant, id).await?;
        let (envelope, version) = self.inner.seal(
            tenant.org_id,
            current.credential_type,
            id,
            payload.as_bytes(),
        )?;
        let metadata = self
            .inner
            .repository
            .update_envelope(tenant, id, &envelope, version)
            .await?;
        self.changed(
            tenant,
            &self.inner.actions.updated,
            &metadata,
            serde_json::json!({ "reason": reason }),
        )
        .await;
        Ok(metadata)
    }

    /// Stores the refresh token Google rotated while the credential was in use (an availability check by
    /// any member or a calling service), so the connection survives Google retiring the old token.
    ///
    /// Only the refresh token of `rotated` is taken; every other field stays as stored. The payload is
    /// re-sealed with a fresh data key under the active key version, bound to the same (org, type, id), and
    /// written with [`CredentialRepository::replace_rotated_envelope`]: a compare-and-swap against the
    /// envelope just read, allowed to members and services but only for an active Google Calendar
    /// credential and only for the envelope columns (on Postgres through the narrow SECURITY DEFINER
    /// function of migration 0009, not the owner/admin update policy). The cached credential is dropped here
    /// (and on other replicas through the change notification) and the change is audited as `updated` with
    /// `{reason: "refresh token rotated by Google", purpose}` before this returns.
    ///
    /// Returns the updated metadata, or `None` when nothing needed writing: the stored token is already the
    /// rotated one, or another request replaced the envelope first. A deactivated credential is left alone
    /// ([`CredentialServiceError::Inactive`]); an id that is not a Google Calendar credential of the
    /// organization is `Store(NotFound)`.
    pub async fn store_rotated_refresh_token(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        rotated: &GoogleCalendarCredential,
        purpose: &Purpose,
    ) -> ServiceResult<Option<CredentialMetadata>> {
        let provider = CredentialType::GoogleCalendar;
        let record = self.inner.repository.get_credential(tenant, id).await?;
        if record.metadata.credential_type != provider {
            return Err(crate::StoreError::NotFound {
                what: "Google Calendar credential",
            }
            .into());
        }
        if !record.metadata.is_active {
            return Err(CredentialServiceError::Inactive { id });
        }
        let (current, updated) = {
            let stored: GoogleCalendarCredential =
                self.inner.open_payload(tenant.org_id, &record)?;
            let updated = stored.with_refresh_token(rotated.refresh_token.clone());
            (stored.to_json_bytes(), updated.to_json_bytes())
        };
        if current.as_bytes() == updated.as_bytes() {
            return Ok(None);
        }
        let (envelope, version) =
            self.inner
                .seal(tenant.org_id, provider, id, updated.as_bytes())?;
        let Some(metadata) = self
            .inner
            .repository
            .replace_rotated_envelope(tenant, id, &record.encrypted_data, &envelope, version)
            .await?
        else {
            tracing::debug!(
                org_id = %tenant.org_id,
                credential_id = %id,
                "the Google Calendar credential changed meanwhile; the rotated refresh token was not written again"
            );
            return Ok(None);
        };
        self.changed(
            tenant,
            &self.inner.actions.updated,
            &metadata,
            serde_json::json!({
                "reason": "refresh token rotated by Google",
                "purpose": purpose.as_str(),
            }),
        )
        .await;
        Ok(Some(metadata))
    }

    fn verification_action(&self, status: VerificationStatus) -> &AuditAction {
        match status {
            VerificationStatus::Verified => &self.inner.actions.verified,
            VerificationStatus::Failed => &self.inner.actions.verification_failed,
            VerificationStatus::Pending => &self.inner.actions.verification_reset,
        }
    }

    // Retiring credentials.

    /// Deactivates a credential (owner or admin): it is never served again, here at once and on other
    /// replicas within a second. Audited as `deactivated`.
    pub async fn deactivate(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> ServiceResult<CredentialMetadata> {
        let metadata = self
            .inner
            .repository
            .deactivate_credential(tenant, id)
            .await?;
        self.changed(
            tenant,
            &self.inner.actions.deactivated,
            &metadata,
            serde_json::json!({}),
        )
        .await;
        Ok(metadata)
    }

    /// Deletes a credential and its ciphertext for good (owner); its audit entries stay. Audited as
    /// `purged`.
    pub async fn purge(&self, tenant: &Tenant, id: CredentialId) -> ServiceResult<()> {
        let metadata = self.metadata(tenant, id).await?;
        self.inner.repository.purge_credential(tenant, id).await?;
        self.changed(
            tenant,
            &self.inner.actions.purged,
            &metadata,
            serde_json::json!({"display_name": metadata.display_name}),
        )
        .await;
        Ok(())
    }

    // Audit.

    /// The organization's audit log, newest first, after writing the events still queued (best effort; not
    /// tried while the database is in doubt, when the queue waits for it to come back anyway).
    pub async fn audit_events(
        &self,
        tenant: &Tenant,
        page: AuditPage,
    ) -> ServiceResult<Vec<AuditEvent>> {
        if self.database_in_doubt() {
            tracing::debug!(
                "database in doubt: listing the audit log without writing the queued events first"
            );
        } else if let Err(error) = self.inner.audit.flush().await {
            tracing::warn!(%error, "listing the audit log before queued events were written");
        }
        Ok(self
            .inner
            .repository
            .list_audit_events(tenant, page)
            .await?)
    }

    /// Waits until every audit event queued before this call is written.
    pub async fn flush_audit(&self) -> Result<(), AuditError> {
        self.inner.audit.flush().await
    }

    /// Audit events queued and not yet written (a metric).
    pub fn pending_audit_events(&self) -> usize {
        self.inner.audit.pending()
    }

    /// Graceful shutdown: stops following changes, writes every queued audit event and stops the writer.
    /// Call it once, after the last request; events recorded afterwards are dropped with an error log.
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        let followers: Vec<JoinHandle<()>> = std::mem::take(
            &mut *self
                .inner
                .followers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for follower in followers {
            follower.abort();
            let _ = follower.await;
        }
        self.inner.audit.shutdown().await
    }

    // Keys (operator paths).

    /// The start-up key check against this service's keyring (see [`check_keyring`]).
    pub async fn check_keyring(&self) -> Result<KeyringReport, KeyringMismatch> {
        check_keyring(self.inner.repository.as_ref(), &self.inner.keyring).await
    }

    /// Re-wraps every data key under the active version (see [`rotate`]). The service keeps serving
    /// meanwhile: rotation changes no secret, so nothing cached goes stale.
    pub async fn rotate(
        &self,
        options: &RotationOptions,
        progress: impl FnMut(&RotationProgress) + Send,
    ) -> ServiceResult<RotationReport> {
        Ok(rotate(
            Arc::clone(&self.inner.repository),
            Arc::clone(&self.inner.keyring),
            options,
            progress,
        )
        .await?)
    }

    /// Decrypts every credential of every organization and lists those that fail (`byoc keys check`).
    pub async fn check_all(&self) -> ServiceResult<CheckReport> {
        Ok(check_all(
            Arc::clone(&self.inner.repository),
            Arc::clone(&self.inner.keyring),
            CHECK_BATCH,
        )
        .await?)
    }

    // Cross-replica invalidation.

    /// Follows credential changes made by any replica (Postgres `LISTEN`): each notification drops that
    /// (organization, type) from the cache; after a lost connection the cache is not trusted (see the module
    /// docs: database outage) until the listener is back, and then dropped. Returns once listening, `false`
    /// when the store reports no changes (SQLite: one process). Stopped by [`CredentialService::shutdown`],
    /// which must run before the store is closed.
    pub async fn follow_changes(&self) -> ServiceResult<bool> {
        let Some(listener) = self.inner.repository.listen_for_changes().await? else {
            return Ok(false);
        };
        let task = tokio::spawn(follow(Arc::downgrade(&self.inner), listener));
        self.inner
            .followers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
        Ok(true)
    }

    /// Drops every cached credential.
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    // Internals.

    fn new_credential<P: CredentialPayload>(
        &self,
        org_id: OrgId,
        payload: &P,
        display_name: DisplayName,
    ) -> ServiceResult<NewCredential> {
        let credential_type = P::KIND;
        let id = CredentialId::new_random();
        let json = payload.to_json_bytes();
        let (encrypted_data, encryption_key_version) =
            self.inner
                .seal(org_id, credential_type, id, json.as_bytes())?;
        Ok(NewCredential {
            id,
            credential_type,
            display_name,
            public_hint: PublicHint::parse(&payload.public_hint()).ok(),
            provider_account_id: payload
                .provider_account_id()
                .map(ProviderAccountId::parse)
                .transpose()
                .map_err(crate::StoreError::from)?,
            encrypted_data,
            encryption_key_version,
        })
    }

    /// Queues an audit event (never waits).
    fn record(
        &self,
        tenant: &Tenant,
        action: &AuditAction,
        credential_id: Option<CredentialId>,
        credential_type: Option<CredentialType>,
        detail: serde_json::Value,
    ) {
        self.inner.audit.record(
            tenant.clone(),
            NewAuditEvent {
                action: action.clone(),
                credential_id,
                credential_type,
                detail,
            },
        );
    }

    /// After a change: drops the cached (org, type), audits the change and waits for the event to be
    /// written. A write failure is logged; the event stays queued and is retried.
    async fn changed(
        &self,
        tenant: &Tenant,
        action: &AuditAction,
        metadata: &CredentialMetadata,
        detail: serde_json::Value,
    ) {
        self.inner
            .invalidate(metadata.org_id, metadata.credential_type)
            .await;
        self.record(
            tenant,
            action,
            Some(metadata.id),
            Some(metadata.credential_type),
            detail,
        );
        if let Err(error) = self.inner.audit.flush().await {
            tracing::warn!(%error, action = action.as_str(), "audit event queued for retry");
        }
    }
}

impl Inner {
    /// The store's answer from `read`; when the store cannot give one (unavailable, or no answer within
    /// [`OUTAGE_READ_WAIT`] while the change listener is disconnected) and a `last_known` answer is held,
    /// that answer (logged and counted). Without one, waits for `read` whatever it takes.
    async fn fresh_or_last_known<T>(
        &self,
        read: impl std::future::Future<Output = ServiceResult<T>>,
        last_known: Option<T>,
    ) -> ServiceResult<Answer<T>> {
        let Some(last_known) = last_known else {
            return read.await.map(Answer::Fresh);
        };
        let trusted = self.cache_trusted.load(Ordering::Acquire);
        let recently_unreachable = !trusted && self.unreachable_within(OUTAGE_MEMORY);
        let answer = if trusted {
            Some(read.await)
        } else if recently_unreachable {
            None
        } else {
            tokio::time::timeout(OUTAGE_READ_WAIT, read).await.ok()
        };
        let why = match answer {
            Some(Err(error)) if error.is_database_unavailable() => error.to_string(),
            Some(answer) => return answer.map(Answer::Fresh),
            None if recently_unreachable => {
                "the database did not answer a read just before".to_owned()
            }
            None => format!("no answer within {OUTAGE_READ_WAIT:?}"),
        };
        self.outage_answers.fetch_add(1, Ordering::Relaxed);
        if recently_unreachable {
            tracing::debug!(error = %why, "database unavailable: answering from the cache");
        } else {
            tracing::warn!(
                error = %why,
                "database unavailable: answering from the cache (as last read, within its TTL)"
            );
        }
        self.unreachable_at_ms.store(
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        Ok(Answer::LastKnown(last_known))
    }

    /// Whether a read found the database unavailable less than `window` ago.
    fn unreachable_within(&self, window: Duration) -> bool {
        let at = self.unreachable_at_ms.load(Ordering::Acquire);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        at != 0 && now.saturating_sub(at) < u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
    }

    /// Reads the usable credential of a type and decrypts it.
    async fn load(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> ServiceResult<Arc<StoredSecret>> {
        let record = self
            .repository
            .get_active_credential(tenant, credential_type)
            .await?
            .filter(|record| is_usable(&record.metadata))
            .ok_or(CredentialServiceError::NotConfigured {
                provider: credential_type,
            })?;
        let plaintext = self.open(
            tenant.org_id,
            credential_type,
            record.metadata.id,
            &record.encrypted_data,
        )?;
        Ok(Arc::new(StoredSecret {
            metadata: record.metadata,
            plaintext,
        }))
    }

    fn open(
        &self,
        org_id: OrgId,
        credential_type: CredentialType,
        id: CredentialId,
        envelope: &EncryptedEnvelope,
    ) -> ServiceResult<Plaintext> {
        self.keyring
            .open(
                envelope.as_bytes(),
                &envelope_context(org_id, credential_type, id),
            )
            .map_err(|source| CredentialServiceError::Decrypt { id, source })
    }

    /// Opens a stored record of `org_id` and parses it as the provider's payload `P`.
    fn open_payload<P: CredentialPayload>(
        &self,
        org_id: OrgId,
        record: &CredentialRecord,
    ) -> ServiceResult<P> {
        let provider = record.metadata.credential_type;
        let plaintext = self.open(org_id, provider, record.metadata.id, &record.encrypted_data)?;
        P::from_json_bytes(plaintext.expose_secret())
            .map_err(|source| CredentialServiceError::InvalidPayload { provider, source })
    }

    fn seal(
        &self,
        org_id: OrgId,
        credential_type: CredentialType,
        id: CredentialId,
        plaintext: &[u8],
    ) -> ServiceResult<(EncryptedEnvelope, NonZeroU32)> {
        let envelope = self
            .keyring
            .seal(plaintext, &envelope_context(org_id, credential_type, id))
            .map_err(CredentialServiceError::Encrypt)?;
        let version = stored_key_version(envelope.key_version());
        let envelope = EncryptedEnvelope::new(envelope.into_bytes())
            .map_err(|error| CredentialServiceError::from(crate::StoreError::from(error)))?;
        Ok((envelope, version))
    }

    async fn invalidate(&self, org_id: OrgId, credential_type: CredentialType) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.invalidate(&(org_id, credential_type)).await;
        }
    }

    fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }
}

/// Whether a stored credential may be served: active and verified.
fn is_usable(metadata: &CredentialMetadata) -> bool {
    metadata.is_active && metadata.verification_status == VerificationStatus::Verified
}

/// A cache with the configured TTL and capacity, or none when the TTL is zero.
fn new_cache<K, V>(config: &ServiceConfig) -> Option<Cache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    (!config.cache_ttl.is_zero()).then(|| {
        Cache::builder()
            .time_to_live(config.cache_ttl)
            .max_capacity(config.cache_capacity)
            .build()
    })
}

/// The envelope context of a credential: organization, type and id.
pub fn envelope_context(
    org_id: OrgId,
    credential_type: CredentialType,
    id: CredentialId,
) -> EnvelopeContext<'static> {
    EnvelopeContext::new(org_id.as_uuid(), credential_type.as_str(), id.as_uuid())
}

/// First wait before listening again after the listener lost its connection; doubled up to 5 s.
const RELISTEN_DELAY: Duration = Duration::from_millis(100);

/// The change-following task: invalidates on every notification; on a lost connection stops trusting the
/// cache (lookups read the database, and fall back to the cache only when it cannot answer) and listens
/// again, then drops everything cached, since notifications may have been missed. Ends when the service is
/// gone.
async fn follow(service: Weak<Inner>, mut listener: Box<dyn ChangeListener>) {
    loop {
        let received = listener.recv().await;
        let Some(inner) = service.upgrade() else {
            return;
        };
        match received {
            Ok(Some(change)) => {
                inner
                    .invalidate(change.org_id, change.credential_type)
                    .await;
                continue;
            }
            Ok(None) => tracing::warn!("credential change listener lost its connection"),
            Err(error) => tracing::warn!(%error, "credential change listener failed"),
        }
        inner.cache_trusted.store(false, Ordering::Release);
        inner.generation.fetch_add(1, Ordering::AcqRel);
        let repository = Arc::clone(&inner.repository);
        drop(inner);
        let mut delay = RELISTEN_DELAY;
        listener = loop {
            match repository.listen_for_changes().await {
                Ok(Some(listener)) => break listener,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for credential changes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(Duration::from_secs(5));
                }
            }
        };
        let Some(inner) = service.upgrade() else {
            return;
        };
        inner.invalidate_all();
        inner.cache_trusted.store(true, Ordering::Release);
    }
}

#[cfg(all(test, feature = "mock"))]
mod tests;
