//! [`Keyring`]: the versioned master keys and the active version, built from configuration.

use std::collections::BTreeMap;
use std::fmt;

use ring::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use ring::hkdf;
use ring::rand::SystemRandom;

use crate::key_check_value::KeyCheckValue;
use crate::key_version::{KeyVersion, KeyVersionError};
use crate::master_key::{MasterKey, MasterKeyHexError};

/// Name of the variable holding the versioned master keys (`VERSION:HEX64,…`).
pub const MASTER_KEYS_VAR: &str = "BYOC_MASTER_KEYS";
/// Name of the variable holding the active key version.
pub const ACTIVE_KEY_VERSION_VAR: &str = "BYOC_ACTIVE_KEY_VERSION";
/// Name of the legacy single-key variable (read as version 1 when `BYOC_MASTER_KEYS` is unset).
pub const LEGACY_KEY_VAR: &str = "CREDENTIAL_ENCRYPTION_KEY";

/// What [`Keyring::new`] reports as the source in its errors.
const KEYRING_NEW: &str = "Keyring::new";

/// HKDF salt for everything derived from a master key.
const KDF_SALT: &[u8] = b"byoc-crypto/v1 master key derivation";
/// HKDF info of the key-encryption key (the AES-256-GCM key that wraps data keys).
const KEK_INFO: &[u8] = b"byoc-crypto/v1 key-encryption key";
/// HKDF info of the key check value.
const KCV_INFO: &[u8] = b"byoc-crypto/v1 key check value";

/// The raw configuration values a [`Keyring`] is built from; the caller reads the environment.
///
/// `None` means the variable is unset. `Debug` is deliberately not implemented: these strings hold keys.
#[derive(Clone, Copy, Default)]
pub struct KeyringConfig<'a> {
    /// `BYOC_MASTER_KEYS`: comma list of `VERSION:HEX64`.
    pub master_keys: Option<&'a str>,
    /// `BYOC_ACTIVE_KEY_VERSION`: the version that wraps new data keys; default the highest listed.
    pub active_version: Option<&'a str>,
    /// `CREDENTIAL_ENCRYPTION_KEY`: legacy single key (64 hex), read as version 1 when `master_keys` is unset.
    pub legacy_key: Option<&'a str>,
}

/// Why a keyring could not be built. Messages name the variable and the problem, never key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// Neither `BYOC_MASTER_KEYS` nor `CREDENTIAL_ENCRYPTION_KEY` is set.
    #[error(
        "no master key configured: set BYOC_MASTER_KEYS (or the legacy CREDENTIAL_ENCRYPTION_KEY)"
    )]
    NotConfigured,
    /// The variable is set but holds no keys.
    #[error("{variable}: no keys given")]
    Empty {
        /// The variable (or constructor) at fault.
        variable: &'static str,
    },
    /// A comma-separated entry is not `VERSION:HEX64`.
    #[error("{variable}: entry {position} is not of the form VERSION:HEX64")]
    MalformedEntry {
        /// The variable at fault.
        variable: &'static str,
        /// 1-based position of the entry in the comma list.
        position: usize,
    },
    /// An entry's version is 0 or not a number.
    #[error("{variable}: entry {position} has an invalid version: {problem}")]
    InvalidVersion {
        /// The variable at fault.
        variable: &'static str,
        /// 1-based position of the entry in the comma list.
        position: usize,
        /// What is wrong with the version.
        problem: KeyVersionError,
    },
    /// A key is not exactly 64 characters long.
    #[error(
        "{variable}: key for version {version} is not 64 hex digits (it has {found} characters)"
    )]
    WrongKeyLength {
        /// The variable at fault.
        variable: &'static str,
        /// The version the key was given for.
        version: KeyVersion,
        /// How many characters the key had.
        found: usize,
    },
    /// A key has 64 characters, not all of them hex digits.
    #[error("{variable}: key for version {version} is not 64 hex digits (it contains a non-hex character)")]
    NotHex {
        /// The variable at fault.
        variable: &'static str,
        /// The version the key was given for.
        version: KeyVersion,
    },
    /// The same version is given twice.
    #[error("{variable}: version {version} is listed more than once")]
    DuplicateVersion {
        /// The variable (or constructor) at fault.
        variable: &'static str,
        /// The repeated version.
        version: KeyVersion,
    },
    /// The active version is 0 or not a number.
    #[error("{variable}: {problem}")]
    InvalidActiveVersion {
        /// The variable at fault.
        variable: &'static str,
        /// What is wrong with the version.
        problem: KeyVersionError,
    },
    /// The active version has no key.
    #[error("{variable}: version {version} is not one of the configured master key versions")]
    UnknownActiveVersion {
        /// The variable (or constructor) at fault.
        variable: &'static str,
        /// The version that has no key.
        version: KeyVersion,
    },
}

