//! The configuration both binaries read (database, keys, tokens, cache, the legacy fallback), from the
//! contract's environment variables. `byoc-api` adds what only the HTTP service reads.
//!
//! Parsing happens once, at start-up: a [`Config`] holds only valid values (addresses, URLs, master keys in a
//! checked format, org ids; the keyring is built once the store is open, with the KMS-held versions it lists). A
//! bad value stops start-up with a [`ConfigError`] whose one-line message names the variable and never repeats a
//! secret. An optional file named by `BYOC_CONFIG_FILE` (`KEY=VALUE` lines, dotenv syntax) adds
//! values for variables the environment leaves unset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use byoc_credential_store::postgres::DEFAULT_MAX_CONNECTIONS;
use byoc_credential_store::Backend;
use byoc_credential_types::{E164Phone, TwilioAccountSid, TwilioCredential};
use byoc_crypto::{
    KeyVersion, Keyring, KeyringConfig, KeyringError, MasterKey, ACTIVE_KEY_VERSION_VAR,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use uuid::Uuid;

/// The variable naming the optional configuration file.
pub const CONFIG_FILE_VAR: &str = "BYOC_CONFIG_FILE";
/// The folder (relative to the working directory) that dev mode keeps its database and keys in.
pub const DEV_DIR: &str = ".byoc-dev";

const DEFAULT_CACHE_TTL_SECS: u64 = 60;
/// The largest `BYOC_DB_MAX_CONNECTIONS` accepted.
const MAX_DB_CONNECTIONS: u32 = 1000;

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

/// The error for `variable` holding an unusable value, with `reason` (never the value).
pub fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
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
        /// The master keys the environment gives (`BYOC_MASTER_KEYS` or the legacy key, maybe none) and
        /// `BYOC_ACTIVE_KEY_VERSION`; the keyring is built at start with the KMS-held versions the database
        /// lists.
        keys: EnvironmentKeys,
    },
}

/// The master keys the environment gives (`BYOC_MASTER_KEYS`, else the legacy `CREDENTIAL_ENCRYPTION_KEY`; maybe
/// none when every version is KMS-held) and `BYOC_ACTIVE_KEY_VERSION`. Their formats are checked when the
/// configuration is read; the keyring is built at start, once the KMS-held versions are unwrapped, because the
/// active version may be one of those. `Debug` shows no key.
#[derive(Clone, Default)]
pub struct EnvironmentKeys {
    master_keys: Option<SecretString>,
    legacy_key: Option<SecretString>,
    active_version: Option<String>,
}

impl std::fmt::Debug for EnvironmentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentKeys")
            .field("versions", &self.versions())
            .field("active_version", &self.active_version)
            .finish()
    }
}

impl EnvironmentKeys {
    /// Checks the variables' formats (every error names its variable, never a key).
    fn parse(
        master_keys: Option<String>,
        legacy_key: Option<String>,
        active_version: Option<String>,
    ) -> Result<EnvironmentKeys, ConfigError> {
        let keys = EnvironmentKeys {
            master_keys: master_keys.map(SecretString::from),
            legacy_key: legacy_key.map(SecretString::from),
            active_version,
        };
        if !keys.is_empty() {
            Keyring::from_config(KeyringConfig {
                active_version: None,
                ..keys.config()
            })?;
        }
        if let Some(text) = &keys.active_version {
            text.parse::<KeyVersion>()
                .map_err(|problem| KeyringError::InvalidActiveVersion {
                    variable: ACTIVE_KEY_VERSION_VAR,
                    problem,
                })?;
        }
        Ok(keys)
    }

