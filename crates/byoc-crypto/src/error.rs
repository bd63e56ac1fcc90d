//! [`CryptoError`]: why an envelope could not be sealed, opened or rewrapped.

use crate::envelope::MIN_ENVELOPE_LEN;
use crate::key_version::KeyVersion;

/// Why an envelope could not be sealed, opened or rewrapped. Never contains key material or plaintext.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The bytes are shorter than the smallest possible envelope.
    #[error("envelope is truncated (an envelope has at least {MIN_ENVELOPE_LEN} bytes)")]
    Truncated,
    /// The first byte names an envelope format this build does not know.
    #[error("unsupported envelope format {0}")]
    UnsupportedFormat(u8),
    /// The header names key version 0, which no key ever has.
    #[error("envelope names key version 0, which is never valid")]
    ZeroKeyVersion,
    /// The keyring has no key for the envelope's version.
    #[error("unknown key version {0}")]
    UnknownKeyVersion(KeyVersion),
    /// Authentication failed: the context differs from the one the envelope was sealed with, a byte was
    /// changed, or the key for the version is not the key that sealed it. Deliberately one variant.
    #[error("envelope failed authentication (wrong context, wrong key, or modified bytes)")]
    Authentication,
    /// The payload is larger than AES-GCM can encrypt under one nonce (about 64 GiB).
    #[error("payload is too large to encrypt")]
    PayloadTooLarge,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    RandomUnavailable,
}