/// What the keyring keeps per version: the derived key-encryption key and the key check value.
/// The master key itself is dropped (and zeroed) once these are derived.
struct VersionKeys {
    key_encryption_key: LessSafeKey,
    check_value: KeyCheckValue,
}

impl VersionKeys {
    fn derive(master_key: &MasterKey) -> VersionKeys {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KDF_SALT).extract(master_key.expose_bytes());
        let key_encryption_key = prk
            .expand(&[KEK_INFO], &AES_256_GCM)
            .map(UnboundKey::from)
            .map(LessSafeKey::new)
            .expect("32 bytes is within HKDF-SHA256's output limit");
        VersionKeys {
            key_encryption_key,
            check_value: KeyCheckValue::derive(&prk, KCV_INFO),
        }
    }
}

/// The key check value of `master_key`, as the keyring derives it.
pub(crate) fn key_check_value_of(master_key: &MasterKey) -> KeyCheckValue {
    VersionKeys::derive(master_key).check_value
}

/// Where the master keys come from besides the environment: versions whose keys were unwrapped elsewhere (by a
/// key management service) and named in errors as this source.
pub const HELD_KEYS_SOURCE: &str = "the master_keys table";

/// Versioned 256-bit master keys with one active version that wraps new data keys.
///
/// Every listed version can unwrap; only the active one wraps. `Debug` shows the versions, never keys.
/// Build it once at start-up and share it (`Arc<Keyring>`); it is `Send + Sync`.
pub struct Keyring {
    keys: BTreeMap<KeyVersion, VersionKeys>,
    active: KeyVersion,
    rng: SystemRandom,
}

impl Keyring {
    /// Builds a keyring from keys and the active version.
    ///
    /// Fails on an empty list, a repeated version or an active version without a key.
    pub fn new(
        keys: Vec<(KeyVersion, MasterKey)>,
        active: KeyVersion,
    ) -> Result<Keyring, KeyringError> {
        Keyring::build(keys, Some(active), KEYRING_NEW, KEYRING_NEW)
    }

    /// Builds a keyring from the contract's environment formats.
    ///
    /// `BYOC_MASTER_KEYS` (comma list of `VERSION:HEX64`, whitespace around items ignored) wins; when it is
    /// unset, `CREDENTIAL_ENCRYPTION_KEY` is read as version 1. `BYOC_ACTIVE_KEY_VERSION` defaults to the
    /// highest version. Every error names the variable at fault and never contains key material.
    pub fn from_config(config: KeyringConfig<'_>) -> Result<Keyring, KeyringError> {
        let (keys, keys_variable) = environment_keys(config)?;
        let active = parse_active(config.active_version)?;
        Keyring::build(keys, active, keys_variable, ACTIVE_KEY_VERSION_VAR)
    }

    /// Builds a keyring from the environment's keys (as [`Keyring::from_config`]) together with `held`, versions
    /// whose keys were unwrapped from somewhere else (a KMS). Either may be empty, not both; a version given by
    /// both is refused. `BYOC_ACTIVE_KEY_VERSION` picks among all versions and defaults to the highest.
    pub fn from_config_and_held(
        config: KeyringConfig<'_>,
        held: Vec<(KeyVersion, MasterKey)>,
    ) -> Result<Keyring, KeyringError> {
        let mut keys = match (config.master_keys, config.legacy_key) {
            (None, None) if !held.is_empty() => Vec::new(),
            _ => environment_keys(config)?.0,
        };
        for (version, key) in held {
            if keys.iter().any(|(listed, _)| *listed == version) {
                return Err(KeyringError::DuplicateVersion {
                    variable: HELD_KEYS_SOURCE,
                    version,
                });
            }
            keys.push((version, key));
        }
        let keys_variable = if config.master_keys.is_some() {
            MASTER_KEYS_VAR
        } else {
            HELD_KEYS_SOURCE
        };
        Keyring::build(
            keys,
            parse_active(config.active_version)?,
            keys_variable,
            ACTIVE_KEY_VERSION_VAR,
        )
    }

