//! Key rotation: rewrap, old versions, removed versions.

use byoc_crypto::{envelope_key_version, CryptoError, MIN_ENVELOPE_LEN};
use proptest::prelude::*;

use crate::fixtures::{context, keyring, version};

proptest! {
    #[test]
    fn rewrap_keeps_the_plaintext_and_moves_to_the_active_version(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let before = keyring(&[1], 1);
        let after = keyring(&[1, 2], 2);
        let envelope = before.seal(&payload, &context()).expect("seal");
        let rewrapped = after.rewrap(envelope.as_bytes(), &context()).expect("rewrap");
        prop_assert_eq!(rewrapped.key_version(), version(2));
        prop_assert_eq!(envelope_key_version(rewrapped.as_bytes()), Ok(version(2)));
        // Payload nonce and ciphertext are untouched; header, wrap nonce and wrapped key are new.
        let payload_start = MIN_ENVELOPE_LEN - 16 - 12;
        prop_assert_eq!(
            &rewrapped.as_bytes()[payload_start..],
            &envelope.as_bytes()[payload_start..]
        );
        prop_assert_ne!(&rewrapped.as_bytes()[..payload_start], &envelope.as_bytes()[..payload_start]);
        let opened = after.open(rewrapped.as_bytes(), &context()).expect("open");
        prop_assert_eq!(opened.expose_secret(), payload.as_slice());
    }
}

#[test]
fn old_versions_still_open_after_the_active_version_moves() {
    let payload = b"auth-token";
    let v1_envelope = keyring(&[1], 1).seal(payload, &context()).expect("seal v1");
    let v2_envelope = keyring(&[1, 2], 2)
        .seal(payload, &context())
        .expect("seal v2");
    let later = keyring(&[1, 2, 3], 3);
    for envelope in [&v1_envelope, &v2_envelope] {
        let opened = later
            .open(envelope.as_bytes(), &context())
            .expect("old version opens");
        assert_eq!(opened.expose_secret(), payload);
    }
    assert_eq!(
        later.seal(payload, &context()).expect("seal").key_version(),
        version(3)
    );
}

#[test]
fn a_removed_version_gives_unknown_key_version() {
    let envelope = keyring(&[1, 2], 1)
        .seal(b"secret", &context())
        .expect("seal");
    let without_v1 = keyring(&[2], 2);
    let error = without_v1
        .open(envelope.as_bytes(), &context())
        .map(|_| ())
        .expect_err("version 1 is gone");
    assert_eq!(error, CryptoError::UnknownKeyVersion(version(1)));
    assert_eq!(error.to_string(), "unknown key version 1");
    assert_eq!(
        without_v1
            .rewrap(envelope.as_bytes(), &context())
            .map(|_| ()),
        Err(CryptoError::UnknownKeyVersion(version(1)))
    );
}

#[test]
fn rewrap_under_the_active_version_returns_the_envelope_unchanged() {
    let keyring = keyring(&[1, 2], 2);
    let envelope = keyring.seal(b"secret", &context()).expect("seal");
    let rewrapped = keyring
        .rewrap(envelope.as_bytes(), &context())
        .expect("rewrap");
    assert_eq!(rewrapped, envelope);
}

#[test]
fn rewrap_rejects_a_damaged_payload() {
    let before = keyring(&[1], 1);
    let after = keyring(&[1, 2], 2);
    let mut bytes = before
        .seal(b"secret", &context())
        .expect("seal")
        .into_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(
        after.rewrap(&bytes, &context()).map(|_| ()),
        Err(CryptoError::Authentication)
    );
}

#[test]
fn a_different_key_under_the_same_version_fails_authentication() {
    let envelope = keyring(&[1], 1).seal(b"secret", &context()).expect("seal");
    // Version 2's fixed key registered as version 1.
    let impostor = byoc_crypto::Keyring::new(
        vec![(version(1), crate::fixtures::master_key(2))],
        version(1),
    )
    .expect("valid keyring");
    assert_eq!(
        impostor.open(envelope.as_bytes(), &context()).map(|_| ()),
        Err(CryptoError::Authentication)
    );
}
