//! The service's configuration: what both binaries read ([`RuntimeConfig`], from `byoc-runtime`) and what only
//! the HTTP service reads (listen address, public URL, provider URLs and client tuning, the platform's Google
//! OAuth app, per-organization limits and the Redis that shares them, the OAuth state and metrics secrets, the
//! re-verification interval and where credential events go).
//!
//! Parsing happens once, at start-up: a [`Config`] holds only valid values. A bad value stops start-up with a
//! [`ConfigError`] whose one-line message names the variable and never repeats a secret.

use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;

use byoc_providers::ProviderConfig;
use byoc_runtime::config::{environment, invalid, parse_url};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::usecases::audit_digests::AuditDigestConfig;
use crate::usecases::credential_events::EventsConfig;
use crate::usecases::outbound::GoogleOAuthClient;
use crate::usecases::reverify::ReverifyConfig;
use crate::usecases::shared_limits::SharedLimitsConfig;

pub use byoc_runtime::config::{
    AuthConfig, ConfigError, DatabaseUrl, Deployment, RuntimeConfig, TokenClaimRules,
};

const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// The most HTTP worker threads `BYOC_HTTP_WORKERS` accepts.
const MAX_HTTP_WORKERS: usize = 256;
/// The shortest `BYOC_METRICS_TOKEN` accepted.
const MIN_METRICS_TOKEN_LEN: usize = 32;

/// Everything the service reads from its environment.
pub struct Config {
    /// What both binaries read: database, keys, tokens, cache, the legacy fallback.
    pub runtime: RuntimeConfig,
    /// `BYOC_BIND`: the listen address.
    pub bind: SocketAddr,
    /// `BYOC_PUBLIC_URL`: the external base URL (defaults to `http://` + the bind address).
    pub public_url: Url,
    /// `BYOC_HTTP_WORKERS`: HTTP worker threads (default: the CPUs the process may use).
    pub http_workers: NonZeroUsize,
    /// Provider base URLs and client tuning (`TWILIO_API_BASE`, `GOOGLE_*`, `BYOC_PUBLIC_URL`).
    pub providers: ProviderConfig,
    /// The platform's Google OAuth app, when configured.
    pub google_oauth_client: Option<GoogleOAuthClient>,
    /// Per-organization rate limits and the daily provider-call warning (`BYOC_SMS_PER_MINUTE`,
    /// `BYOC_PROVIDER_CALLS_PER_MINUTE`, `BYOC_PROVIDER_DAILY_WARNING`).
    pub usage: crate::usecases::usage::UsageConfig,
    /// `BYOC_REDIS_URL`, `BYOC_REDIS_KEY_PREFIX` and `BYOC_REDIS_TIMEOUT_MS`: the Redis where every replica
    /// shares the per-organization rate limits (without it, each process keeps its own).
    pub shared_limits: Option<SharedLimitsConfig>,
    /// `BYOC_OAUTH_STATE_SECRET`: signs Google connect states (default: derived from `BYOC_JWT_SECRET`).
    pub oauth_state_secret: Option<SecretString>,
    /// `BYOC_METRICS_TOKEN`: the bearer token that unlocks the per-organization series of `/metrics`; without
    /// it they are never served.
    pub metrics_token: Option<SecretString>,
    /// `BYOC_REVERIFY_INTERVAL_SECS`: how often every active credential is verified again.
    pub reverify: ReverifyConfig,
    /// `BYOC_EVENTS_URL` and `BYOC_EVENTS_SECRET`: where credential events are sent, signed (none when unset).
    pub events: Option<EventsConfig>,
    /// `BYOC_AUDIT_SIGNING_KEY`, `BYOC_AUDIT_DIGEST_INTERVAL_SECS` and `BYOC_AUDIT_DIGEST_DIR`: signed audit
    /// digests (off without a key outside dev mode).
    pub audit_digests: AuditDigestConfig,
    /// The first provider URL or credential variable that is set, which keeps dev mode's provider sandbox off.
    pub sandbox_off_by: Option<&'static str>,
}

impl Config {
    /// Reads the process environment (and `BYOC_CONFIG_FILE`, when set).
    pub fn from_env() -> Result<Config, ConfigError> {
        let values = environment()?;
        Config::from_lookup(|name| values.get(name).cloned())
    }

