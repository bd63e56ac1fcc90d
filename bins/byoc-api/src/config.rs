//! Typed configuration shared by `byoc-api` and the `byoc` CLI, read from the contract's environment variables.
//!
//! Parsing happens once, at start-up: a [`Config`] holds only valid values (addresses, URLs, a built keyring,
//! org ids). A bad value stops start-up with a [`ConfigError`] whose one-line message names the variable and
//! never repeats a secret. An optional file named by `BYOC_CONFIG_FILE` (`KEY=VALUE` lines, dotenv syntax) adds
//! values for variables the environment leaves unset.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use byoc_credential_store::Backend;
use byoc_credential_types::{TwilioAccountSid, TwilioCredential};
use byoc_crypto::{Keyring, KeyringConfig, KeyringError};
use byoc_providers::ProviderConfig;
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use uuid::Uuid;

/// The variable naming the optional configuration file.
pub const CONFIG_FILE_VAR: &str = "BYOC_CONFIG_FILE";
/// The folder (relative to the working directory) that dev mode keeps its database and keys in.
pub const DEV_DIR: &str = ".byoc-dev";

const DEFAULT_BIND: &str = "127.0.0.1:8080";
const DEFAULT_CACHE_TTL_SECS: u64 = 60;
/// The shortest `BYOC_METRICS_TOKEN` accepted.
const MIN_METRICS_TOKEN_LEN: usize = 32;

/// Why the configuration cannot be used. `Display` is one line naming the variable; it never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable holds a value that cannot be used.
    #[error("{variable}: {reason}")]
    Invalid {
        /// The variable at fault.
        variable: &'static str,
        /// What is wrong, in words that never repeat the value of a secret.
        reason: String,
    },
    /// The master keys cannot be built into a keyring (the message names the variable).
    #[error("{0}")]
    Keyring(#[from] KeyringError),
    /// The configuration file cannot be read.
    #[error("{CONFIG_FILE_VAR}: cannot read {path}: {reason}")]
    File {
        /// The file named by `BYOC_CONFIG_FILE`.
        path: PathBuf,
        /// Why it cannot be read.
        reason: String,
    },
}

fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        variable,
        reason: reason.into(),
    }
}

/// The variable that names the service-context login's URL.
const SERVICE_DATABASE_URL: &str = "BYOC_SERVICE_DATABASE_URL";

/// `DATABASE_URL`: its scheme picks the store. Kept secret: a Postgres URL may hold a password.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: SecretString,
    backend: Backend,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?}, ..)", self.backend)
    }
}

impl DatabaseUrl {
    /// Parses `postgres://…`, `postgresql://…` or `sqlite://PATH`.
    pub fn parse(text: &str) -> Result<DatabaseUrl, ConfigError> {
        DatabaseUrl::parse_variable("DATABASE_URL", text)
    }

    /// Parses the value of `variable`, a database URL, naming `variable` in its errors.
    fn parse_variable(variable: &'static str, text: &str) -> Result<DatabaseUrl, ConfigError> {
        let backend = Backend::of_url(text).map_err(|error| invalid(variable, error.reason))?;
        if backend == Backend::Postgres {
            Url::parse(text)
                .map_err(|error| invalid(variable, format!("not a valid URL ({error})")))?;
        } else if text
            .trim_start_matches("sqlite:")
            .trim_start_matches("//")
            .is_empty()
        {
            return Err(invalid(
                variable,
                "a sqlite URL needs a file path, e.g. sqlite://byoc.db",
            ));
        }
        Ok(DatabaseUrl {
            url: SecretString::from(text.to_owned()),
            backend,
        })
    }

    /// The `sqlite://` URL of a file.
    pub fn sqlite_file(path: &Path) -> DatabaseUrl {
        DatabaseUrl {
            url: SecretString::from(format!("sqlite://{}", path.display())),
            backend: Backend::Sqlite,
        }
    }

    /// The store this URL selects.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL text, for connecting.
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }
}

/// How the service is deployed: dev mode (nothing configured) or with a database and master keys.
pub enum Deployment {
    /// Neither `DATABASE_URL` nor a master key is set: SQLite and generated keys under [`DEV_DIR`].
    Dev,
    /// A database and a keyring are configured.
    Configured {
        /// `DATABASE_URL`.
        database: DatabaseUrl,
        /// `BYOC_SERVICE_DATABASE_URL` (Postgres only): a login of its own, a member of `byoc_service`, for the
        /// work the service does in a service context (the Twilio status webhook, marking a credential the
        /// provider refused failed), so that the login serving users' requests cannot act as a service.
        service_database: Option<DatabaseUrl>,
        /// The keyring built from `BYOC_MASTER_KEYS` (or the legacy key).
        keyring: Arc<Keyring>,
    },
}

