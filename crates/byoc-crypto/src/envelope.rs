//! Sealing, opening and rewrapping envelopes (layout in the crate documentation).

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::key_version::KeyVersion;
use crate::keyring::Keyring;
use crate::plaintext::Plaintext;

/// The envelope format this build writes (the first byte of every envelope).
pub const FORMAT_V1: u8 = 1;

/// Length of a data key (AES-256).
const DATA_KEY_LEN: usize = 32;
/// Length of an AES-GCM tag.
const TAG_LEN: usize = 16;
/// Format byte and big-endian key version.
const HEADER_LEN: usize = 1 + 4;
/// A data key encrypted under a key-encryption key, with its tag.
const WRAPPED_KEY_LEN: usize = DATA_KEY_LEN + TAG_LEN;
/// Offset of the payload ciphertext.
const CIPHERTEXT_OFFSET: usize = HEADER_LEN + NONCE_LEN + WRAPPED_KEY_LEN + NONCE_LEN;

/// Length of the smallest envelope (empty payload): 93 bytes.
pub const MIN_ENVELOPE_LEN: usize = CIPHERTEXT_OFFSET + TAG_LEN;

/// Label at the start of the wrapping layer's associated data.
const WRAP_AAD_LABEL: &[u8] = b"byoc-crypto/v1 wrapped data key";
/// Label at the start of the payload layer's associated data.
const PAYLOAD_AAD_LABEL: &[u8] = b"byoc-crypto/v1 payload";

/// What an envelope is bound to: it opens only with exactly the context it was sealed with.
///
/// Serialised as associated data of both AEAD layers, each field prefixed by its length
/// (u64 big-endian): org id (16 bytes), credential type (UTF-8), credential id (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnvelopeContext<'a> {
    /// The organization that owns the credential.
    pub org_id: Uuid,
    /// The credential type, e.g. `twilio`.
    pub credential_type: &'a str,
    /// The credential's id.
    pub credential_id: Uuid,
}

impl<'a> EnvelopeContext<'a> {
    /// Builds a context.
    pub fn new(org_id: Uuid, credential_type: &'a str, credential_id: Uuid) -> EnvelopeContext<'a> {
        EnvelopeContext {
            org_id,
            credential_type,
            credential_id,
        }
    }

    /// Appends the length-prefixed encoding of the three fields.
    fn encode_into(&self, out: &mut Vec<u8>) {
        for field in [
            self.org_id.as_bytes().as_slice(),
            self.credential_type.as_bytes(),
            self.credential_id.as_bytes().as_slice(),
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
    }

    /// Associated data of the wrapping layer: label, envelope header (format and key version), context.
    fn wrap_aad(&self, header: &[u8; HEADER_LEN]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + HEADER_LEN + self.encoded_len());
        aad.extend_from_slice(WRAP_AAD_LABEL);
        aad.extend_from_slice(header);
        self.encode_into(&mut aad);
        aad
    }

    /// Associated data of the payload layer: label, format byte, context. The key version is left out so
    /// that a rewrap does not have to touch the payload.
    fn payload_aad(&self, format: u8) -> Vec<u8> {
        let mut aad = Vec::with_capacity(PAYLOAD_AAD_LABEL.len() + 1 + self.encoded_len());
        aad.extend_from_slice(PAYLOAD_AAD_LABEL);
        aad.push(format);
        self.encode_into(&mut aad);
        aad
    }

    fn encoded_len(&self) -> usize {
        3 * 8 + 16 + self.credential_type.len() + 16
    }
}

/// A sealed credential: one self-describing byte string (layout in the crate documentation).
///
/// Holds only ciphertext, but `Debug` still prints just the key version and length.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    bytes: Vec<u8>,
    key_version: KeyVersion,
}

impl Envelope {
    /// The envelope bytes, for storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The envelope bytes, for storage.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The version of the master key that wraps this envelope's data key.
    pub fn key_version(&self) -> KeyVersion {
        self.key_version
    }
}

impl TryFrom<Vec<u8>> for Envelope {
    type Error = CryptoError;

    /// Checks the structure (format, length, key version) without decrypting.
    fn try_from(bytes: Vec<u8>) -> Result<Envelope, CryptoError> {
        let key_version = envelope_key_version(&bytes)?;
        Ok(Envelope { bytes, key_version })
    }
}

impl AsRef<[u8]> for Envelope {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("key_version", &self.key_version)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Reads the key version from an envelope's header without decrypting it (key rotation uses this to find
/// envelopes that still need a rewrap). Fails exactly as `open` does on a malformed header.
pub fn envelope_key_version(bytes: &[u8]) -> Result<KeyVersion, CryptoError> {
    ParsedEnvelope::parse(bytes).map(|parsed| parsed.key_version)
}

/// An envelope split into its fields (structure checked, nothing decrypted).
struct ParsedEnvelope<'a> {
    header: &'a [u8; HEADER_LEN],
    format: u8,
    key_version: KeyVersion,
    wrap_nonce: &'a [u8; NONCE_LEN],
    wrapped_key: &'a [u8; WRAPPED_KEY_LEN],
    payload_nonce: &'a [u8; NONCE_LEN],
    /// Ciphertext with its tag (at least `TAG_LEN` bytes).
    ciphertext: &'a [u8],
}