    fn config(&self) -> KeyringConfig<'_> {
        KeyringConfig {
            master_keys: self.master_keys.as_ref().map(|keys| keys.expose_secret()),
            active_version: self.active_version.as_deref(),
            legacy_key: self.legacy_key.as_ref().map(|key| key.expose_secret()),
        }
    }

    /// Whether the environment gives no master key.
    pub fn is_empty(&self) -> bool {
        self.master_keys.is_none() && self.legacy_key.is_none()
    }

    /// The versions the environment gives keys for, in ascending order.
    pub fn versions(&self) -> Vec<KeyVersion> {
        if self.is_empty() {
            return Vec::new();
        }
        Keyring::from_config(KeyringConfig {
            active_version: None,
            ..self.config()
        })
        .map(|keyring| keyring.versions().collect())
        .unwrap_or_default()
    }

    /// The keyring of the environment's keys and the `held` (KMS-held, unwrapped) versions, with the active
    /// version `BYOC_ACTIVE_KEY_VERSION` names among all (default the highest).
    pub fn keyring(&self, held: Vec<(KeyVersion, MasterKey)>) -> Result<Keyring, KeyringError> {
        Keyring::from_config_and_held(self.config(), held)
    }
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

/// What both binaries read from their environment.
pub struct RuntimeConfig {
    /// Dev mode or a configured database and keyring.
    pub deployment: Deployment,
    /// Bearer-token verification and minting.
    pub auth: AuthConfig,
    /// `BYOC_CACHE_TTL_SECS`: decrypted-credential cache TTL; zero disables the cache.
    pub cache_ttl: Duration,
    /// `BYOC_DB_MAX_CONNECTIONS`: connections per PostgreSQL pool (1 to 1000, default
    /// [`DEFAULT_MAX_CONNECTIONS`]); a request that cannot get one within the pool's acquire timeout is answered
    /// 503. Ignored by the SQLite store.
    pub db_max_connections: u32,
    /// Legacy env Twilio credentials (`TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_PHONE_NUMBER`), when
    /// all three are set.
    pub legacy_twilio: Option<TwilioCredential>,
    /// `BYOC_LEGACY_FALLBACK_ORGS`: orgs allowed to fall back to the legacy credentials.
    pub legacy_fallback_orgs: Vec<Uuid>,
}

impl RuntimeConfig {
    /// Reads the process environment (and `BYOC_CONFIG_FILE`, when set).
    pub fn from_env() -> Result<RuntimeConfig, ConfigError> {
        let values = environment()?;
        RuntimeConfig::from_lookup(|name| values.get(name).cloned())
    }