    fn build(
        keys: Vec<(KeyVersion, MasterKey)>,
        active: Option<KeyVersion>,
        keys_variable: &'static str,
        active_variable: &'static str,
    ) -> Result<Keyring, KeyringError> {
        let mut derived = BTreeMap::new();
        for (version, master_key) in keys {
            if derived.contains_key(&version) {
                return Err(KeyringError::DuplicateVersion {
                    variable: keys_variable,
                    version,
                });
            }
            derived.insert(version, VersionKeys::derive(&master_key));
        }
        let highest = derived
            .last_key_value()
            .map(|(version, _)| *version)
            .ok_or(KeyringError::Empty {
                variable: keys_variable,
            })?;
        let active = active.unwrap_or(highest);
        if !derived.contains_key(&active) {
            return Err(KeyringError::UnknownActiveVersion {
                variable: active_variable,
                version: active,
            });
        }
        Ok(Keyring {
            keys: derived,
            active,
            rng: SystemRandom::new(),
        })
    }

    /// The version that wraps new data keys.
    pub fn active_version(&self) -> KeyVersion {
        self.active
    }

    /// Every version in the keyring, in ascending order.
    pub fn versions(&self) -> impl Iterator<Item = KeyVersion> + '_ {
        self.keys.keys().copied()
    }

    /// Whether the keyring has a key for `version`.
    pub fn contains(&self, version: KeyVersion) -> bool {
        self.keys.contains_key(&version)
    }

    /// The key check value of `version`'s key, or `None` if the keyring has no such version.
    pub fn key_check_value(&self, version: KeyVersion) -> Option<KeyCheckValue> {
        self.keys.get(&version).map(|keys| keys.check_value)
    }

    /// The key-encryption key of `version`.
    pub(crate) fn key_encryption_key(&self, version: KeyVersion) -> Option<&LessSafeKey> {
        self.keys.get(&version).map(|keys| &keys.key_encryption_key)
    }

    /// The operating system's random number generator.
    pub(crate) fn rng(&self) -> &SystemRandom {
        &self.rng
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

/// Master keys by version, in the order given.
type VersionedKeys = Vec<(KeyVersion, MasterKey)>;

/// The environment's keys: `BYOC_MASTER_KEYS`, else the legacy key as version 1; with the variable they came from.
fn environment_keys(
    config: KeyringConfig<'_>,
) -> Result<(VersionedKeys, &'static str), KeyringError> {
    match (config.master_keys, config.legacy_key) {
        (Some(list), _) => Ok((parse_master_keys(list)?, MASTER_KEYS_VAR)),
        (None, Some(legacy)) => Ok((
            vec![(
                KeyVersion::FIRST,
                parse_key(legacy, LEGACY_KEY_VAR, KeyVersion::FIRST)?,
            )],
            LEGACY_KEY_VAR,
        )),
        (None, None) => Err(KeyringError::NotConfigured),
    }
}

/// Parses `BYOC_ACTIVE_KEY_VERSION` when set.
fn parse_active(text: Option<&str>) -> Result<Option<KeyVersion>, KeyringError> {
    text.map(|text| {
        text.parse::<KeyVersion>()
            .map_err(|problem| KeyringError::InvalidActiveVersion {
                variable: ACTIVE_KEY_VERSION_VAR,
                problem,
            })
    })
    .transpose()
}

/// Parses `BYOC_MASTER_KEYS`.
fn parse_master_keys(list: &str) -> Result<Vec<(KeyVersion, MasterKey)>, KeyringError> {
    if list.trim().is_empty() {
        return Err(KeyringError::Empty {
            variable: MASTER_KEYS_VAR,
        });
    }
    list.split(',')
        .enumerate()
        .map(|(index, entry)| {
            let position = index + 1;
            let (version_text, key_text) =
                entry.split_once(':').ok_or(KeyringError::MalformedEntry {
                    variable: MASTER_KEYS_VAR,
                    position,
                })?;
            let version = version_text.parse::<KeyVersion>().map_err(|problem| {
                KeyringError::InvalidVersion {
                    variable: MASTER_KEYS_VAR,
                    position,
                    problem,
                }
            })?;
            Ok((version, parse_key(key_text, MASTER_KEYS_VAR, version)?))
        })
        .collect()
}

/// Parses one key, naming the variable and version in the error.
fn parse_key(
    text: &str,
    variable: &'static str,
    version: KeyVersion,
) -> Result<MasterKey, KeyringError> {
    MasterKey::from_hex(text).map_err(|problem| match problem {
        MasterKeyHexError::WrongLength { found } => KeyringError::WrongKeyLength {
            variable,
            version,
            found,
        },
        MasterKeyHexError::NotHex => KeyringError::NotHex { variable, version },
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn version(number: u32) -> KeyVersion {
        KeyVersion::new(number).expect("test versions are non-zero")
    }

    #[test]
    fn keyring_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Keyring>();
    }

    #[test]
    fn new_defaults_nothing_and_checks_its_input() {
        let keyring = Keyring::new(
            vec![
                (version(3), MasterKey::generate()),
                (version(1), MasterKey::generate()),
            ],
            version(1),
        )
        .expect("valid keyring");
        assert_eq!(keyring.active_version(), version(1));
        assert_eq!(
            keyring.versions().collect::<Vec<_>>(),
            vec![version(1), version(3)]
        );
        assert!(keyring.contains(version(3)));
        assert!(!keyring.contains(version(2)));
        assert_eq!(keyring.key_check_value(version(2)), None);

        assert_eq!(
            Keyring::new(Vec::new(), version(1)).map(|_| ()),
            Err(KeyringError::Empty {
                variable: KEYRING_NEW
            })
        );
        assert_eq!(
            Keyring::new(vec![(version(1), MasterKey::generate())], version(2)).map(|_| ()),
            Err(KeyringError::UnknownActiveVersion {
                variable: KEYRING_NEW,
                version: version(2)
            })
        );
    }

    #[test]
    fn held_versions_mix_with_environment_keys() {
        let env_key = MasterKey::generate();
        let env_check = env_key.key_check_value();
        let list = format!("1:{}", env_key.to_hex().expose_secret());
        let held = MasterKey::generate();
        let held_check = held.key_check_value();
        let keyring = Keyring::from_config_and_held(
            KeyringConfig {
                master_keys: Some(&list),
                active_version: None,
                legacy_key: None,
            },
            vec![(version(2), held)],
        )
        .expect("valid");
        assert_eq!(keyring.active_version(), version(2), "the highest of all");
        assert_eq!(keyring.key_check_value(version(1)), Some(env_check));
        assert_eq!(keyring.key_check_value(version(2)), Some(held_check));

        let picked = Keyring::from_config_and_held(
            KeyringConfig {
                master_keys: Some(&list),
                active_version: Some("1"),
                legacy_key: None,
            },
            vec![(version(2), MasterKey::generate())],
        )
        .expect("valid");
        assert_eq!(picked.active_version(), version(1));

        let held_only = Keyring::from_config_and_held(
            KeyringConfig::default(),
            vec![(version(3), MasterKey::generate())],
        )
        .expect("held keys alone suffice");
        assert_eq!(held_only.active_version(), version(3));

        assert_eq!(
            Keyring::from_config_and_held(
                KeyringConfig {
                    master_keys: Some(&list),
                    active_version: None,
                    legacy_key: None,
                },
                vec![(version(1), MasterKey::generate())],
            )
            .map(|_| ()),
            Err(KeyringError::DuplicateVersion {
                variable: HELD_KEYS_SOURCE,
                version: version(1)
            })
        );
        assert_eq!(
            Keyring::from_config_and_held(KeyringConfig::default(), Vec::new()).map(|_| ()),
            Err(KeyringError::NotConfigured)
        );
        assert_eq!(
            Keyring::from_config_and_held(
                KeyringConfig {
                    active_version: Some("9"),
                    ..KeyringConfig::default()
                },
                vec![(version(3), MasterKey::generate())],
            )
            .map(|_| ()),
            Err(KeyringError::UnknownActiveVersion {
                variable: ACTIVE_KEY_VERSION_VAR,
                version: version(9)
            })
        );
    }

    #[test]
    fn debug_lists_versions_only() {
        let keyring = Keyring::new(
            vec![(version(2), MasterKey::from_bytes([0x11; 32]))],
            version(2),
        )
        .expect("valid keyring");
        assert_eq!(
            format!("{keyring:?}"),
            "Keyring { versions: [KeyVersion(2)], active: KeyVersion(2) }"
        );
    }
}
