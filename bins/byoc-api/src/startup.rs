//! Building the service from configuration: [`Services`] (store, keyring, auth; shared with the CLI) and the
//! HTTP [`Application`] (bound listener, graceful shutdown on SIGTERM/SIGINT).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};
use byoc_credential_store::postgres::{DatabaseRole, LoginReport, PostgresConnectOptions};
use byoc_credential_store::service::{KeyringMismatch, LegacyTwilioFallback};
use byoc_credential_store::{
    Backend, CredentialRepository, CredentialService, OrgId, PostgresStore, ServiceConfig,
    ServiceName, StoreError,
};
use byoc_crypto::Keyring;
use byoc_providers::ProviderClients;
use secrecy::SecretString;
use url::Url;

use crate::auth::{mint_token, TokenVerifier};
use crate::config::{
    AuthConfig, Config, ConfigError, DatabaseUrl, Deployment, TokenClaimRules, DEV_DIR,
};
use crate::dev::{DevFiles, DevSeed, DEV_TOKEN_TTL};
use crate::error::{form_error, json_error, path_error, query_error, ApiError};
use crate::metrics::{track_requests, Metrics, PerOrganizationAccess};
use crate::state::AppState;

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
    /// The metrics registry or the HTTP client cannot be set up.
    #[error("start-up: {0}")]
    Setup(String),
}

/// What dev mode set up: where, the demo org and owner, and the secret the dev token is signed with.
pub struct DevSession {
    /// The dev folder.
    pub dir: std::path::PathBuf,
    /// The demo organization and owner.
    pub seed: DevSeed,
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

/// The store, the credential service, the keyring and token settings built from configuration; shared by
/// `byoc-api` and `byoc`.
pub struct Services {
    /// The credential store (organizations, members and what the credential service does not cover).
    pub repository: Arc<dyn CredentialRepository>,
    /// The credential service: every credential read, change and audit event goes through it.
    pub credential_service: CredentialService,
    /// The keyring.
    pub keyring: Arc<Keyring>,
    /// Token settings (in dev mode with the generated JWT secret).
    pub auth: AuthConfig,
    /// The provider clients (Twilio, Google Calendar, Stripe, HubSpot), sharing one HTTP client.
    pub providers: ProviderClients,
    /// Dev mode's set-up, when in dev mode.
    pub dev: Option<DevSession>,
}

impl Services {
    /// Opens the store as the service (`byoc_app`) and starts the credential service after the start-up key
    /// check (in dev mode: prepares `./.byoc-dev/` and seeds the demo organization). On Postgres the service
    /// follows other replicas' credential changes.
    pub async fn open(config: &Config) -> Result<Services, StartupError> {
        Services::open_as(config, DatabaseRole::App).await
    }

    /// Opens the store as the operator (`byoc_operator`, the CLI's commands): the same, without following
    /// changes (an operator's command is short-lived).
    pub async fn open_for_operator(config: &Config) -> Result<Services, StartupError> {
        Services::open_as(config, DatabaseRole::Operator).await
    }

    async fn open_as(config: &Config, role: DatabaseRole) -> Result<Services, StartupError> {
        let providers = ProviderClients::new(&config.providers)
            .map_err(|error| StartupError::Setup(format!("provider clients: {error}")))?;
        let (database, service_database, keyring, auth, dev_files) = match &config.deployment {
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
                    Arc::clone(&files.keyring),
                    auth,
                    Some(files),
                )
            }
            Deployment::Configured {
                database,
                service_database,
                keyring,
            } => (
                database.clone(),
                service_database.clone(),
                Arc::clone(keyring),
                config.auth.clone(),
                None,
            ),
        };
        let repository = open_store(&database, service_database.as_ref(), role).await?;
        let (credential_service, report) = CredentialService::start(
            Arc::clone(&repository),
            Arc::clone(&keyring),
            service_config(config)?,
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
            auth,
            providers,
            dev,
        })
    }
}

