//! Start-up: the service's configuration ([`config`]), the state handlers receive ([`state`]), and building the
//! HTTP [`Application`] around the opened [`Services`] (bound listener, routes and settings page, graceful
//! shutdown on SIGTERM/SIGINT). Nothing below start-up imports [`Application`].

pub mod config;
pub mod openapi;
pub mod sandbox;
pub mod state;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::{header, Method};
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};
use byoc_credential_store::CredentialService;
use byoc_providers::ProviderClients;
use byoc_runtime::master_keys::KmsStatus;
use byoc_runtime::{DevSession, Services, StartupError};
use url::Url;
use utoipa::OpenApi;

use crate::plumbing::auth::TokenVerifier;
use crate::plumbing::caller::{Authenticator, RecordedProfiles};
use crate::plumbing::error::{form_error, json_error, path_error, query_error};
use crate::plumbing::metrics::{track_requests, Metrics, PerOrganizationAccess};
use crate::plumbing::routing::{unrouted, RouteTable};
use crate::startup::config::Config;
use crate::startup::sandbox::answers::Sandbox;
use crate::startup::state::AppState;
use crate::usecases::audit_digests::{self, DigestMetrics};
use crate::usecases::booking::BookingLocks;
use crate::usecases::credential_events;
use crate::usecases::oauth_state::OAuthStateKey;
use crate::usecases::outbound::{GoogleOAuthClient, Outbound};
use crate::usecases::rate_limits::{InProcessLimits, RateLimits};
use crate::usecases::reverify::{self, CredentialGauge};
use crate::usecases::shared_limits::{SharedLimits, SharedLimitsMetrics};
use crate::usecases::usage::{DailyCounters, Usage};
use crate::usecases::write_behind::WriteBehind;

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The running HTTP service.
pub struct Application {
    port: u16,
    public_url: Url,
    server: Server,
    credential_service: CredentialService,
    writes: Arc<WriteBehind>,
    dev: Option<DevSession>,
    /// Re-verification and event delivery, stopped with the server.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Opens the services from `config` and binds `BYOC_BIND` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let services = Services::open(&config.runtime).await?;
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
        let sandbox = sandbox_for(config, &services, address, &public_url)?;
        let (provider_config, google_oauth_client) = match &sandbox {
            Some((providers, client, _)) => (providers, Some(client.clone())),
            None => (&config.providers, config.google_oauth_client.clone()),
        };
        let providers = ProviderClients::new(provider_config)
            .map_err(|error| StartupError::Setup(format!("provider clients: {error}")))?;
        let metrics =
            Metrics::new().map_err(|error| StartupError::Setup(format!("metrics: {error}")))?;
        let credential_service = services.credential_service.clone();
        let counters = DailyCounters::new(config.usage, Arc::clone(&services.repository));
        let writes = Arc::new(
            WriteBehind::start(
                Arc::clone(&services.repository),
                Arc::new(counters),
                services.credential_service.clone(),
                &metrics,
            )
            .map_err(|error| StartupError::Setup(format!("write-behind metrics: {error}")))?,
        );
        watch_kms(&metrics, services.kms.clone())
            .map_err(|error| StartupError::Setup(format!("KMS metrics: {error}")))?;
        let shared_limits_metrics = SharedLimitsMetrics::register(&metrics)
            .map_err(|error| StartupError::Setup(format!("shared limits metrics: {error}")))?;
        let limits = match &config.shared_limits {
            Some(shared) => RateLimits::Shared(
                SharedLimits::start(shared, config.usage.rates(), shared_limits_metrics)
                    .map_err(|error| StartupError::Setup(format!("shared limits: {error}")))?,
            ),
            None => RateLimits::InProcess(InProcessLimits::new(config.usage.rates())),
        };
        let usage = Usage::new(limits, Arc::clone(&writes), &metrics)
            .map_err(|error| StartupError::Setup(format!("usage metrics: {error}")))?;
        let outbound = Outbound {
            usage,
            writes: Arc::clone(&writes),
            public_url: public_url.clone(),
            google_oauth_client,
            oauth_state_key: OAuthStateKey::new(
                config.oauth_state_secret.as_ref(),
                services.auth.jwt_secret.as_ref(),
            )
            .map_err(|_| StartupError::Setup("OAuth state key: no randomness".to_owned()))?,
            providers: providers.clone(),
            booking_locks: BookingLocks::default(),
        };
        let gauge = CredentialGauge::register(&metrics)
            .map_err(|error| StartupError::Setup(format!("credentials gauge: {error}")))?;
        let verifiers = providers.verifier_registry();
        let mut background = vec![
            reverify::start(
                config.reverify,
                services.credential_service.clone(),
                verifiers.clone(),
                gauge,
            ),
            credential_events::start(config.events.as_ref(), Arc::clone(&services.repository))
                .map_err(|error| StartupError::Setup(error.to_string()))?,
        ];
        let mut digest_config = config.audit_digests.clone();
        if digest_config.signing_key.is_none() {
            digest_config.signing_key = services
                .dev
                .as_ref()
                .map(|dev| Arc::clone(&dev.audit_signing_key));
        }
        let audit_public_key = digest_config
            .signing_key
            .as_ref()
            .map(|key| key.public_key());
        let digest_metrics = DigestMetrics::register(&metrics)
            .map_err(|error| StartupError::Setup(format!("audit digest metrics: {error}")))?;
        background.extend(audit_digests::start(
            digest_config,
            Arc::clone(&services.repository),
            digest_metrics,
        ));
        let authenticator = web::Data::new(Authenticator {
            tokens: TokenVerifier::new(&services.auth, http),
            repository: Arc::clone(&services.repository),
            credential_service: services.credential_service.clone(),
            recorded_profiles: RecordedProfiles::default(),
        });
        let state = web::Data::new(AppState {
            credential_service: services.credential_service,
            verifiers,
            repository: services.repository,
            keyring: services.keyring,
            authenticator,
            outbound,
            secure_cookies: public_url.scheme() == "https",
            metrics_access: PerOrganizationAccess::new(config.metrics_token.as_ref())
                .map_err(|_| StartupError::Setup("metrics token: no randomness".to_owned()))?,
            sandbox: sandbox.is_some(),
            audit_public_key,
        });
        let sandbox_answers = sandbox.map(|(_, _, answers)| web::Data::new(answers));
        let metrics = web::Data::new(metrics);
        let route_table = web::Data::new(route_table());
        let server = HttpServer::new(move || {
            App::new()
                .wrap(
                    DefaultHeaders::new()
                        .add((header::CACHE_CONTROL, "no-store"))
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
                )
                .wrap(from_fn(track_requests))
                .app_data(state.clone())
                .app_data(state.authenticator.clone())
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
                .app_data(route_table.clone())
                .configure(crate::routes::configure)
                .configure(crate::settings::configure)
                .service(openapi::openapi_json)
                .configure(|routes| {
                    if let Some(answers) = &sandbox_answers {
                        routes.service(sandbox::answers::scope(sandbox::SCOPE, answers.clone()));
                    }
                })
                .default_service(web::to(unrouted))
        })
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
        .workers(config.http_workers.get())
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
            background,
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
                Ok(byoc_runtime::dev::banner(
                    &dev.dir,
                    &dev.seed,
                    &token,
                    &self.public_url,
                ))
            })
            .transpose()
    }

    /// Serves until SIGTERM or SIGINT, lets in-flight requests finish (up to 30 s), stops re-verifying and
    /// delivering events (an event being sent is sent again by a replica after its lease), then writes the queued
    /// provider-call records (up to 30 s more) and every queued audit event, and returns.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        for task in &self.background {
            task.abort();
        }
        self.writes.shutdown(SHUTDOWN_GRACE).await;
        if let Err(error) = self.credential_service.shutdown().await {
            tracing::error!(%error, "queued audit events could not all be written at shutdown");
        }
        tracing::info!("byoc-api stopped");
        served
    }
}

