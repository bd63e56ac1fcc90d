//! Building a keyring from the contract's environment formats.

use byoc_crypto::{KeyVersionError, Keyring, KeyringConfig, KeyringError};

use crate::fixtures::{context, version};

const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn from_keys(master_keys: &str) -> Result<Keyring, KeyringError> {
    Keyring::from_config(KeyringConfig {
        master_keys: Some(master_keys),
        ..KeyringConfig::default()
    })
}

/// Asserts the error, and that its message names the variable and holds no key hex.
fn assert_config_error(config: KeyringConfig<'_>, expected: KeyringError, message: &str) {
    let error = Keyring::from_config(config)
        .map(|_| ())
        .expect_err("configuration is invalid");
    assert_eq!(error, expected);
    let text = error.to_string();
    assert_eq!(text, message);
    for secret in [config.master_keys, config.legacy_key]
        .into_iter()
        .flatten()
    {
        for (index, window) in secret.as_bytes().windows(8).enumerate() {
            let window = std::str::from_utf8(window).unwrap_or_default();
            assert!(
                window.is_empty() || !text.contains(window),
                "message {text:?} contains key material at {index}"
            );
        }
    }
    assert!(!text.contains(&KEY_A[..8]) && !text.contains(&KEY_B[..8]));
}

#[test]
fn parses_versioned_keys_and_defaults_to_the_highest() {
    let keyring = from_keys(&format!(" 1:{KEY_A} , 3:{KEY_B}\n")).expect("valid");
    assert_eq!(
        keyring.versions().collect::<Vec<_>>(),
        vec![version(1), version(3)]
    );
    assert_eq!(keyring.active_version(), version(3));
}

#[test]
fn active_version_picks_the_wrapping_key() {
    let keyring = Keyring::from_config(KeyringConfig {
        master_keys: Some(&format!("1:{KEY_A},2:{KEY_B}")),
        active_version: Some("1"),
        legacy_key: None,
    })
    .expect("valid");
    assert_eq!(keyring.active_version(), version(1));
    assert_eq!(
        keyring.seal(b"x", &context()).expect("seal").key_version(),
        version(1)
    );
}

#[test]
fn legacy_key_is_version_one_and_only_used_without_master_keys() {
    let legacy = Keyring::from_config(KeyringConfig {
        legacy_key: Some(KEY_A),
        ..KeyringConfig::default()
    })
    .expect("valid");
    assert_eq!(legacy.versions().collect::<Vec<_>>(), vec![version(1)]);
    let versioned = from_keys(&format!("1:{KEY_A}")).expect("valid");
    assert_eq!(
        legacy.key_check_value(version(1)),
        versioned.key_check_value(version(1))
    );
    // Data sealed under the legacy key opens with the same key listed as version 1.
    let envelope = legacy.seal(b"legacy", &context()).expect("seal");
    let opened = versioned
        .open(envelope.as_bytes(), &context())
        .expect("open");
    assert_eq!(opened.expose_secret(), b"legacy");

    let both = Keyring::from_config(KeyringConfig {
        master_keys: Some(&format!("2:{KEY_B}")),
        legacy_key: Some(KEY_A),
        active_version: None,
    })
    .expect("valid");
    assert_eq!(both.versions().collect::<Vec<_>>(), vec![version(2)]);
}

#[test]
fn nothing_configured() {
    assert_config_error(
        KeyringConfig::default(),
        KeyringError::NotConfigured,
        "no master key configured: set BYOC_MASTER_KEYS (or the legacy CREDENTIAL_ENCRYPTION_KEY)",
    );
}

#[test]
fn empty_list() {
    for empty in ["", "  "] {
        assert_config_error(
            KeyringConfig {
                master_keys: Some(empty),
                ..KeyringConfig::default()
            },
            KeyringError::Empty {
                variable: "BYOC_MASTER_KEYS",
            },
            "BYOC_MASTER_KEYS: no keys given",
        );
    }
}

#[test]
fn wrong_length() {
    let short = format!("1:{KEY_A},2:{}", &KEY_B[..62]);
    assert_config_error(
        KeyringConfig {
            master_keys: Some(&short),
            ..KeyringConfig::default()
        },
        KeyringError::WrongKeyLength {
            variable: "BYOC_MASTER_KEYS",
            version: version(2),
            found: 62,
        },
        "BYOC_MASTER_KEYS: key for version 2 is not 64 hex digits (it has 62 characters)",
    );
    let long = format!("{KEY_A}00");
    assert_config_error(
        KeyringConfig {
            legacy_key: Some(&long),
            ..KeyringConfig::default()
        },
        KeyringError::WrongKeyLength {
            variable: "CREDENTIAL_ENCRYPTION_KEY",
            version: version(1),
            found: 66,
        },
        "CREDENTIAL_ENCRYPTION_KEY: key for version 1 is not 64 hex digits (it has 66 characters)",
    );
}