/// How bearer tokens are checked.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// `BYOC_JWT_SECRET`: HS256 secret (required outside dev mode unless a JWKS URL is set).
    pub jwt_secret: Option<SecretString>,
    /// `BYOC_JWKS_URL`: a JWKS document for RS256/ES256 tokens.
    pub jwks_url: Option<Url>,
    /// `BYOC_JWT_AUDIENCE` and `BYOC_JWT_ISSUER`: the audience and issuer tokens must name.
    pub claims: TokenClaimRules,
}

/// The audience a token's `aud` must name when it has one, and the issuer its `iss` must name when one is
/// configured. Tokens minted by byoc (`byoc token`, dev mode) carry both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaimRules {
    /// `BYOC_JWT_AUDIENCE` (default [`DEFAULT_JWT_AUDIENCE`]): a token whose `aud` is present and does not
    /// name it is refused; a token without `aud` is accepted.
    pub audience: String,
    /// `BYOC_JWT_ISSUER`: when set, a token's `iss` must be present and equal to it.
    pub issuer: Option<String>,
}

/// The audience Supabase writes into its access tokens, expected when `BYOC_JWT_AUDIENCE` is unset.
pub const DEFAULT_JWT_AUDIENCE: &str = "authenticated";

impl Default for TokenClaimRules {
    fn default() -> TokenClaimRules {
        TokenClaimRules {
            audience: DEFAULT_JWT_AUDIENCE.to_owned(),
            issuer: None,
        }
    }
}

/// The platform's Google OAuth app (`GOOGLE_OAUTH_CLIENT_ID`, `GOOGLE_OAUTH_CLIENT_SECRET`).
#[derive(Clone)]
pub struct GoogleOAuthClient {
    /// The OAuth client id (not secret).
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: SecretString,
}

/// Everything the service and the CLI read from their environment.
pub struct Config {
    /// `BYOC_BIND`: the listen address.
    pub bind: SocketAddr,
    /// Dev mode or a configured database and keyring.
    pub deployment: Deployment,
    /// Bearer-token verification.
    pub auth: AuthConfig,
    /// `BYOC_PUBLIC_URL`: the external base URL (defaults to `http://` + the bind address).
    pub public_url: Url,
    /// `BYOC_CACHE_TTL_SECS`: decrypted-credential cache TTL; zero disables the cache.
    pub cache_ttl: Duration,
    /// Provider base URLs and client tuning (`TWILIO_API_BASE`, `GOOGLE_*`, `BYOC_PUBLIC_URL`).
    pub providers: ProviderConfig,
    /// The platform's Google OAuth app, when configured.
    pub google_oauth_client: Option<GoogleOAuthClient>,
    /// Legacy env Twilio credentials (`TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_PHONE_NUMBER`), when
    /// all three are set.
    pub legacy_twilio: Option<TwilioCredential>,
    /// `BYOC_LEGACY_FALLBACK_ORGS`: orgs allowed to fall back to the legacy credentials.
    pub legacy_fallback_orgs: Vec<Uuid>,
    /// Per-organization rate limits and the daily provider-call warning (`BYOC_SMS_PER_MINUTE`,
    /// `BYOC_PROVIDER_CALLS_PER_MINUTE`, `BYOC_PROVIDER_DAILY_WARNING`).
    pub usage: crate::usage::UsageConfig,
    /// `BYOC_OAUTH_STATE_SECRET`: signs Google connect states (default: derived from `BYOC_JWT_SECRET`).
    pub oauth_state_secret: Option<SecretString>,
    /// `BYOC_METRICS_TOKEN`: the bearer token that unlocks the per-organization series of `/metrics`; without
    /// it they are never served.
    pub metrics_token: Option<SecretString>,
}

impl Config {
    /// Reads the process environment (and `BYOC_CONFIG_FILE`, when set).
    pub fn from_env() -> Result<Config, ConfigError> {
        let values = environment()?;
        Config::from_lookup(|name| values.get(name).cloned())
    }

    /// Parses a configuration from `lookup` (a variable's value, `None` when unset; empty counts as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());

