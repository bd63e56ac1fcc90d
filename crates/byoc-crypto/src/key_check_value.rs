//! [`KeyCheckValue`]: a public fingerprint of a master key.

use std::fmt;
use std::str::FromStr;

use ring::hkdf;

/// Length of a key check value in bytes.
pub const KEY_CHECK_VALUE_LEN: usize = 32;

/// A key check value (KCV): a fingerprint of one master key that can be stored next to the data the key
/// protects and compared at start-up, so a service notices when it is given a different key for a version
/// than the one that wrote the data.
///
/// Construction (stable across processes and releases of this format):
/// `HKDF-SHA256(salt = "byoc-crypto/v1 master key derivation", ikm = master key,
/// info = "byoc-crypto/v1 key check value", length = 32)`.
/// The key-encryption key is expanded from the same pseudorandom key with a different `info`, so the KCV
/// is independent of it; being a PRF output, it reveals nothing usable about the master key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyCheckValue([u8; KEY_CHECK_VALUE_LEN]);

/// Why bytes or text are not a key check value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a key check value is {KEY_CHECK_VALUE_LEN} bytes ({} hex digits)", 2 * KEY_CHECK_VALUE_LEN)]
pub struct InvalidKeyCheckValue;

/// The HKDF output length of a key check value.
struct KeyCheckValueLen;

impl hkdf::KeyType for KeyCheckValueLen {
    fn len(&self) -> usize {
        KEY_CHECK_VALUE_LEN
    }
}

impl KeyCheckValue {
    /// Expands the key check value from a master key's HKDF pseudorandom key.
    pub(crate) fn derive(prk: &hkdf::Prk, info: &[u8]) -> KeyCheckValue {
        let mut value = [0u8; KEY_CHECK_VALUE_LEN];
        prk.expand(&[info], KeyCheckValueLen)
            .and_then(|okm| okm.fill(&mut value))
            .expect("32 bytes is within HKDF-SHA256's output limit");
        KeyCheckValue(value)
    }

    /// Rebuilds a key check value from the bytes [`KeyCheckValue::as_bytes`] returned.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyCheckValue, InvalidKeyCheckValue> {
        <[u8; KEY_CHECK_VALUE_LEN]>::try_from(bytes)
            .map(KeyCheckValue)
            .map_err(|_| InvalidKeyCheckValue)
    }

    /// The raw bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; KEY_CHECK_VALUE_LEN] {
        &self.0
    }

    /// The value as lower-case hex digits (the same text as `Display`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for KeyCheckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for KeyCheckValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyCheckValue({self})")
    }
}

impl FromStr for KeyCheckValue {
    type Err = InvalidKeyCheckValue;

    /// Parses the hex form written by `Display` / [`KeyCheckValue::to_hex`] (either case).
    fn from_str(text: &str) -> Result<KeyCheckValue, InvalidKeyCheckValue> {
        let mut value = [0u8; KEY_CHECK_VALUE_LEN];
        hex::decode_to_slice(text.trim(), &mut value).map_err(|_| InvalidKeyCheckValue)?;
        Ok(KeyCheckValue(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyCheckValue {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"salt").extract(b"input key material");
        KeyCheckValue::derive(&prk, b"info")
    }

    #[test]
    fn bytes_and_hex_round_trip() {
        let value = sample();
        assert_eq!(KeyCheckValue::from_bytes(value.as_bytes()), Ok(value));
        assert_eq!(value.to_hex().parse::<KeyCheckValue>(), Ok(value));
        assert_eq!(value.to_string(), value.to_hex());
        assert_eq!(format!("{value:?}"), format!("KeyCheckValue({value})"));
    }

    #[test]
    fn rejects_wrong_lengths_and_non_hex() {
        assert_eq!(
            KeyCheckValue::from_bytes(&[0; 31]),
            Err(InvalidKeyCheckValue)
        );
        assert_eq!(
            KeyCheckValue::from_bytes(&[0; 33]),
            Err(InvalidKeyCheckValue)
        );
        assert_eq!("abcd".parse::<KeyCheckValue>(), Err(InvalidKeyCheckValue));
        assert_eq!(
            "zz".repeat(KEY_CHECK_VALUE_LEN).parse::<KeyCheckValue>(),
            Err(InvalidKeyCheckValue)
        );
    }

    #[test]
    fn info_separates_outputs() {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"salt").extract(b"input key material");
        assert_ne!(
            KeyCheckValue::derive(&prk, b"one"),
            KeyCheckValue::derive(&prk, b"two")
        );
    }
}