/// Connects to the store `DATABASE_URL` names, as `role` (Postgres; the service also with the service-context
/// login of `BYOC_SERVICE_DATABASE_URL` when set, and it says what its logins may do).
async fn open_store(
    database: &DatabaseUrl,
    service_database: Option<&DatabaseUrl>,
    role: DatabaseRole,
) -> Result<Arc<dyn CredentialRepository>, StartupError> {
    match database.backend() {
        Backend::Postgres => {
            let mut options = PostgresConnectOptions::from_url(database.expose(), role)?;
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
fn service_config(config: &Config) -> Result<ServiceConfig, StartupError> {
    let name = ServiceName::parse("byoc-api")
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

/// The running HTTP service.
pub struct Application {
    port: u16,
    public_url: Url,
    server: Server,
    credential_service: CredentialService,
    writes: Arc<crate::write_behind::WriteBehind>,
    dev: Option<DevSession>,
}

impl Application {
    /// Opens the services from `config` and binds `BYOC_BIND` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let services = Services::open(&config).await?;
        Application::with_services(&config, services)
    }

    /// Binds and builds the HTTP server around already opened services.
    pub fn with_services(config: &Config, services: Services) -> Result<Application, StartupError> {
        let listener = TcpListener::bind(config.bind).map_err(|source| StartupError::Bind {
            address: config.bind,
            source,
        })?;
        let address = listener.local_addr().map_err(|source| StartupError::Bind {
            address: config.bind,
            source,
        })?;
        let public_url = match &config.providers.public_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://{address}/"))
                .map_err(|error| StartupError::Setup(format!("public URL: {error}")))?,
        };
        let http = byoc_providers::build_http_client(config.providers.timeouts)
            .map_err(|error| StartupError::Setup(format!("HTTP client: {error}")))?;
        let metrics =
            Metrics::new().map_err(|error| StartupError::Setup(format!("metrics: {error}")))?;
        let credential_service = services.credential_service.clone();
        let counters = crate::usage::DailyCounters::new(
            config.usage,
            Arc::clone(&services.repository),
            &metrics,
        )
        .map_err(|error| StartupError::Setup(format!("usage metrics: {error}")))?;
        let writes = Arc::new(
            crate::write_behind::WriteBehind::start(
                Arc::clone(&services.repository),
                Arc::new(counters),
                services.credential_service.clone(),
                &metrics,
            )
            .map_err(|error| StartupError::Setup(format!("write-behind metrics: {error}")))?,
        );
        let outbound = crate::outbound::Outbound {
            usage: crate::usage::Usage::new(config.usage, Arc::clone(&writes)),
            writes: Arc::clone(&writes),
            public_url: public_url.clone(),
            google_oauth_client: config.google_oauth_client.clone(),
            oauth_state_key: crate::routes::google_oauth::OAuthStateKey::new(
                config.oauth_state_secret.as_ref(),
                services.auth.jwt_secret.as_ref(),
            )
            .map_err(|_| StartupError::Setup("OAuth state key: no randomness".to_owned()))?,
            providers: services.providers.clone(),
        };
        let state = web::Data::new(AppState {
            credential_service: services.credential_service,
            verifiers: services.providers.verifier_registry(),
            repository: services.repository,
            keyring: services.keyring,
            tokens: TokenVerifier::new(&services.auth, http),
            outbound,
            secure_cookies: public_url.scheme() == "https",
            metrics_access: PerOrganizationAccess::new(config.metrics_token.as_ref())
                .map_err(|_| StartupError::Setup("metrics token: no randomness".to_owned()))?,
        });
        let metrics = web::Data::new(metrics);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(
                    DefaultHeaders::new()
                        .add((header::CACHE_CONTROL, "no-store"))
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
                )
                .wrap(from_fn(track_requests))
                .app_data(state.clone())
                .app_data(metrics.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(crate::BODY_LIMIT_BYTES)
                        .error_handler(json_error),
                )
                .app_data(
                    web::FormConfig::default()
                        .limit(crate::BODY_LIMIT_BYTES)
                        .error_handler(form_error),
                )
                .app_data(web::PathConfig::default().error_handler(path_error))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .configure(crate::routes::configure)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::no_route())
                }))
        })
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            address: config.bind,
            source,
        })?
        .run();
        Ok(Application {
            port: address.port(),
            public_url,
            server,
            credential_service,
            writes,
            dev: services.dev,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The external base URL (`BYOC_PUBLIC_URL`, else `http://` and the bound address).
    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    /// In dev mode, the banner to print: dev token, settings URL and the dev-mode warning.
    pub fn dev_banner(&self) -> Result<Option<String>, StartupError> {
        self.dev
            .as_ref()
            .map(|dev| {
                let token = dev.owner_token()?;
                Ok(crate::dev::banner(
                    &dev.dir,
                    &dev.seed,
                    &token,
                    &self.public_url,
                ))
            })
            .transpose()
    }

    /// Serves until SIGTERM or SIGINT, lets in-flight requests finish (up to 30 s), then writes the queued
    /// provider-call records (up to 30 s more) and every queued audit event, and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.writes.shutdown(SHUTDOWN_GRACE).await;
        if let Err(error) = self.credential_service.shutdown().await {
            tracing::error!(%error, "queued audit events could not all be written at shutdown");
        }
        tracing::info!("byoc-api stopped");
        served
    }
}