        let bind = parse_bind(get("BYOC_BIND").as_deref().unwrap_or(DEFAULT_BIND))?;
        let database = get("DATABASE_URL")
            .map(|text| DatabaseUrl::parse(&text))
            .transpose()?;
        let service_database = get(SERVICE_DATABASE_URL)
            .map(|text| DatabaseUrl::parse_variable(SERVICE_DATABASE_URL, &text))
            .transpose()?;
        let postgres = |url: &Option<DatabaseUrl>| {
            url.as_ref()
                .is_some_and(|url| url.backend() == Backend::Postgres)
        };
        if service_database.is_some() && !(postgres(&service_database) && postgres(&database)) {
            return Err(invalid(
                SERVICE_DATABASE_URL,
                "only with a postgres:// DATABASE_URL, and a postgres:// URL itself (SQLite has no logins)",
            ));
        }
        let master_keys = get(byoc_crypto::MASTER_KEYS_VAR);
        let legacy_key = get(byoc_crypto::LEGACY_KEY_VAR);
        let active_version = get(byoc_crypto::ACTIVE_KEY_VERSION_VAR);
        let deployment =
            match (database, master_keys.is_some() || legacy_key.is_some()) {
                (None, false) => Deployment::Dev,
                (None, true) => {
                    return Err(invalid(
                        "DATABASE_URL",
                        "required when a master key is configured (unset both for dev mode)",
                    ))
                }
                (Some(_), false) => return Err(invalid(
                    byoc_crypto::MASTER_KEYS_VAR,
                    "required when DATABASE_URL is set (or the legacy CREDENTIAL_ENCRYPTION_KEY)",
                )),
                (Some(database), true) => {
                    let keyring = Keyring::from_config(KeyringConfig {
                        master_keys: master_keys.as_deref(),
                        active_version: active_version.as_deref(),
                        legacy_key: legacy_key.as_deref(),
                    })?;
                    Deployment::Configured {
                        database,
                        service_database,
                        keyring: Arc::new(keyring),
                    }
                }
            };

        let auth = AuthConfig {
            jwt_secret: get("BYOC_JWT_SECRET").map(SecretString::from),
            jwks_url: get("BYOC_JWKS_URL")
                .map(|text| parse_url("BYOC_JWKS_URL", &text))
                .transpose()?,
            claims: TokenClaimRules {
                audience: get("BYOC_JWT_AUDIENCE").map_or_else(
                    || DEFAULT_JWT_AUDIENCE.to_owned(),
                    |text| text.trim().to_owned(),
                ),
                issuer: get("BYOC_JWT_ISSUER").map(|text| text.trim().to_owned()),
            },
        };
        if matches!(deployment, Deployment::Configured { .. })
            && auth.jwt_secret.is_none()
            && auth.jwks_url.is_none()
        {
            return Err(invalid(
                "BYOC_JWT_SECRET",
                "required outside dev mode (or set BYOC_JWKS_URL)",
            ));
        }
        if let Some(secret) = &auth.jwt_secret {
            if secret.expose_secret().len() < 32 {
                return Err(invalid(
                    "BYOC_JWT_SECRET",
                    "must be at least 32 characters long",
                ));
            }
        }

        let providers = ProviderConfig::from_lookup(get)
            .map_err(|error| invalid(error.variable, "not a valid absolute http(s) URL"))?;
        let public_url = match &providers.public_url {
            Some(url) => url.clone(),
            None => parse_url("BYOC_BIND", &format!("http://{bind}"))?,
        };
        let cache_ttl = match get("BYOC_CACHE_TTL_SECS") {
            Some(text) => Duration::from_secs(text.trim().parse::<u64>().map_err(|_| {
                invalid(
                    "BYOC_CACHE_TTL_SECS",
                    "must be a whole number of seconds (0 disables the cache)",
                )
            })?),
            None => Duration::from_secs(DEFAULT_CACHE_TTL_SECS),
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
        let legacy_twilio = match (
            get("TWILIO_ACCOUNT_SID"),
            get("TWILIO_AUTH_TOKEN"),
            get("TWILIO_PHONE_NUMBER"),
        ) {
            (Some(account_sid), Some(token), Some(phone_number)) => Some(TwilioCredential {
                account_sid: TwilioAccountSid::parse("TWILIO_ACCOUNT_SID", account_sid.trim())
                    .map_err(|error| invalid(error.field, error.reason))?,
                auth_token: SecretString::from(token.trim().to_owned()),
                phone_number: byoc_providers::dialable_phone(
                    "TWILIO_PHONE_NUMBER",
                    phone_number.trim(),
                )
                .map_err(|error| invalid(error.field, error.reason))?,
            }),
            (None, None, None) => None,
            (sid, token, _) => {
                let missing = if sid.is_none() {
                    "TWILIO_ACCOUNT_SID"
                } else if token.is_none() {
                    "TWILIO_AUTH_TOKEN"
                } else {
                    "TWILIO_PHONE_NUMBER"
                };
                return Err(invalid(
                    missing,
                    "the legacy Twilio credentials need all of TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_PHONE_NUMBER",
                ));
            }
        };
        let legacy_fallback_orgs = match get("BYOC_LEGACY_FALLBACK_ORGS") {
            Some(list) => parse_org_list(&list)?,
            None => Vec::new(),
        };

        let usage = crate::usage::UsageConfig::from_lookup(get)?;
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

        Ok(Config {
            bind,
            deployment,
            auth,
            public_url,
            cache_ttl,
            providers,
            google_oauth_client,
            legacy_twilio,
            legacy_fallback_orgs,
            usage,
            oauth_state_secret,
            metrics_token,
        })
    }