impl<'a> ParsedEnvelope<'a> {
    fn parse(bytes: &'a [u8]) -> Result<ParsedEnvelope<'a>, CryptoError> {
        let (&format, _) = bytes.split_first().ok_or(CryptoError::Truncated)?;
        if format != FORMAT_V1 {
            return Err(CryptoError::UnsupportedFormat(format));
        }
        if bytes.len() < MIN_ENVELOPE_LEN {
            return Err(CryptoError::Truncated);
        }
        let (header, rest) = split::<HEADER_LEN>(bytes)?;
        let (wrap_nonce, rest) = split::<NONCE_LEN>(rest)?;
        let (wrapped_key, rest) = split::<WRAPPED_KEY_LEN>(rest)?;
        let (payload_nonce, ciphertext) = split::<NONCE_LEN>(rest)?;
        let [_, version @ ..] = *header;
        let key_version = KeyVersion::new(u32::from_be_bytes(version))
            .map_err(|_| CryptoError::ZeroKeyVersion)?;
        Ok(ParsedEnvelope {
            header,
            format,
            key_version,
            wrap_nonce,
            wrapped_key,
            payload_nonce,
            ciphertext,
        })
    }
}

/// Splits a fixed-size field off the front.
fn split<const N: usize>(bytes: &[u8]) -> Result<(&[u8; N], &[u8]), CryptoError> {
    bytes.split_first_chunk::<N>().ok_or(CryptoError::Truncated)
}

/// The header of an envelope written by this build under `version`.
fn header_for(version: KeyVersion) -> [u8; HEADER_LEN] {
    let [a, b, c, d] = version.get().to_be_bytes();
    [FORMAT_V1, a, b, c, d]
}

/// A fresh random 96-bit nonce.
fn random_nonce(rng: &SystemRandom) -> Result<[u8; NONCE_LEN], CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)
        .map_err(|_| CryptoError::RandomUnavailable)?;
    Ok(nonce)
}

/// The AES-256-GCM cipher of a data key.
fn data_key_cipher(data_key: &[u8; DATA_KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, data_key).expect("a data key has the AES-256 key length"),
    )
}

