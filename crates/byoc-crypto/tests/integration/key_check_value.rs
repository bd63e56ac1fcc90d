//! Key check values: stable per key, different across keys, parseable back.

use byoc_crypto::{KeyCheckValue, Keyring, KeyringConfig};

use crate::fixtures::{keyring, master_key, version};

#[test]
fn stable_for_the_same_key_and_different_for_different_keys() {
    let first = keyring(&[1, 2], 2);
    let again = keyring(&[1, 2], 2);
    let kcv1 = first
        .key_check_value(version(1))
        .expect("version 1 present");
    let kcv2 = first
        .key_check_value(version(2))
        .expect("version 2 present");
    assert_eq!(again.key_check_value(version(1)), Some(kcv1));
    assert_ne!(kcv1, kcv2);
    assert_eq!(first.key_check_value(version(3)), None);

    // A different key given for version 1 is detected.
    let swapped = Keyring::new(vec![(version(1), master_key(2))], version(1)).expect("valid");
    assert_ne!(swapped.key_check_value(version(1)), Some(kcv1));
    assert_eq!(swapped.key_check_value(version(1)), Some(kcv2));
}

#[test]
fn known_answer_pins_the_construction() {
    // HKDF-SHA256(salt "byoc-crypto/v1 master key derivation", ikm = 32 x 0x00,
    // info "byoc-crypto/v1 key check value", L = 32). Stored KCVs depend on this never changing.
    let keyring = Keyring::from_config(KeyringConfig {
        legacy_key: Some(&"00".repeat(32)),
        ..KeyringConfig::default()
    })
    .expect("valid");
    let kcv = keyring
        .key_check_value(version(1))
        .expect("version 1 present");
    assert_eq!(kcv.to_hex(), KNOWN_ZERO_KEY_KCV);
}

/// KCV of the all-zero key, computed independently with Python's `hmac` (HKDF extract + expand).
const KNOWN_ZERO_KEY_KCV: &str = "a63a03096cb66ef1015050c42ff3b9674ed1044c32aac61feb96714392c2c9db";

#[test]
fn round_trips_through_bytes_and_hex() {
    let kcv = keyring(&[1], 1)
        .key_check_value(version(1))
        .expect("present");
    assert_eq!(KeyCheckValue::from_bytes(kcv.as_bytes()), Ok(kcv));
    assert_eq!(kcv.to_hex().parse::<KeyCheckValue>(), Ok(kcv));
}