/// Dev mode's provider sandbox (its provider configuration, Google OAuth app and answers), when this is dev
/// mode and no provider URL or credential is configured; says loudly that it is on, or which variable kept it off.
fn sandbox_for(
    config: &Config,
    services: &Services,
    address: std::net::SocketAddr,
    public_url: &Url,
) -> Result<Option<(byoc_providers::ProviderConfig, GoogleOAuthClient, Sandbox)>, StartupError> {
    if services.dev.is_none() {
        return Ok(None);
    }
    if let Some(variable) = config.sandbox_off_by {
        tracing::warn!(
            variable,
            "DEV MODE: the provider sandbox is off because {variable} is configured; provider calls go to real providers"
        );
        return Ok(None);
    }
    let (providers, client) = sandbox::providers(&config.providers, address, public_url)
        .map_err(|error| StartupError::Setup(format!("provider sandbox URLs: {error}")))?;
    let callback = public_url
        .join(crate::routes::google_oauth::CALLBACK_PATH.trim_start_matches('/'))
        .map_err(|error| StartupError::Setup(format!("provider sandbox callback: {error}")))?;
    tracing::warn!(
        sandbox = %sandbox::SCOPE,
        "DEV MODE SANDBOX: Twilio, Google, Stripe and HubSpot calls are answered by byoc's built-in sandbox; \
         nothing reaches a real provider (set a provider URL or credential to turn it off)"
    );
    Ok(Some((providers, client, Sandbox::new(callback))))
}