impl Keyring {
    /// Encrypts `plaintext` under a fresh random data key, wraps the data key under the active master key,
    /// and binds both layers to `context`.
    pub fn seal(
        &self,
        plaintext: &[u8],
        context: &EnvelopeContext<'_>,
    ) -> Result<Envelope, CryptoError> {
        let mut data_key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        self.rng()
            .fill(&mut data_key[..])
            .map_err(|_| CryptoError::RandomUnavailable)?;
        let payload_nonce = random_nonce(self.rng())?;

        // The buffer holds the plaintext until it is encrypted in place, so it is zeroed if sealing fails.
        let mut bytes = Zeroizing::new(Vec::with_capacity(
            MIN_ENVELOPE_LEN.saturating_add(plaintext.len()),
        ));
        let active = self.active_version();
        self.append_wrapped_key(&mut bytes, active, &data_key, context)?;
        bytes.extend_from_slice(&payload_nonce);
        bytes.extend_from_slice(plaintext);
        let tag = data_key_cipher(&data_key)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(payload_nonce),
                Aad::from(context.payload_aad(FORMAT_V1)),
                &mut bytes[CIPHERTEXT_OFFSET..],
            )
            .map_err(|_| CryptoError::PayloadTooLarge)?;
        bytes.extend_from_slice(tag.as_ref());
        Ok(Envelope {
            bytes: std::mem::take(&mut *bytes),
            key_version: active,
        })
    }

    /// Decrypts an envelope sealed with exactly this `context` by any version in the keyring.
    pub fn open(
        &self,
        envelope: &[u8],
        context: &EnvelopeContext<'_>,
    ) -> Result<Plaintext, CryptoError> {
        let parsed = ParsedEnvelope::parse(envelope)?;
        let data_key = self.unwrap_data_key(&parsed, context)?;
        open_payload(&parsed, &data_key, context)
    }

    /// Moves an envelope to the active key version: unwraps its data key and wraps it again under the
    /// active master key with a fresh nonce. The payload nonce and ciphertext are copied unchanged.
    ///
    /// The whole envelope is authenticated first (payload included), so a damaged envelope is reported
    /// rather than carried forward. An envelope already under the active version is returned as it is.
    pub fn rewrap(
        &self,
        envelope: &[u8],
        context: &EnvelopeContext<'_>,
    ) -> Result<Envelope, CryptoError> {
        let parsed = ParsedEnvelope::parse(envelope)?;
        let data_key = self.unwrap_data_key(&parsed, context)?;
        drop(open_payload(&parsed, &data_key, context)?);
        let active = self.active_version();
        if parsed.key_version == active {
            return Ok(Envelope {
                bytes: envelope.to_vec(),
                key_version: active,
            });
        }
        let mut bytes = Vec::with_capacity(envelope.len());
        self.append_wrapped_key(&mut bytes, active, &data_key, context)?;
        bytes.extend_from_slice(parsed.payload_nonce);
        bytes.extend_from_slice(parsed.ciphertext);
        Ok(Envelope {
            bytes,
            key_version: active,
        })
    }

    /// Appends the header for `version`, a fresh wrap nonce and `data_key` wrapped under `version`.
    fn append_wrapped_key(
        &self,
        out: &mut Vec<u8>,
        version: KeyVersion,
        data_key: &[u8; DATA_KEY_LEN],
        context: &EnvelopeContext<'_>,
    ) -> Result<(), CryptoError> {
        let key_encryption_key = self
            .key_encryption_key(version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        let header = header_for(version);
        let wrap_nonce = random_nonce(self.rng())?;
        let mut wrapped = Zeroizing::new(*data_key);
        let tag = key_encryption_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(wrap_nonce),
                Aad::from(context.wrap_aad(&header)),
                &mut wrapped[..],
            )
            .map_err(|_| CryptoError::PayloadTooLarge)?;
        out.extend_from_slice(&header);
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped[..]);
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts the wrapped data key with the key of the envelope's version.
    fn unwrap_data_key(
        &self,
        parsed: &ParsedEnvelope<'_>,
        context: &EnvelopeContext<'_>,
    ) -> Result<Zeroizing<[u8; DATA_KEY_LEN]>, CryptoError> {
        let key_encryption_key = self
            .key_encryption_key(parsed.key_version)
            .ok_or(CryptoError::UnknownKeyVersion(parsed.key_version))?;
        let mut wrapped = Zeroizing::new(*parsed.wrapped_key);
        let data_key = key_encryption_key
            .open_in_place(
                Nonce::assume_unique_for_key(*parsed.wrap_nonce),
                Aad::from(context.wrap_aad(parsed.header)),
                &mut wrapped[..],
            )
            .map_err(|_| CryptoError::Authentication)?;
        let mut unwrapped = Zeroizing::new([0u8; DATA_KEY_LEN]);
        unwrapped.copy_from_slice(
            data_key
                .get(..DATA_KEY_LEN)
                .ok_or(CryptoError::Authentication)?,
        );
        Ok(unwrapped)
    }
}

/// Decrypts the payload with the unwrapped data key.
fn open_payload(
    parsed: &ParsedEnvelope<'_>,
    data_key: &[u8; DATA_KEY_LEN],
    context: &EnvelopeContext<'_>,
) -> Result<Plaintext, CryptoError> {
    let mut buffer = Zeroizing::new(parsed.ciphertext.to_vec());
    let plaintext_len = data_key_cipher(data_key)
        .open_in_place(
            Nonce::assume_unique_for_key(*parsed.payload_nonce),
            Aad::from(context.payload_aad(parsed.format)),
            &mut buffer[..],
        )
        .map_err(|_| CryptoError::Authentication)?
        .len();
    buffer.truncate(plaintext_len);
    Ok(Plaintext::new(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_constants_match_the_documented_layout() {
        assert_eq!(HEADER_LEN, 5);
        assert_eq!(WRAPPED_KEY_LEN, 48);
        assert_eq!(CIPHERTEXT_OFFSET, 77);
        assert_eq!(MIN_ENVELOPE_LEN, 93);
    }

    #[test]
    fn context_encoding_is_length_prefixed() {
        let org = Uuid::from_u128(1);
        let credential = Uuid::from_u128(2);
        let mut encoded = Vec::new();
        EnvelopeContext::new(org, "ab", credential).encode_into(&mut encoded);
        let mut expected = Vec::new();
        expected.extend_from_slice(&16u64.to_be_bytes());
        expected.extend_from_slice(org.as_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&16u64.to_be_bytes());
        expected.extend_from_slice(credential.as_bytes());
        assert_eq!(encoded, expected);
        assert_eq!(
            EnvelopeContext::new(org, "ab", credential).encoded_len(),
            expected.len()
        );
    }

    #[test]
    fn header_encodes_format_and_big_endian_version() {
        let version = KeyVersion::new(0x0102_0304).expect("non-zero");
        assert_eq!(header_for(version), [FORMAT_V1, 1, 2, 3, 4]);
    }
}