    /// Parses a configuration from `lookup` (a variable's value, `None` when unset; empty counts as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let runtime = RuntimeConfig::from_lookup(&lookup)?;
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let bind = parse_bind(get("BYOC_BIND").as_deref().unwrap_or(DEFAULT_BIND))?;
        let providers = ProviderConfig::from_lookup(get)
            .map_err(|error| invalid(error.variable, "not a valid absolute http(s) URL"))?;
        let public_url = match &providers.public_url {
            Some(url) => url.clone(),
            None => parse_url("BYOC_BIND", &format!("http://{bind}"))?,
        };
        let google_oauth_client = match (
            get("GOOGLE_OAUTH_CLIENT_ID"),
            get("GOOGLE_OAUTH_CLIENT_SECRET"),
        ) {
            (Some(client_id), Some(secret)) => Some(GoogleOAuthClient {
                client_id,
                client_secret: SecretString::from(secret),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "GOOGLE_OAUTH_CLIENT_SECRET",
                    "required when GOOGLE_OAUTH_CLIENT_ID is set",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "GOOGLE_OAUTH_CLIENT_ID",
                    "required when GOOGLE_OAUTH_CLIENT_SECRET is set",
                ))
            }
        };
        let http_workers = match get("BYOC_HTTP_WORKERS") {
            Some(text) => parse_http_workers(&text)?,
            None => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        };
        let usage = crate::usecases::usage::UsageConfig::from_lookup(get)?;
        let shared_limits = SharedLimitsConfig::from_lookup(get)?;
        let oauth_state_secret = get("BYOC_OAUTH_STATE_SECRET").map(SecretString::from);
        let metrics_token = get("BYOC_METRICS_TOKEN").map(|text| SecretString::from(text.trim()));
        if metrics_token
            .as_ref()
            .is_some_and(|token| token.expose_secret().len() < MIN_METRICS_TOKEN_LEN)
        {
            return Err(invalid(
                "BYOC_METRICS_TOKEN",
                format!("must be at least {MIN_METRICS_TOKEN_LEN} characters long"),
            ));
        }
        let reverify = ReverifyConfig::from_lookup(get)?;
        let events = EventsConfig::from_lookup(get)?;
        let audit_digests = AuditDigestConfig::from_lookup(get)?;
        let sandbox_off_by = crate::startup::sandbox::turned_off_by(get);
        Ok(Config {
            runtime,
            bind,
            public_url,
            http_workers,
            providers,
            google_oauth_client,
            usage,
            shared_limits,
            oauth_state_secret,
            metrics_token,
            reverify,
            events,
            audit_digests,
            sandbox_off_by,
        })
    }

    /// Whether the service runs in dev mode.
    pub fn is_dev(&self) -> bool {
        self.runtime.is_dev()
    }
}

fn parse_http_workers(text: &str) -> Result<NonZeroUsize, ConfigError> {
    text.trim()
        .parse::<NonZeroUsize>()
        .ok()
        .filter(|workers| workers.get() <= MAX_HTTP_WORKERS)
        .ok_or_else(|| {
            invalid(
                "BYOC_HTTP_WORKERS",
                format!("must be a whole number of threads from 1 to {MAX_HTTP_WORKERS}"),
            )
        })
}