#[test]
fn non_hex() {
    let bad = format!("1:{}zz", &KEY_A[..62]);
    assert_config_error(
        KeyringConfig {
            master_keys: Some(&bad),
            ..KeyringConfig::default()
        },
        KeyringError::NotHex {
            variable: "BYOC_MASTER_KEYS",
            version: version(1),
        },
        "BYOC_MASTER_KEYS: key for version 1 is not 64 hex digits (it contains a non-hex character)",
    );
}

#[test]
fn duplicate_version() {
    let duplicate = format!("1:{KEY_A},2:{KEY_B},1:{KEY_B}");
    assert_config_error(
        KeyringConfig {
            master_keys: Some(&duplicate),
            ..KeyringConfig::default()
        },
        KeyringError::DuplicateVersion {
            variable: "BYOC_MASTER_KEYS",
            version: version(1),
        },
        "BYOC_MASTER_KEYS: version 1 is listed more than once",
    );
}

#[test]
fn unknown_active_version() {
    let keys = format!("1:{KEY_A},2:{KEY_B}");
    assert_config_error(
        KeyringConfig {
            master_keys: Some(&keys),
            active_version: Some("3"),
            legacy_key: None,
        },
        KeyringError::UnknownActiveVersion {
            variable: "BYOC_ACTIVE_KEY_VERSION",
            version: version(3),
        },
        "BYOC_ACTIVE_KEY_VERSION: version 3 is not one of the configured master key versions",
    );
    assert_config_error(
        KeyringConfig {
            legacy_key: Some(KEY_A),
            active_version: Some("2"),
            master_keys: None,
        },
        KeyringError::UnknownActiveVersion {
            variable: "BYOC_ACTIVE_KEY_VERSION",
            version: version(2),
        },
        "BYOC_ACTIVE_KEY_VERSION: version 2 is not one of the configured master key versions",
    );
}

#[test]
fn invalid_active_version() {
    let keys = format!("1:{KEY_A}");
    assert_config_error(
        KeyringConfig {
            master_keys: Some(&keys),
            active_version: Some("0"),
            legacy_key: None,
        },
        KeyringError::InvalidActiveVersion {
            variable: "BYOC_ACTIVE_KEY_VERSION",
            problem: KeyVersionError::Zero,
        },
        "BYOC_ACTIVE_KEY_VERSION: key version 0 is not valid; versions start at 1",
    );
    assert_config_error(
        KeyringConfig {
            master_keys: Some(&keys),
            active_version: Some("two"),
            legacy_key: None,
        },
        KeyringError::InvalidActiveVersion {
            variable: "BYOC_ACTIVE_KEY_VERSION",
            problem: KeyVersionError::NotANumber,
        },
        "BYOC_ACTIVE_KEY_VERSION: a key version is a whole number from 1 to 4294967295",
    );
}

#[test]
fn zero_version() {
    let zero = format!("0:{KEY_A}");
    assert_config_error(
        KeyringConfig {
            master_keys: Some(&zero),
            ..KeyringConfig::default()
        },
        KeyringError::InvalidVersion {
            variable: "BYOC_MASTER_KEYS",
            position: 1,
            problem: KeyVersionError::Zero,
        },
        "BYOC_MASTER_KEYS: entry 1 has an invalid version: key version 0 is not valid; versions start at 1",
    );
}

#[test]
fn malformed_entries() {
    // A key without a version, an empty entry (trailing comma), a non-numeric version.
    let cases = [
        (
            KEY_A.to_string(),
            KeyringError::MalformedEntry {
                variable: "BYOC_MASTER_KEYS",
                position: 1,
            },
            "BYOC_MASTER_KEYS: entry 1 is not of the form VERSION:HEX64",
        ),
        (
            format!("1:{KEY_A},"),
            KeyringError::MalformedEntry {
                variable: "BYOC_MASTER_KEYS",
                position: 2,
            },
            "BYOC_MASTER_KEYS: entry 2 is not of the form VERSION:HEX64",
        ),
        (
            format!("1:{KEY_A},v2:{KEY_B}"),
            KeyringError::InvalidVersion {
                variable: "BYOC_MASTER_KEYS",
                position: 2,
                problem: KeyVersionError::NotANumber,
            },
            "BYOC_MASTER_KEYS: entry 2 has an invalid version: \
             a key version is a whole number from 1 to 4294967295",
        ),
        (
            format!("{KEY_A}:1"),
            KeyringError::InvalidVersion {
                variable: "BYOC_MASTER_KEYS",
                position: 1,
                problem: KeyVersionError::NotANumber,
            },
            "BYOC_MASTER_KEYS: entry 1 has an invalid version: \
             a key version is a whole number from 1 to 4294967295",
        ),
    ];
    for (list, expected, message) in cases {
        assert_config_error(
            KeyringConfig {
                master_keys: Some(&list),
                ..KeyringConfig::default()
            },
            expected,
            message,
        );
    }
}
