//! [`MasterKey`]: one 256-bit key-encryption key.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretString};

use crate::key_check_value::KeyCheckValue;

/// Length of a master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// Length of a master key written as hex digits.
pub const MASTER_KEY_HEX_LEN: usize = 2 * MASTER_KEY_LEN;

/// A 256-bit master key (key-encryption key).
///
/// The bytes live on the heap in a [`SecretBox`], so moving a `MasterKey` never copies them, and they are
/// zeroed when it is dropped. `Debug` prints only the type name.
pub struct MasterKey(SecretBox<[u8; MASTER_KEY_LEN]>);

/// Why a string is not a master key. Never contains any part of the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyHexError {
    /// The text does not have exactly 64 characters.
    #[error("a master key is 64 hex digits, found {found} characters")]
    WrongLength {
        /// How many characters the text had.
        found: usize,
    },
    /// The text has 64 characters but at least one is not a hex digit.
    #[error("a master key is 64 hex digits, found a character that is not a hex digit")]
    NotHex,
}

impl MasterKey {
    /// Generates a fresh key from the operating system's random number generator (ring's `SystemRandom`).
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes (on Linux: `getrandom` is unavailable),
    /// since no safe key can be made then.
    pub fn generate() -> MasterKey {
        let mut key = SecretBox::new(Box::new([0u8; MASTER_KEY_LEN]));
        SystemRandom::new()
            .fill(key.expose_secret_mut())
            .expect("the operating system's random number generator failed");
        MasterKey(key)
    }

    /// Builds a key from its raw bytes.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> MasterKey {
        let bytes = zeroize::Zeroizing::new(bytes);
        MasterKey(SecretBox::init_with_mut(
            |key: &mut [u8; MASTER_KEY_LEN]| key.copy_from_slice(&bytes[..]),
        ))
    }

    /// Parses 64 hex digits (either case; surrounding whitespace is ignored).
    pub fn from_hex(text: &str) -> Result<MasterKey, MasterKeyHexError> {
        let text = text.trim();
        if text.len() != MASTER_KEY_HEX_LEN {
            return Err(MasterKeyHexError::WrongLength {
                found: text.chars().count(),
            });
        }
        let mut key = SecretBox::new(Box::new([0u8; MASTER_KEY_LEN]));
        hex::decode_to_slice(text, key.expose_secret_mut())
            .map_err(|_| MasterKeyHexError::NotHex)?;
        Ok(MasterKey(key))
    }

    /// The key as 64 lower-case hex digits, for `byoc keys generate`.
    pub fn to_hex(&self) -> SecretString {
        // Written by hand into a buffer of exactly the final size, so that no intermediate or reallocated
        // copy of the key's hex form is left behind in freed memory (SecretString zeroes only its own buffer).
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(MASTER_KEY_HEX_LEN);
        for byte in self.0.expose_secret() {
            text.push(char::from(DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        SecretString::from(text)
    }

    /// The raw key bytes, for deriving the key-encryption key and the key check value.
    pub(crate) fn expose_bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        self.0.expose_secret()
    }

    /// The raw key bytes, only to hand the key to a key management service that encrypts it (a KMS-held
    /// master key is stored as the KMS's ciphertext). Never log, print or store what this returns.
    pub fn expose_for_wrapping(&self) -> &[u8; MASTER_KEY_LEN] {
        self.0.expose_secret()
    }

    /// This key's [`KeyCheckValue`]: the fingerprint a [`Keyring`](crate::Keyring) holds for it, to store next
    /// to a wrapped key and compare after unwrapping.
    pub fn key_check_value(&self) -> KeyCheckValue {
        crate::keyring::key_check_value_of(self)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let key = MasterKey::generate();
        let hex_text = key.to_hex();
        assert_eq!(hex_text.expose_secret().len(), MASTER_KEY_HEX_LEN);
        let parsed = MasterKey::from_hex(hex_text.expose_secret()).expect("own hex parses");
        assert_eq!(parsed.expose_bytes(), key.expose_bytes());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(
            MasterKey::generate().expose_bytes(),
            MasterKey::generate().expose_bytes()
        );
    }

    #[test]
    fn accepts_upper_case_and_surrounding_whitespace() {
        let text = format!(" {} \n", "AB".repeat(MASTER_KEY_LEN));
        let key = MasterKey::from_hex(&text).expect("upper-case hex parses");
        assert_eq!(key.expose_bytes(), &[0xab; MASTER_KEY_LEN]);
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert_eq!(
            MasterKey::from_hex("abcd").map(|_| ()),
            Err(MasterKeyHexError::WrongLength { found: 4 })
        );
        assert_eq!(
            MasterKey::from_hex(&"g".repeat(MASTER_KEY_HEX_LEN)).map(|_| ()),
            Err(MasterKeyHexError::NotHex)
        );
        // 66 bytes but 33 characters: the length is reported in characters.
        assert_eq!(
            MasterKey::from_hex(&"é".repeat(33)).map(|_| ()),
            Err(MasterKeyHexError::WrongLength { found: 33 })
        );
        // 64 bytes of non-ASCII text is not hex.
        assert_eq!(
            MasterKey::from_hex(&"é".repeat(32)).map(|_| ()),
            Err(MasterKeyHexError::NotHex)
        );
    }

    #[test]
    fn debug_shows_no_bytes() {
        let key = MasterKey::from_bytes([0x5a; MASTER_KEY_LEN]);
        assert_eq!(format!("{key:?}"), "MasterKey");
    }
}
