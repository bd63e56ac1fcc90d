//! Sealing and opening: round trips, tampering, context binding, truncation, arbitrary input.

use byoc_crypto::{
    envelope_key_version, CryptoError, Envelope, EnvelopeContext, FORMAT_V1, MIN_ENVELOPE_LEN,
};
use proptest::prelude::*;
use uuid::Uuid;

use crate::fixtures::{context, keyring, version};

proptest! {
    #[test]
    fn round_trip_for_any_payload_and_context(
        payload in proptest::collection::vec(any::<u8>(), 0..2048),
        org in any::<u128>(),
        credential_type in ".{0,40}",
        credential in any::<u128>(),
    ) {
        let keyring = keyring(&[1, 2], 2);
        let context = EnvelopeContext::new(
            Uuid::from_u128(org),
            &credential_type,
            Uuid::from_u128(credential),
        );
        let envelope = keyring.seal(&payload, &context).expect("seal");
        prop_assert_eq!(envelope.as_bytes().len(), MIN_ENVELOPE_LEN + payload.len());
        prop_assert_eq!(envelope.key_version(), version(2));
        let opened = keyring.open(envelope.as_bytes(), &context).expect("open");
        prop_assert_eq!(opened.expose_secret(), payload.as_slice());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_open(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let keyring = keyring(&[1, 2], 2);
        prop_assert!(keyring.open(&bytes, &context()).is_err());
        prop_assert!(keyring.rewrap(&bytes, &context()).is_err());
        let _ = envelope_key_version(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_fail_authentication(
        tail in proptest::collection::vec(any::<u8>(), MIN_ENVELOPE_LEN - 5..300),
    ) {
        let keyring = keyring(&[1, 2], 2);
        let mut bytes = vec![FORMAT_V1, 0, 0, 0, 2];
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(envelope_key_version(&bytes), Ok(version(2)));
        prop_assert_eq!(
            keyring.open(&bytes, &context()).map(|_| ()),
            Err(CryptoError::Authentication)
        );
    }
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let keyring = keyring(&[1, 2], 2);
    let envelope = keyring.seal(b"token-1234", &context()).expect("seal");
    let bytes = envelope.as_bytes();
    let mut flips = 0;
    for index in 0..bytes.len() {
        for bit in 0..8 {
            let mut tampered = bytes.to_vec();
            tampered[index] ^= 1 << bit;
            let opened = keyring.open(&tampered, &context());
            match index {
                0 => assert_eq!(
                    opened.map(|_| ()),
                    Err(CryptoError::UnsupportedFormat(tampered[0]))
                ),
                _ => assert!(
                    matches!(
                        opened,
                        Err(CryptoError::Authentication
                            | CryptoError::UnknownKeyVersion(_)
                            | CryptoError::ZeroKeyVersion)
                    ),
                    "flip of bit {bit} in byte {index} gave {opened:?}"
                ),
            }
            assert!(keyring.rewrap(&tampered, &context()).is_err());
            flips += 1;
        }
    }
    assert_eq!(flips, 8 * (MIN_ENVELOPE_LEN + b"token-1234".len()));
}

#[test]
fn flipping_the_key_version_to_another_known_version_fails_authentication() {
    let keyring = keyring(&[1, 3], 1);
    let mut bytes = keyring
        .seal(b"secret", &context())
        .expect("seal")
        .into_bytes();
    bytes[4] ^= 0b10; // version 1 -> 3, which the keyring has
    assert_eq!(envelope_key_version(&bytes), Ok(version(3)));
    assert_eq!(
        keyring.open(&bytes, &context()).map(|_| ()),
        Err(CryptoError::Authentication)
    );
}

#[test]
fn each_context_field_is_bound() {
    let keyring = keyring(&[1], 1);
    let sealed_for = context();
    let envelope = keyring.seal(b"secret", &sealed_for).expect("seal");
    let other_uuid = Uuid::from_u128(42);
    let swapped = [
        EnvelopeContext {
            org_id: other_uuid,
            ..sealed_for
        },
        EnvelopeContext {
            credential_type: "google",
            ..sealed_for
        },
        EnvelopeContext {
            credential_id: other_uuid,
            ..sealed_for
        },
        // The two ids exchanged: same bytes, different fields.
        EnvelopeContext {
            org_id: sealed_for.credential_id,
            credential_id: sealed_for.org_id,
            ..sealed_for
        },
    ];
    for context in swapped {
        assert_eq!(
            keyring.open(envelope.as_bytes(), &context).map(|_| ()),
            Err(CryptoError::Authentication),
            "{context:?}"
        );
        assert_eq!(
            keyring.rewrap(envelope.as_bytes(), &context).map(|_| ()),
            Err(CryptoError::Authentication),
            "{context:?}"
        );
    }
}

#[test]
fn truncation_at_every_length_is_rejected() {
    let keyring = keyring(&[1], 1);
    let envelope = keyring.seal(b"0123456789abcdef", &context()).expect("seal");
    let bytes = envelope.as_bytes();
    for length in 0..bytes.len() {
        let truncated = &bytes[..length];
        let expected = if length < MIN_ENVELOPE_LEN {
            CryptoError::Truncated
        } else {
            CryptoError::Authentication
        };
        assert_eq!(
            keyring.open(truncated, &context()).map(|_| ()),
            Err(expected),
            "length {length}"
        );
        assert_eq!(
            keyring.rewrap(truncated, &context()).map(|_| ()),
            Err(expected),
            "length {length}"
        );
    }
}

#[test]
fn empty_payload_round_trips() {
    let keyring = keyring(&[1], 1);
    let envelope = keyring.seal(b"", &context()).expect("seal");
    assert_eq!(envelope.as_bytes().len(), MIN_ENVELOPE_LEN);
    let opened = keyring.open(envelope.as_bytes(), &context()).expect("open");
    assert!(opened.expose_secret().is_empty());
}

#[test]
fn sealing_twice_gives_different_envelopes() {
    let keyring = keyring(&[1], 1);
    let first = keyring.seal(b"same", &context()).expect("seal");
    let second = keyring.seal(b"same", &context()).expect("seal");
    assert_ne!(first.as_bytes(), second.as_bytes());
    // Fresh wrap nonce, wrapped key, payload nonce and ciphertext.
    assert_ne!(first.as_bytes()[5..], second.as_bytes()[5..]);
}

#[test]
fn header_is_readable_without_decrypting() {
    let keyring = keyring(&[1, 7], 7);
    let envelope = keyring.seal(b"secret", &context()).expect("seal");
    assert_eq!(envelope_key_version(envelope.as_bytes()), Ok(version(7)));
    assert_eq!(envelope.as_bytes()[..5], [FORMAT_V1, 0, 0, 0, 7]);
    let reparsed = Envelope::try_from(envelope.as_bytes().to_vec()).expect("well-formed");
    assert_eq!(reparsed, envelope);
    assert_eq!(reparsed.key_version(), version(7));
}

#[test]
fn malformed_headers_get_their_own_errors() {
    let mut bytes = vec![FORMAT_V1, 0, 0, 0, 0];
    bytes.resize(MIN_ENVELOPE_LEN, 0);
    assert_eq!(
        envelope_key_version(&bytes),
        Err(CryptoError::ZeroKeyVersion)
    );
    assert_eq!(
        Envelope::try_from(bytes).map(|_| ()),
        Err(CryptoError::ZeroKeyVersion)
    );
    assert_eq!(envelope_key_version(&[]), Err(CryptoError::Truncated));
    assert_eq!(
        envelope_key_version(&[2; MIN_ENVELOPE_LEN]),
        Err(CryptoError::UnsupportedFormat(2))
    );
}

#[test]
fn errors_and_debug_output_contain_no_secrets() {
    let keyring = keyring(&[1], 1);
    let envelope = keyring.seal(b"hunter2-secret", &context()).expect("seal");
    let opened = keyring.open(envelope.as_bytes(), &context()).expect("open");
    assert_eq!(format!("{opened:?}"), "Plaintext");
    assert_eq!(
        format!("{envelope:?}"),
        format!(
            "Envelope {{ key_version: KeyVersion(1), len: {} }}",
            MIN_ENVELOPE_LEN + 14
        )
    );
    assert_eq!(
        CryptoError::UnknownKeyVersion(version(3)).to_string(),
        "unknown key version 3"
    );
}
