//! [`KeyVersion`]: the version number of a master key.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

/// The version number of a master key: a whole number from 1 to `u32::MAX`.
///
/// A `KeyVersion` is valid once built; 0 is never a key version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyVersion(NonZeroU32);

/// Why a number or a string is not a [`KeyVersion`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyVersionError {
    /// The value was 0; key versions start at 1.
    #[error("key version 0 is not valid; versions start at 1")]
    Zero,
    /// The text was not a whole number from 1 to 4294967295.
    #[error("a key version is a whole number from 1 to 4294967295")]
    NotANumber,
}

impl KeyVersion {
    /// Version 1, the version the legacy single key (`CREDENTIAL_ENCRYPTION_KEY`) is read as.
    pub const FIRST: KeyVersion = KeyVersion(NonZeroU32::MIN);

    /// Builds a key version from a number, rejecting 0.
    pub fn new(version: u32) -> Result<KeyVersion, KeyVersionError> {
        NonZeroU32::new(version)
            .map(KeyVersion)
            .ok_or(KeyVersionError::Zero)
    }

    /// The version number (at least 1).
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl TryFrom<u32> for KeyVersion {
    type Error = KeyVersionError;

    fn try_from(version: u32) -> Result<KeyVersion, KeyVersionError> {
        KeyVersion::new(version)
    }
}

impl From<KeyVersion> for u32 {
    fn from(version: KeyVersion) -> u32 {
        version.get()
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for KeyVersion {
    type Err = KeyVersionError;

    /// Parses decimal digits (surrounding whitespace is ignored).
    fn from_str(text: &str) -> Result<KeyVersion, KeyVersionError> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(KeyVersionError::NotANumber);
        }
        let number: u32 = text.parse().map_err(|_| KeyVersionError::NotANumber)?;
        KeyVersion::new(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positive_numbers() {
        assert_eq!("1".parse::<KeyVersion>().map(KeyVersion::get), Ok(1));
        assert_eq!(" 42 ".parse::<KeyVersion>().map(KeyVersion::get), Ok(42));
        assert_eq!(
            "4294967295".parse::<KeyVersion>().map(KeyVersion::get),
            Ok(u32::MAX)
        );
    }

    #[test]
    fn rejects_zero_and_non_numbers() {
        assert_eq!("0".parse::<KeyVersion>(), Err(KeyVersionError::Zero));
        assert_eq!(KeyVersion::new(0), Err(KeyVersionError::Zero));
        for text in ["", " ", "-1", "+1", "1.0", "v1", "4294967296", "0x1"] {
            assert_eq!(
                text.parse::<KeyVersion>(),
                Err(KeyVersionError::NotANumber),
                "{text:?}"
            );
        }
    }

    #[test]
    fn displays_as_the_number() {
        let version = KeyVersion::new(7).expect("7 is a valid version");
        assert_eq!(version.to_string(), "7");
        assert_eq!(u32::from(version), 7);
        assert_eq!(KeyVersion::FIRST.get(), 1);
    }
}
