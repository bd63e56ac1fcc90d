//! Versioned envelope encryption for byoc credentials (no I/O).
//!
//! A [`Keyring`] holds versioned 256-bit master keys (key-encryption keys) and names one active version.
//! [`Keyring::seal`] encrypts a credential under a fresh random data key and wraps that data key under the
//! active master key; both AES-256-GCM layers (ring) are bound to an [`EnvelopeContext`] (org id, credential
//! type, credential id), so an envelope opens only for the credential it was sealed for.
//! [`Keyring::rewrap`] moves an envelope to the active version without re-encrypting the payload, which is
//! how master keys are rotated. [`KeyCheckValue`]s let a service detect at start that it was given a
//! different key for a version than the one that wrote its data.
//!
//! # Configuration
//!
//! [`Keyring::from_config`] reads the contract's formats (the caller reads the environment):
//! `BYOC_MASTER_KEYS` is a comma list of `VERSION:HEX64`; `BYOC_ACTIVE_KEY_VERSION` picks the active
//! version (default: the highest); the legacy `CREDENTIAL_ENCRYPTION_KEY` (64 hex) is read as version 1
//! when `BYOC_MASTER_KEYS` is unset. Errors ([`KeyringError`]) name the variable and never echo key material.
//!
//! # Key derivation
//!
//! A master key is never used directly. From it, HKDF-SHA256 with salt `"byoc-crypto/v1 master key
//! derivation"` derives the key-encryption key (info `"byoc-crypto/v1 key-encryption key"`, 32 bytes) and
//! the key check value (info `"byoc-crypto/v1 key check value"`, 32 bytes). Distinct `info` labels make the
//! two independent, so the stored check value reveals nothing about the key that wraps data keys.
//!
//! # Envelope layout (format 1)
//!
//! | offset | length | field |
//! | --- | --- | --- |
//! | 0 | 1 | format version, `1` |
//! | 1 | 4 | key version, u32 big-endian, at least 1 |
//! | 5 | 12 | wrap nonce (random) |
//! | 17 | 48 | wrapped data key: AES-256-GCM(KEK of the key version, data key), 32 bytes + 16-byte tag |
//! | 65 | 12 | payload nonce (random) |
//! | 77 | n + 16 | payload: AES-256-GCM(data key, plaintext), n bytes + 16-byte tag |
//!
//! The smallest envelope (empty payload) is [`MIN_ENVELOPE_LEN`] = 93 bytes.
//!
//! Both layers take their associated data from one byte string,
//! `format byte ‖ org id (16) ‖ credential id (16) ‖ credential type length (u64 big-endian) ‖
//! credential type (UTF-8) ‖ key version (u32 big-endian)` (fixed-length fields first, the one
//! variable-length field length-prefixed, so the encoding is unambiguous):
//!
//! - the wrapping layer authenticates all of it, which binds the whole header (format and key version)
//!   and the context to the wrapped data key;
//! - the payload layer authenticates all but the trailing key version, so a rewrap can keep the payload
//!   as it is; the payload is still tied to its data key, which only the authenticated wrapping layer
//!   yields. The two layers use unrelated keys (derived key-encryption key, random data key), so sharing
//!   associated data between them allows no substitution from one layer into the other.
//!
//! So a changed context, a changed header, nonce, wrapped key or ciphertext bit, or a wrong key for the
//! version all fail as [`CryptoError::Authentication`]; an unknown format byte, a key version the keyring
//! lacks and a short input fail earlier with their own [`CryptoError`] variants.
//!
//! # Nonce limits and rotation (NIST SP 800-38D)
//!
//! With random 96-bit nonces, SP 800-38D §8.3 allows at most 2^32 invocations of the authenticated
//! encryption function per key, which keeps the chance of a nonce repeating below 2^-32.
//!
//! - A data key is fresh for every envelope and encrypts exactly one payload with one nonce, so it never
//!   comes near the limit.
//! - A master key (through its key-encryption key) only ever wraps data keys: one wrap per
//!   [`Keyring::seal`] and one per [`Keyring::rewrap`] that moves an envelope to it (a rewrap of an
//!   envelope already under the active version wraps nothing). Its invocation count is therefore the number
//!   of seals and rewraps performed while it was active, no matter how large the payloads are.
//! - Rotation keeps each version under the limit: add a new version, make it active (new wraps go to it,
//!   the old version's count stops growing), then rewrap the stored envelopes (`byoc keys rotate`). Rotate
//!   well before a version could have wrapped 2^32 data keys; even a million seals a day takes over eleven
//!   years to get there.
//!
//! # Secrets in memory
//!
//! [`MasterKey`], data keys and [`Plaintext`] are zeroed on drop and print no bytes in `Debug`. The
//! keyring keeps only the derived keys (in ring's key types, which ring does not zero) and drops the master
//! keys once they are derived.

mod envelope;
mod error;
mod key_check_value;
mod key_version;
mod keyring;
mod master_key;
mod plaintext;

pub use envelope::{envelope_key_version, Envelope, EnvelopeContext, FORMAT_V1, MIN_ENVELOPE_LEN};
pub use error::CryptoError;
pub use key_check_value::{InvalidKeyCheckValue, KeyCheckValue, KEY_CHECK_VALUE_LEN};
pub use key_version::{KeyVersion, KeyVersionError};
pub use keyring::{
    Keyring, KeyringConfig, KeyringError, ACTIVE_KEY_VERSION_VAR, HELD_KEYS_SOURCE, LEGACY_KEY_VAR,
    MASTER_KEYS_VAR,
};
pub use master_key::{MasterKey, MasterKeyHexError, MASTER_KEY_HEX_LEN, MASTER_KEY_LEN};
pub use plaintext::Plaintext;
