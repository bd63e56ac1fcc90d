//! Dev mode: with nothing configured, the service keeps a SQLite database, a generated master key and a
//! generated JWT secret under `./.byoc-dev/` (files readable by the owner only, so a restart can still decrypt),
//! and seeds a demo organization with an owner whose bearer token it prints.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use byoc_credential_store::{
    CredentialRepository, HotLeadThreshold, OrgId, OrganizationName, Role, Tenant, UserId,
};
use byoc_crypto::{Keyring, KeyringConfig, MasterKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::audit_digest::AuditSigningKey;
use crate::config::DatabaseUrl;
use crate::services::StartupError;

const DATABASE_FILE: &str = "byoc.db";
const MASTER_KEYS_FILE: &str = "master-keys";
const JWT_SECRET_FILE: &str = "jwt-secret";
const AUDIT_SIGNING_KEY_FILE: &str = "audit-signing-key";
const SEED_FILE: &str = "seed.json";
const DEMO_ORG_NAME: &str = "Demo Clinic";
/// How long the printed dev token is valid.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The dev-mode files: database URL, keyring and JWT secret, created on first start.
pub struct DevFiles {
    /// The folder they live in.
    pub dir: PathBuf,
    /// `sqlite://DIR/byoc.db`.
    pub database_url: DatabaseUrl,
    /// The keyring from `DIR/master-keys`.
    pub keyring: Arc<Keyring>,
    /// The HS256 secret from `DIR/jwt-secret`.
    pub jwt_secret: SecretString,
    /// The audit digests' Ed25519 key from `DIR/audit-signing-key` (its seed as 64 hex digits).
    pub audit_signing_key: AuditSigningKey,
}

/// The seeded demo organization and its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevSeed {
    /// The demo organization.
    pub org_id: OrgId,
    /// Its owner.
    pub owner_id: UserId,
}

fn dev_error(path: &Path, reason: impl std::fmt::Display) -> StartupError {
    StartupError::DevMode(format!("{}: {reason}", path.display()))
}

impl DevFiles {
    /// Opens the dev folder, creating it and the key and secret files when missing.
    pub fn prepare(dir: &Path) -> Result<DevFiles, StartupError> {
        create_private_dir(dir)?;
        let keys_path = dir.join(MASTER_KEYS_FILE);
        let master_keys = read_or_create_secret(&keys_path, || {
            let key = MasterKey::generate();
            Ok(SecretString::from(format!(
                "1:{}",
                key.to_hex().expose_secret()
            )))
        })?;
        let keyring = Keyring::from_config(KeyringConfig {
            master_keys: Some(master_keys.expose_secret().trim()),
            ..KeyringConfig::default()
        })
        .map_err(|error| dev_error(&keys_path, error))?;
        let jwt_path = dir.join(JWT_SECRET_FILE);
        let jwt_secret = read_or_create_secret(&jwt_path, || random_hex_secret(&jwt_path))?;
        let signing_path = dir.join(AUDIT_SIGNING_KEY_FILE);
        let signing_seed = read_or_create_secret(&signing_path, || {
            AuditSigningKey::generate()
                .map(|key| key.to_hex())
                .map_err(|error| dev_error(&signing_path, error))
        })?;
        let audit_signing_key = AuditSigningKey::parse(signing_seed.expose_secret())
            .map_err(|error| dev_error(&signing_path, error))?;
        Ok(DevFiles {
            dir: dir.to_path_buf(),
            database_url: DatabaseUrl::sqlite_file(&dir.join(DATABASE_FILE)),
            keyring: Arc::new(keyring),
            jwt_secret,
            audit_signing_key,
        })
    }

    /// Returns the demo organization and owner, creating them (again) when the database lacks them.
    pub async fn seed(
        &self,
        repository: &dyn CredentialRepository,
    ) -> Result<DevSeed, StartupError> {
        let seed_path = self.dir.join(SEED_FILE);
        if let Ok(text) = fs::read_to_string(&seed_path) {
            if let Ok(seed) = serde_json::from_str::<DevSeed>(&text) {
                let tenant = Tenant::user(seed.org_id, seed.owner_id);
                if repository.member_role(&tenant).await? == Some(Role::Owner) {
                    return Ok(seed);
                }
            }
        }
        let name =
            OrganizationName::parse(DEMO_ORG_NAME).map_err(|error| dev_error(&seed_path, error))?;
        let organization = repository
            .operator_create_organization(&name, HotLeadThreshold::DEFAULT)
            .await?;
        let owner_id = UserId::new_random();
        repository
            .operator_add_member(organization.id, owner_id, Role::Owner)
            .await?;
        let seed = DevSeed {
            org_id: organization.id,
            owner_id,
        };
        let text =
            serde_json::to_string_pretty(&seed).map_err(|error| dev_error(&seed_path, error))?;
        write_private_file(&seed_path, text.as_bytes())?;
        Ok(seed)
    }
}

/// The loud dev-mode banner with the dev token and the settings-page URL.
pub fn banner(dir: &Path, seed: &DevSeed, token: &str, public_url: &Url) -> String {
    let settings = public_url
        .join("dashboard/settings")
        .map(String::from)
        .unwrap_or_else(|_| format!("{public_url}dashboard/settings"));
    let rule = "=".repeat(78);
    format!(
        "{rule}\n\
         byoc-api is running in DEV MODE: not for production.\n\
         SQLite database, generated master key and JWT secret in {dir}/ (keep that folder private).\n\
         Leave dev mode by setting DATABASE_URL, BYOC_MASTER_KEYS and BYOC_JWT_SECRET.\n\
         \n\
         demo organization: {org}\n\
         demo owner:        {owner}\n\
         dev token (24 h):  {token}\n\
         settings page:     {settings}\n\
         try:               curl -H 'Authorization: Bearer <dev token>' {api}\n\
         {rule}",
        dir = dir.display(),
        org = seed.org_id.as_uuid(),
        owner = seed.owner_id.as_uuid(),
        api = public_url
            .join("api/organization/credentials")
            .map(String::from)
            .unwrap_or_default(),
    )
}

fn random_hex_secret(path: &Path) -> Result<SecretString, StartupError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| dev_error(path, "the system random number generator failed"))?;
    let secret = SecretString::from(hex::encode(bytes));
    bytes.fill(0);
    Ok(secret)
}

fn read_or_create_secret(
    path: &Path,
    create: impl FnOnce() -> Result<SecretString, StartupError>,
) -> Result<SecretString, StartupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(SecretString::from(text.trim().to_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let secret = create()?;
            write_private_file(path, secret.expose_secret().as_bytes())?;
            Ok(secret)
        }
        Err(error) => Err(dev_error(path, error)),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StartupError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| dev_error(dir, error))
}

/// Writes a file readable by the owner only (0600), through a temporary file and a rename.
fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), StartupError> {
    let temporary = path.with_extension("tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&temporary)
        .map_err(|error| dev_error(&temporary, error))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|error| dev_error(&temporary, error))?;
    fs::rename(&temporary, path).map_err(|error| dev_error(path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_created_private_and_reused() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join(".byoc-dev");
        let first = DevFiles::prepare(&dir).expect("first start");
        let second = DevFiles::prepare(&dir).expect("restart");
        assert_eq!(
            first.jwt_secret.expose_secret(),
            second.jwt_secret.expose_secret()
        );
        assert_eq!(
            first
                .keyring
                .key_check_value(first.keyring.active_version()),
            second
                .keyring
                .key_check_value(second.keyring.active_version())
        );
        #[cfg(unix)]
        for file in [MASTER_KEYS_FILE, JWT_SECRET_FILE] {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(file))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}