    /// Parses a configuration from `lookup` (a variable's value, `None` when unset; empty counts as unset).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<RuntimeConfig, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
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
        // With DATABASE_URL and no key in the environment, every version may be KMS-held (the `master_keys`
        // table): whether there is any key at all is known at start, once the database is open.
        let deployment = match (database, master_keys.is_some() || legacy_key.is_some()) {
            (None, false) => Deployment::Dev,
            (None, true) => {
                return Err(invalid(
                    "DATABASE_URL",
                    "required when a master key is configured (unset both for dev mode)",
                ))
            }
            (Some(database), _) => Deployment::Configured {
                database,
                service_database,
                keys: EnvironmentKeys::parse(master_keys, legacy_key, active_version)?,
            },
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

        let cache_ttl = match get("BYOC_CACHE_TTL_SECS") {
            Some(text) => Duration::from_secs(text.trim().parse::<u64>().map_err(|_| {
                invalid(
                    "BYOC_CACHE_TTL_SECS",
                    "must be a whole number of seconds (0 disables the cache)",
                )
            })?),
            None => Duration::from_secs(DEFAULT_CACHE_TTL_SECS),
        };
        let db_max_connections = match get("BYOC_DB_MAX_CONNECTIONS") {
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|count| (1..=MAX_DB_CONNECTIONS).contains(count))
                .ok_or_else(|| {
                    invalid(
                        "BYOC_DB_MAX_CONNECTIONS",
                        "must be a whole number of connections from 1 to 1000",
                    )
                })?,
            None => DEFAULT_MAX_CONNECTIONS,
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
                phone_number: E164Phone::parse_dialable("TWILIO_PHONE_NUMBER", phone_number.trim())
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
        if !legacy_fallback_orgs.is_empty() && legacy_twilio.is_none() {
            return Err(invalid(
                "BYOC_LEGACY_FALLBACK_ORGS",
                "lists organizations but the legacy TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and \
                 TWILIO_PHONE_NUMBER are not set: set them, or clear the list",
            ));
        }

        Ok(RuntimeConfig {
            deployment,
            auth,
            cache_ttl,
            db_max_connections,
            legacy_twilio,
            legacy_fallback_orgs,
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
    with_config_file(std::env::vars().collect())
}

/// `variables` plus the entries of the file `BYOC_CONFIG_FILE` names, for variables `variables` does not set.
/// A variable set to the empty string counts as unset when it is read, but it is set: the file cannot fill it,
/// so `BYOC_LEGACY_FALLBACK_ORGS=` in the environment clears a list the file holds.
fn with_config_file(
    mut variables: HashMap<String, String>,
) -> Result<HashMap<String, String>, ConfigError> {
    if let Some(path) = variables
        .get(CONFIG_FILE_VAR)
        .filter(|path| !path.is_empty())
        .cloned()
    {
        for (key, value) in read_config_file(Path::new(&path))? {
            variables.entry(key).or_insert(value);
        }
    }
    Ok(variables)
}

/// Parses an absolute http(s) URL; errors name `variable`.
pub fn parse_url(variable: &'static str, text: &str) -> Result<Url, ConfigError> {
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

    #[test]
    fn an_empty_variable_in_the_environment_clears_the_files_value() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("byoc.env");
        let org = Uuid::new_v4();
        std::fs::write(
            &path,
            format!("BYOC_LEGACY_FALLBACK_ORGS={org}\nBYOC_CACHE_TTL_SECS=5\n"),
        )
        .expect("write");
        let variables = with_config_file(HashMap::from([
            (CONFIG_FILE_VAR.to_owned(), path.display().to_string()),
            ("BYOC_LEGACY_FALLBACK_ORGS".to_owned(), String::new()),
        ]))
        .expect("readable");
        let config =
            RuntimeConfig::from_lookup(|name| variables.get(name).cloned()).expect("valid");
        assert!(
            config.legacy_fallback_orgs.is_empty(),
            "the empty variable wins"
        );
        assert_eq!(
            config.cache_ttl,
            Duration::from_secs(5),
            "the file fills what is unset"
        );
    }

    #[test]
    fn a_fallback_list_without_the_legacy_credentials_is_refused() {
        let org = Uuid::new_v4().to_string();
        let error = RuntimeConfig::from_lookup(|name| {
            (name == "BYOC_LEGACY_FALLBACK_ORGS").then(|| org.clone())
        })
        .err()
        .expect("refused")
        .to_string();
        assert!(
            error.starts_with("BYOC_LEGACY_FALLBACK_ORGS:") && error.contains("TWILIO_AUTH_TOKEN"),
            "{error}"
        );
    }

    #[test]
    fn the_pool_size_is_read_and_bounded() {
        let config = RuntimeConfig::from_lookup(|_| None).expect("defaults");
        assert_eq!(config.db_max_connections, DEFAULT_MAX_CONNECTIONS);
        let config = RuntimeConfig::from_lookup(|name| {
            (name == "BYOC_DB_MAX_CONNECTIONS").then(|| "32".to_owned())
        })
        .expect("valid");
        assert_eq!(config.db_max_connections, 32);
        for bad in ["0", "1001", "-1", "ten"] {
            let error = RuntimeConfig::from_lookup(|name| {
                (name == "BYOC_DB_MAX_CONNECTIONS").then(|| bad.to_owned())
            })
            .err()
            .expect("refused")
            .to_string();
            assert!(
                error.starts_with("BYOC_DB_MAX_CONNECTIONS:"),
                "{bad}: {error}"
            );
        }
    }
}
