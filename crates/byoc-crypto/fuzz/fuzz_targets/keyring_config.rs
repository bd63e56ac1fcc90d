//! Arbitrary text as BYOC_MASTER_KEYS / BYOC_ACTIVE_KEY_VERSION / CREDENTIAL_ENCRYPTION_KEY: building a
//! keyring must never panic, and an error message must never contain a 64-hex-digit key it was given.

#![no_main]

use byoc_crypto::{Keyring, KeyringConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Fields separated by newlines; a missing field is an unset variable.
    let mut fields = text.split('\n');
    let config = KeyringConfig {
        master_keys: fields.next(),
        active_version: fields.next(),
        legacy_key: fields.next(),
    };
    if let Err(error) = Keyring::from_config(config) {
        let message = error.to_string();
        let hex_run = message
            .as_bytes()
            .split(|byte| !byte.is_ascii_hexdigit())
            .map(<[u8]>::len)
            .max()
            .unwrap_or(0);
        assert!(hex_run < 64, "error message carries a key: {message}");
    }
});