    /// Whether the service runs in dev mode.
    pub fn is_dev(&self) -> bool {
        matches!(self.deployment, Deployment::Dev)
    }
}

/// The configuration variables: the process environment, plus the entries of `BYOC_CONFIG_FILE` for variables
/// the environment leaves unset. Empty values count as unset.
pub fn environment() -> Result<HashMap<String, String>, ConfigError> {
    let mut values: HashMap<String, String> = std::env::vars()
        .filter(|(_, value)| !value.is_empty())
        .collect();
    if let Some(path) = values.get(CONFIG_FILE_VAR).cloned() {
        for (key, value) in read_config_file(Path::new(&path))? {
            if !value.is_empty() {
                values.entry(key).or_insert(value);
            }
        }
    }
    Ok(values)
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

fn parse_url(variable: &'static str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text.trim())
        .map_err(|error| invalid(variable, format!("not a valid URL ({error})")))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(variable, "the URL scheme must be http or https"));
    }
    Ok(url)
}

fn parse_org_list(list: &str) -> Result<Vec<Uuid>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .enumerate()
        .map(|(index, item)| {
            Uuid::parse_str(item).map_err(|_| {
                invalid(
                    "BYOC_LEGACY_FALLBACK_ORGS",
                    format!("entry {} is not an organization uuid", index + 1),
                )
            })
        })
        .collect()
}

fn read_config_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let entries =
        dotenvy::from_path_iter(path).map_err(|error| file_error(describe_dotenv_error(&error)))?;
    entries
        .map(|entry| entry.map_err(|error| file_error(describe_dotenv_error(&error))))
        .collect()
}

/// dotenvy's parse errors quote the offending line, which may hold a secret: report only where it is.
fn describe_dotenv_error(error: &dotenvy::Error) -> String {
    match error {
        dotenvy::Error::LineParse(_, index) => format!("cannot parse the line at byte {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        _ => "cannot read the file".to_owned(),
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(config.cache_ttl, Duration::from_secs(60));
        assert_eq!(config.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(
            config.providers.twilio_api_base.as_str(),
            "https://api.twilio.com/"
        );
        assert!(config.legacy_fallback_orgs.is_empty());
        assert_eq!(config.auth.claims.audience, "authenticated");
        assert_eq!(config.auth.claims.issuer, None);
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
        match config.deployment {
            Deployment::Configured {
                keyring, database, ..
            } => {
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
        match config.deployment {
            Deployment::Configured {
                keyring, database, ..
            } => {
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

        let keys = format!("1:{KEY_A}");
        let line = error_line(&[
            ("DATABASE_URL", "sqlite://x.db"),
            ("BYOC_MASTER_KEYS", &keys),
            ("BYOC_ACTIVE_KEY_VERSION", "3"),
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
        let line = error_line(&[
            ("DATABASE_URL", "sqlite://x.db"),
            ("BYOC_JWT_SECRET", JWT_SECRET),
        ]);
        assert!(line.starts_with("BYOC_MASTER_KEYS:"), "{line}");
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
        let legacy = config.legacy_twilio.expect("configured");
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
        let config = parse(&[("BYOC_LEGACY_FALLBACK_ORGS", &list)]).expect("valid");
        assert_eq!(config.legacy_fallback_orgs, vec![first, second]);
    }

    #[test]
    fn config_file_errors_never_quote_lines() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("byoc.env");
        std::fs::write(
            &path,
            "BYOC_BIND=127.0.0.1:9000\nBROKEN LINE secret-value\n",
        )
        .expect("write");
        let error = read_config_file(&path).expect_err("the second line is not KEY=VALUE");
        let line = error.to_string();
        assert!(
            line.starts_with("BYOC_CONFIG_FILE:") && !line.contains("secret-value"),
            "{line}"
        );

        std::fs::write(&path, "# comment\nBYOC_BIND=127.0.0.1:9000\n").expect("write");
        let entries = read_config_file(&path).expect("valid file");
        assert_eq!(
            entries,
            vec![("BYOC_BIND".to_owned(), "127.0.0.1:9000".to_owned())]
        );
    }
}
