//! Arbitrary bytes through envelope parsing, open and rewrap with a fixed keyring and context (must
//! never panic and never open), plus open(seal(data)) and open(rewrap(seal(data))) round trips.

#![no_main]

use std::sync::LazyLock;

use byoc_crypto::{envelope_key_version, EnvelopeContext, KeyVersion, Keyring, MasterKey};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// Versions 1 and 2; version 2 is active.
static KEYRING: LazyLock<Keyring> = LazyLock::new(|| keyring(2));
/// The same keys with version 1 active, to seal envelopes that a rewrap moves to version 2.
static OLD_KEYRING: LazyLock<Keyring> = LazyLock::new(|| keyring(1));

fn keyring(active: u32) -> Keyring {
    let version = |number| KeyVersion::new(number).expect("non-zero");
    Keyring::new(
        vec![
            (version(1), MasterKey::from_bytes([0x11; 32])),
            (version(2), MasterKey::from_bytes([0x22; 32])),
        ],
        version(active),
    )
    .expect("valid keyring")
}

fn context() -> EnvelopeContext<'static> {
    EnvelopeContext::new(Uuid::from_u128(1), "twilio", Uuid::from_u128(2))
}

fuzz_target!(|data: &[u8]| {
    let context = context();

    // Arbitrary bytes: parsing may fail or succeed, opening must fail (forging GCM is infeasible).
    let _ = envelope_key_version(data);
    assert!(KEYRING.open(data, &context).is_err());
    assert!(KEYRING.rewrap(data, &context).is_err());

    // Round trips of the same bytes as a payload.
    let sealed = OLD_KEYRING.seal(data, &context).expect("seal");
    let opened = KEYRING.open(sealed.as_bytes(), &context).expect("open");
    assert_eq!(opened.expose_secret(), data);
    let rewrapped = KEYRING.rewrap(sealed.as_bytes(), &context).expect("rewrap");
    assert_eq!(
        envelope_key_version(rewrapped.as_bytes()).map(KeyVersion::get),
        Ok(2)
    );
    let reopened = KEYRING
        .open(rewrapped.as_bytes(), &context)
        .expect("open rewrapped");
    assert_eq!(reopened.expose_secret(), data);

    // The input steers one bit flip in the sealed envelope, which must be rejected.
    if let Some((&selector, _)) = data.split_first() {
        let mut tampered = sealed.into_bytes();
        let bit = usize::from(selector) * 7 % (tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        assert!(KEYRING.open(&tampered, &context).is_err());
    }
});