fn parse_bind(text: &str) -> Result<SocketAddr, ConfigError> {
    const VAR: &str = "BYOC_BIND";
    if let Ok(address) = text.trim().parse::<SocketAddr>() {
        return Ok(address);
    }
    text.trim()
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| invalid(VAR, "must be HOST:PORT, e.g. 127.0.0.1:8080"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use byoc_credential_store::Backend;
    use uuid::Uuid;

    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
    const JWT_SECRET: &str = "a-jwt-secret-that-is-long-enough-0123456789";

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let values: HashMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        Config::from_lookup(|name| values.get(name).cloned())
    }

    fn error_line(pairs: &[(&str, &str)]) -> String {
        match parse(pairs) {
            Ok(_) => panic!(
                "expected a configuration error for {:?}",
                pairs.iter().map(|p| p.0).collect::<Vec<_>>()
            ),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn nothing_configured_is_dev_mode_with_defaults() {
        let config = parse(&[]).expect("the empty configuration is valid");
        assert!(config.is_dev());
        assert_eq!(
            config.bind,
            "127.0.0.1:8080".parse::<SocketAddr>().expect("valid")
        );
        assert_eq!(config.runtime.cache_ttl, Duration::from_secs(60));
        assert_eq!(config.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(
            config.providers.twilio_api_base.as_str(),
            "https://api.twilio.com/"
        );
        assert!(config.runtime.legacy_fallback_orgs.is_empty());
        assert_eq!(config.runtime.auth.claims.audience, "authenticated");
        assert_eq!(config.runtime.auth.claims.issuer, None);
    }

    #[test]
    fn http_workers_default_to_the_cpus_and_are_bounded() {
        let default = parse(&[]).expect("valid").http_workers;
        assert_eq!(
            Some(default),
            std::thread::available_parallelism().ok(),
            "the default is the CPUs the process may use"
        );
        let one = parse(&[("BYOC_HTTP_WORKERS", " 1 ")]).expect("valid");
        assert_eq!(one.http_workers.get(), 1);
        for bad in ["0", "257", "-1", "two", "1.5"] {
            assert_eq!(
                error_line(&[("BYOC_HTTP_WORKERS", bad)]),
                "BYOC_HTTP_WORKERS: must be a whole number of threads from 1 to 256",
                "{bad}"
            );
        }
    }

    #[test]
    fn bind_and_provider_urls_keep_dev_mode() {
        let config = parse(&[
            ("BYOC_BIND", "127.0.0.1:0"),
            ("TWILIO_API_BASE", "http://127.0.0.1:9999"),
        ])
        .expect("valid");
        assert!(config.is_dev());
        assert_eq!(
            config.providers.twilio_api_base.as_str(),
            "http://127.0.0.1:9999/"
        );
    }

    #[test]
    fn configured_deployment_builds_the_keyring() {
        let keys = format!("1:{KEY_A},2:{KEY_B}");
        let config = parse(&[
            ("DATABASE_URL", "postgres://app:pw@localhost/byoc"),
            ("BYOC_MASTER_KEYS", &keys),
            ("BYOC_ACTIVE_KEY_VERSION", "1"),
            ("BYOC_JWT_SECRET", JWT_SECRET),
        ])
        .expect("valid");
        match config.runtime.deployment {
            Deployment::Configured { keys, database, .. } => {
                let keyring = keys.keyring(Vec::new()).expect("the keys build a keyring");
                assert_eq!(keyring.active_version().get(), 1);
                assert_eq!(database.backend(), Backend::Postgres);
            }
            Deployment::Dev => panic!("a database and keys are configured"),
        }
    }

    #[test]
    fn legacy_key_is_version_one() {
        let config = parse(&[
            ("DATABASE_URL", "sqlite://byoc.db"),
            ("CREDENTIAL_ENCRYPTION_KEY", KEY_A),
            ("BYOC_JWT_SECRET", JWT_SECRET),
        ])
        .expect("valid");
        match config.runtime.deployment {
            Deployment::Configured { keys, database, .. } => {
                let keyring = keys.keyring(Vec::new()).expect("the keys build a keyring");
                assert_eq!(keyring.active_version().get(), 1);
                assert_eq!(database.backend(), Backend::Sqlite);
                assert_eq!(database.expose(), "sqlite://byoc.db");
            }
            Deployment::Dev => panic!("configured"),
        }
    }

    #[test]
    fn bad_values_name_the_variable_and_never_the_secret() {
        let short_key = "1:abcdef";
        let line = error_line(&[
            ("DATABASE_URL", "sqlite://x.db"),
            ("BYOC_MASTER_KEYS", short_key),
            ("BYOC_JWT_SECRET", JWT_SECRET),
        ]);
        assert!(line.contains("BYOC_MASTER_KEYS"), "{line}");
        assert!(!line.contains("abcdef"), "{line}");

        let duplicate = format!("1:{KEY_A},1:{KEY_B}");
        let line = error_line(&[
            ("DATABASE_URL", "sqlite://x.db"),
            ("BYOC_MASTER_KEYS", &duplicate),
            ("BYOC_JWT_SECRET", JWT_SECRET),
        ]);
        assert!(line.contains("BYOC_MASTER_KEYS"), "{line}");
        assert!(!line.contains(KEY_A) && !line.contains(KEY_B), "{line}");

        // An active version that is not a number is refused here; one that names no key is refused at start,
        // once the KMS-held versions are known (byoc-runtime's master_keys tests).
        let keys = format!("1:{KEY_A}");
        let line = error_line(&[
            ("DATABASE_URL", "sqlite://x.db"),
            ("BYOC_MASTER_KEYS", &keys),
            ("BYOC_ACTIVE_KEY_VERSION", "three"),
            ("BYOC_JWT_SECRET", JWT_SECRET),
        ]);
        assert!(line.contains("BYOC_ACTIVE_KEY_VERSION"), "{line}");

        let line = error_line(&[("TWILIO_API_BASE", "not a url")]);
        assert!(line.starts_with("TWILIO_API_BASE:"), "{line}");
        let line = error_line(&[("BYOC_BIND", "nowhere")]);
        assert!(line.starts_with("BYOC_BIND:"), "{line}");
        let line = error_line(&[("BYOC_CACHE_TTL_SECS", "-1")]);
        assert!(line.starts_with("BYOC_CACHE_TTL_SECS:"), "{line}");
        let line = error_line(&[("DATABASE_URL", "mysql://secret-password@host/db")]);
        assert!(
            line.starts_with("DATABASE_URL:") && !line.contains("secret-password"),
            "{line}"
        );
        let line = error_line(&[("BYOC_LEGACY_FALLBACK_ORGS", "not-a-uuid")]);
        assert!(line.starts_with("BYOC_LEGACY_FALLBACK_ORGS:"), "{line}");
        let line = error_line(&[("BYOC_METRICS_TOKEN", "short-metrics-token")]);
        assert!(
            line.starts_with("BYOC_METRICS_TOKEN:") && !line.contains("short-metrics-token"),
            "{line}"
        );
        let line = error_line(&[("BYOC_JWT_SECRET", "short-secret")]);
        assert!(
            line.starts_with("BYOC_JWT_SECRET:") && !line.contains("short-secret"),
            "{line}"
        );
        let line = error_line(&[("TWILIO_ACCOUNT_SID", "AC00")]);
        assert!(line.starts_with("TWILIO_AUTH_TOKEN:"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn half_configured_production_is_refused() {
        // A database without an environment key is a configuration: its versions may all be KMS-held. Without
        // any the start is refused naming BYOC_MASTER_KEYS (byoc-runtime's master_keys tests).
        let config = parse(&[
            ("DATABASE_URL", "sqlite://x.db"),
            ("BYOC_JWT_SECRET", JWT_SECRET),
        ])
        .expect("keys may be KMS-held");
        assert!(!config.is_dev());
        let line = error_line(&[("CREDENTIAL_ENCRYPTION_KEY", KEY_A)]);
        assert!(line.starts_with("DATABASE_URL:"), "{line}");
        let line = error_line(&[
            ("DATABASE_URL", "sqlite://x.db"),
            ("CREDENTIAL_ENCRYPTION_KEY", KEY_A),
        ]);
        assert!(line.starts_with("BYOC_JWT_SECRET:"), "{line}");
    }

    #[test]
    fn legacy_twilio_credentials_are_validated() {
        let config = parse(&[
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "legacy-token"),
            ("TWILIO_PHONE_NUMBER", "+14155550123"),
        ])
        .expect("valid");
        let legacy = config.runtime.legacy_twilio.expect("configured");
        assert_eq!(legacy.phone_number.as_str(), "+14155550123");
        let line = error_line(&[
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "legacy-token"),
            ("TWILIO_PHONE_NUMBER", "0123"),
        ]);
        assert!(line.starts_with("TWILIO_PHONE_NUMBER:"), "{line}");
    }

    #[test]
    fn fallback_orgs_are_parsed() {
        let first = Uuid::new_v4();
        let second = Uuid::new_v4();
        let list = format!("{first}, {second},");
        let config = parse(&[
            ("BYOC_LEGACY_FALLBACK_ORGS", &list),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "legacy-token"),
            ("TWILIO_PHONE_NUMBER", "+14155550123"),
        ])
        .expect("valid");
        assert_eq!(config.runtime.legacy_fallback_orgs, vec![first, second]);
    }
}
