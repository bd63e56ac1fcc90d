//! Opening what both binaries work with: the store (as the service or as the operator), the credential service
//! after the start-up key check, dev mode's files and demo organization.

use std::net::SocketAddr;
use std::sync::Arc;

use byoc_credential_store::postgres::{DatabaseRole, LoginReport, PostgresConnectOptions};
use byoc_credential_store::service::{KeyringMismatch, LegacyTwilioFallback};
use byoc_credential_store::{
    Backend, CredentialRepository, CredentialService, OrgId, PostgresStore, ServiceConfig,
    ServiceName, StoreError,
};
use byoc_crypto::Keyring;
use secrecy::SecretString;

use crate::config::{
    invalid, AuthConfig, ConfigError, DatabaseUrl, Deployment, EnvironmentKeys, RuntimeConfig,
    TokenClaimRules, DEV_DIR,
};
use crate::dev::{DevFiles, DevSeed, DEV_TOKEN_TTL};
use crate::kms::held::{HeldKeyError, RetryPolicy};
use crate::master_keys::{build_keyring, KmsAccess, KmsStatus};
use crate::tokens::mint_token;

/// Why the service (or a CLI command) cannot start. `Display` is one line and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid (the message names the variable).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The database cannot be opened or used.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The dev-mode folder cannot be prepared.
    #[error("dev mode: {0}")]
    DevMode(String),
    /// The listen address cannot be bound.
    #[error("BYOC_BIND: cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The keyring does not fit the data in the database.
    #[error("{0}")]
    Keyring(#[from] KeyringMismatch),
    /// A KMS-held master key version cannot be used (KMS unreachable, the KMS key refused, or a key that does
    /// not match its check value); the message names KMS, the key and the version.
    #[error("{0}")]
    Kms(#[from] HeldKeyError),
    /// Something else the service needs cannot be set up (the metrics registry, the HTTP client).
    #[error("start-up: {0}")]
    Setup(String),
}

/// What dev mode set up: where, the demo org and owner, and the secret the dev token is signed with.
pub struct DevSession {
    /// The dev folder.
    pub dir: std::path::PathBuf,
    /// The demo organization and owner.
    pub seed: DevSeed,
    /// The audit digests' signing key kept in the dev folder.
    pub audit_signing_key: std::sync::Arc<crate::audit_digest::AuditSigningKey>,
    jwt_secret: SecretString,
    claims: TokenClaimRules,
}

impl DevSession {
    /// A bearer token for the demo owner.
    pub fn owner_token(&self) -> Result<String, StartupError> {
        mint_token(
            &self.jwt_secret,
            &self.claims,
            self.seed.org_id.as_uuid(),
            self.seed.owner_id.as_uuid(),
            DEV_TOKEN_TTL,
        )
        .map_err(|error| StartupError::Setup(format!("cannot mint the dev token: {error}")))
    }
}

/// The store, the credential service, the keyring and token settings built from configuration; what both
/// binaries open first.
pub struct Services {
    /// The credential store (organizations, members and what the credential service does not cover).
    pub repository: Arc<dyn CredentialRepository>,
    /// The credential service: every credential read, change and audit event goes through it.
    pub credential_service: CredentialService,
    /// The keyring.
    pub keyring: Arc<Keyring>,
    /// The KMS-held versions' KMS: how many versions, when it last answered, how to check it again.
    pub kms: KmsStatus,
    /// Token settings (in dev mode with the generated JWT secret).
    pub auth: AuthConfig,
    /// Dev mode's set-up, when in dev mode.
    pub dev: Option<DevSession>,
}

impl Services {
    /// Opens the store as the service (`byoc_app`) and starts the credential service after the start-up key
    /// check (in dev mode: prepares `./.byoc-dev/` and seeds the demo organization). On Postgres the service
    /// follows other replicas' credential changes.
    pub async fn open(config: &RuntimeConfig) -> Result<Services, StartupError> {
        Services::open_with_kms(config, DatabaseRole::App, &KmsAccess::Environment).await
    }

    /// Opens the store as the operator (`byoc_operator`, the CLI's commands): the same, without following
    /// changes (an operator's command is short-lived).
    pub async fn open_for_operator(config: &RuntimeConfig) -> Result<Services, StartupError> {
        Services::open_with_kms(config, DatabaseRole::Operator, &KmsAccess::Environment).await
    }

    /// Opens the store as `role` and starts the credential service, with the KMS-held master key versions
    /// decrypted through `kms` (once each, before anything else uses the keyring).
    pub async fn open_with_kms(
        config: &RuntimeConfig,
        role: DatabaseRole,
        kms: &KmsAccess,
    ) -> Result<Services, StartupError> {
        let (database, service_database, keys, auth, dev_files) = match &config.deployment {
            Deployment::Dev => {
                let files = DevFiles::prepare(std::path::Path::new(DEV_DIR))?;
                let jwt_secret = config
                    .auth
                    .jwt_secret
                    .clone()
                    .unwrap_or_else(|| files.jwt_secret.clone());
                let auth = AuthConfig {
                    jwt_secret: Some(jwt_secret),
                    jwks_url: config.auth.jwks_url.clone(),
                    claims: config.auth.claims.clone(),
                };
                (
                    files.database_url.clone(),
                    None,
                    StartKeys::Ready(Arc::clone(&files.keyring)),
                    auth,
                    Some(files),
                )
            }
            Deployment::Configured {
                database,
                service_database,
                keys,
            } => (
                database.clone(),
                service_database.clone(),
                StartKeys::Environment(keys),
                config.auth.clone(),
                None,
            ),
        };
        let repository = open_store(
            &database,
            service_database.as_ref(),
            role,
            config.db_max_connections,
        )
        .await?;
        let (keyring, kms) = match keys {
            StartKeys::Ready(keyring) => (keyring, KmsStatus::none()),
            StartKeys::Environment(keys) => {
                let started =
                    build_keyring(keys, repository.as_ref(), kms, &RetryPolicy::default()).await?;
                (Arc::new(started.keyring), started.kms)
            }
        };
        let (credential_service, report) = CredentialService::start(
            Arc::clone(&repository),
            Arc::clone(&keyring),
            service_config(config, role)?,
        )
        .await?;
        if report.recorded_active {
            tracing::info!(key_version = %keyring.active_version(), "recorded the active key's check value");
        }
        if role == DatabaseRole::App {
            credential_service.follow_changes().await.map_err(|error| {
                StartupError::Setup(format!("following credential changes: {error}"))
            })?;
        }
        let dev = match dev_files {
            Some(files) => {
                let seed = files.seed(repository.as_ref()).await?;
                let jwt_secret = auth
                    .jwt_secret
                    .clone()
                    .unwrap_or_else(|| files.jwt_secret.clone());
                Some(DevSession {
                    dir: files.dir,
                    seed,
                    audit_signing_key: Arc::new(files.audit_signing_key),
                    jwt_secret,
                    claims: auth.claims.clone(),
                })
            }
            None => None,
        };
        Ok(Services {
            repository,
            credential_service,
            keyring,
            kms,
            auth,
            dev,
        })
    }
}

/// The keys a start begins with: dev mode's built keyring, or the environment's keys still to be joined by the
/// KMS-held versions.
enum StartKeys<'a> {
    Ready(Arc<Keyring>),
    Environment(&'a EnvironmentKeys),
}

/// Opens the operator's store for `byoc keys create` (no keyring: the first KMS-held version may be the first
/// key of all) and hands back the environment's keys. Refused in dev mode, whose keys live in `./.byoc-dev/`.
pub async fn open_operator_store(
    config: &RuntimeConfig,
) -> Result<(Arc<dyn CredentialRepository>, EnvironmentKeys), StartupError> {
    match &config.deployment {
        Deployment::Dev => Err(invalid(
            "DATABASE_URL",
            "KMS-held master keys need a configured database (dev mode keeps its keys in ./.byoc-dev)",
        )
        .into()),
        Deployment::Configured { database, keys, .. } => Ok((
            open_store(
                database,
                None,
                DatabaseRole::Operator,
                config.db_max_connections,
            )
            .await?,
            keys.clone(),
        )),
    }
}

/// Connects to the store `DATABASE_URL` names, as `role` (Postgres; the service also with the service-context
/// login of `BYOC_SERVICE_DATABASE_URL` when set, and it says what its logins may do), with `max_connections` per pool.
async fn open_store(
    database: &DatabaseUrl,
    service_database: Option<&DatabaseUrl>,
    role: DatabaseRole,
    max_connections: u32,
) -> Result<Arc<dyn CredentialRepository>, StartupError> {
    match database.backend() {
        Backend::Postgres => {
            let mut options = PostgresConnectOptions::from_url(database.expose(), role)?;
            options.max_connections = max_connections;
            if let Some(service_database) = service_database.filter(|_| role == DatabaseRole::App) {
                options = options.with_service_url(service_database.expose())?;
            }
            let store = PostgresStore::connect_with_options(options).await?;
            if role == DatabaseRole::App {
                report_logins(&store.login_report().await?);
            }
            Ok(Arc::new(store))
        }
        Backend::Sqlite => Ok(byoc_credential_store::connect(database.expose()).await?),
    }
}

/// Logs what the database logins may do, and warns about a deployment that gives the login serving users'
/// requests more than byoc_app (docs/operations.md, "Postgres roles").
fn report_logins(report: &LoginReport) {
    tracing::info!(
        login = %report.login,
        service_login = report.service_login.as_deref().unwrap_or("(the same)"),
        "connected to Postgres as byoc_app"
    );
    if report.superuser {
        tracing::warn!(
            login = %report.login,
            "DATABASE_URL logs in as a superuser: an SQL injection could RESET ROLE and bypass row-level \
             security; use a login granted only byoc_app"
        );
    }
    if report.operator {
        tracing::warn!(
            login = %report.login,
            "DATABASE_URL's login may take byoc_operator: an SQL injection could run the operator's functions; \
             give the service a login granted only byoc_app"
        );
    }
    match (&report.service_login, report.acts_as_service) {
        (None, false) => tracing::warn!(
            login = %report.login,
            "DATABASE_URL's login may not act as a service and BYOC_SERVICE_DATABASE_URL is not set: the Twilio \
             status webhook and marking refused credentials failed will be refused"
        ),
        (None, true) if !report.superuser => tracing::info!(
            login = %report.login,
            "users' requests run on a login that may act as a service; set BYOC_SERVICE_DATABASE_URL to a \
             login of its own to separate them"
        ),
        _ => {}
    }
}

/// The credential service's settings: cache TTL and the legacy Twilio fallback from the configuration.
fn service_config(
    config: &RuntimeConfig,
    role: DatabaseRole,
) -> Result<ServiceConfig, StartupError> {
    let name = ServiceName::parse(match role {
        DatabaseRole::App => "byoc-api",
        DatabaseRole::Operator => "byoc-cli",
    })
    .map_err(|error| StartupError::Setup(format!("service name: {error}")))?;
    let mut service_config = ServiceConfig::new(name);
    service_config.cache_ttl = config.cache_ttl;
    service_config.legacy_fallback =
        config
            .legacy_twilio
            .clone()
            .map(|credential| LegacyTwilioFallback {
                credential,
                orgs: config
                    .legacy_fallback_orgs
                    .iter()
                    .copied()
                    .map(OrgId::from_uuid)
                    .collect(),
            });
    Ok(service_config)
}