/// Every served path and its methods: the OpenAPI document's operations and the settings page's forms and
/// assets (which the document leaves out).
pub fn route_table() -> RouteTable {
    let mut table = RouteTable::default();
    for (path, item) in openapi::ApiDoc::openapi().paths.paths {
        let operations = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
            (Method::PATCH, &item.patch),
        ];
        for (method, operation) in operations {
            if operation.is_some() {
                table.add(&path, method);
            }
        }
    }
    for (path, method) in crate::settings::UNDOCUMENTED_ROUTES {
        table.add(path, method);
    }
    table
}

/// How often a replica holding KMS-held master keys asks KMS again (one Decrypt of one version), so that
/// `byoc_kms_last_success_timestamp_seconds` says whether a restart now would find its keys.
const KMS_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// Registers `byoc_kms_held_key_versions` (how many master key versions this replica holds from KMS) and
/// `byoc_kms_last_success_timestamp_seconds` (Unix time KMS last answered: at start, then every
/// [`KMS_CHECK_INTERVAL`]; 0 when never), both 0 without KMS-held keys, and with KMS-held keys starts the periodic
/// check. A failed check is logged and changes nothing else: the keys in use stay in memory, `/readyz` stays
/// ready.
fn watch_kms(metrics: &Metrics, kms: KmsStatus) -> Result<(), prometheus::Error> {
    let held = prometheus::IntGauge::new(
        "kms_held_key_versions",
        "Master key versions this replica holds from KMS (decrypted at start)",
    )?;
    held.set(i64::try_from(kms.held_versions()).unwrap_or(i64::MAX));
    metrics.register(Box::new(held))?;
    let last_success = prometheus::IntGauge::new(
        "kms_last_success_timestamp_seconds",
        "Unix time at which KMS last decrypted a KMS-held master key (at start, then every 5 minutes; 0 when never)",
    )?;
    last_success.set(kms.last_success());
    metrics.register(Box::new(last_success.clone()))?;
    if kms.held_versions() > 0 {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(KMS_CHECK_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            every.tick().await;
            loop {
                every.tick().await;
                match kms.check().await {
                    Ok(()) => last_success.set(kms.last_success()),
                    Err(error) => tracing::warn!(
                        %error,
                        "KMS did not answer the periodic check; serving on with the master keys in memory \
                         (a restart now would be refused)"
                    ),
                }
            }
        });
    }
    Ok(())
}
