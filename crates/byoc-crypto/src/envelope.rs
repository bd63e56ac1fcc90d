//! Sealing, opening and rewrapping envelopes (layout in the crate documentation).

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

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

/// Length of the key version at the end of the wrapping layer's associated data.
const KEY_VERSION_LEN: usize = 4;

/// What an envelope is bound to: it opens only with exactly the context it was sealed with.
///
/// Serialised into the associated data of both AEAD layers as org id (16 bytes) ‖ credential id
/// (16 bytes) ‖ length of the credential type (u64 big-endian) ‖ credential type (UTF-8): fixed-length
/// fields first and the one variable-length field length-prefixed, so the encoding is unambiguous.
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

    /// Appends the unambiguous encoding of the three fields.
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.org_id.as_bytes());
        out.extend_from_slice(self.credential_id.as_bytes());
        out.extend_from_slice(&(self.credential_type.len() as u64).to_be_bytes());
        out.extend_from_slice(self.credential_type.as_bytes());
    }

    fn encoded_len(&self) -> usize {
        16 + 16 + 8 + self.credential_type.len()
    }
}

/// The associated data of both layers in one buffer: `format ‖ context ‖ key version`.
///
/// The wrapping layer authenticates all of it (so the whole header is bound to the wrapped data key); the
/// payload layer authenticates everything but the trailing key version, so a rewrap leaves the payload
/// alone. Sharing the prefix is safe because the layers use unrelated keys (derived key-encryption key
/// versus random data key).
#[derive(Clone, Copy)]
struct AssociatedData<'a>(&'a [u8]);

impl<'a> AssociatedData<'a> {
    /// Length of the associated data for `context`.
    fn len_for(context: &EnvelopeContext<'_>) -> usize {
        1 + context.encoded_len() + KEY_VERSION_LEN
    }

    /// Appends the associated data to `out`.
    fn append(
        out: &mut Vec<u8>,
        format: u8,
        context: &EnvelopeContext<'_>,
        key_version: KeyVersion,
    ) {
        out.push(format);
        context.encode_into(out);
        out.extend_from_slice(&key_version.get().to_be_bytes());
    }

    /// Builds the associated data in a buffer of its own.
    fn build(format: u8, context: &EnvelopeContext<'_>, key_version: KeyVersion) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(AssociatedData::len_for(context));
        AssociatedData::append(&mut bytes, format, context, key_version);
        bytes
    }

    /// Associated data of the wrapping layer: all of it.
    fn wrap(self) -> Aad<&'a [u8]> {
        Aad::from(self.0)
    }

    /// Associated data of the payload layer: all but the trailing key version.
    fn payload(self) -> Aad<&'a [u8]> {
        Aad::from(&self.0[..self.0.len().saturating_sub(KEY_VERSION_LEN)])
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

/// Key bytes on the stack, zeroed on drop. (zeroize's slice impl clears in bulk; its array impl and
/// `Zeroizing<[u8; N]>` go byte by byte, which shows up in the cost of opening a small envelope.)
struct SecretBytes<const N: usize>([u8; N]);

impl<const N: usize> Drop for SecretBytes<N> {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
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
        let mut data_key = SecretBytes([0u8; DATA_KEY_LEN]);
        self.rng()
            .fill(&mut data_key.0)
            .map_err(|_| CryptoError::RandomUnavailable)?;
        let payload_nonce = random_nonce(self.rng())?;
        let active = self.active_version();
        let aad_bytes = AssociatedData::build(FORMAT_V1, context, active);
        let aad = AssociatedData(&aad_bytes);

        // The buffer holds the plaintext until it is encrypted in place, so it is zeroed if sealing fails.
        let mut bytes = Zeroizing::new(Vec::with_capacity(
            MIN_ENVELOPE_LEN.saturating_add(plaintext.len()),
        ));
        self.append_wrapped_key(&mut bytes, active, &data_key.0, aad)?;
        bytes.extend_from_slice(&payload_nonce);
        bytes.extend_from_slice(plaintext);
        let tag = data_key_cipher(&data_key.0)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(payload_nonce),
                aad.payload(),
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
        let ciphertext_len = parsed.ciphertext.len();
        // One allocation holds the ciphertext, decrypted in place, followed by the associated data. It is
        // owned by `Plaintext` from the start, so it is zeroed on every path.
        let mut plaintext = Plaintext::new(Vec::with_capacity(
            ciphertext_len.saturating_add(AssociatedData::len_for(context)),
        ));
        let buffer = plaintext.buffer_mut();
        buffer.extend_from_slice(parsed.ciphertext);
        AssociatedData::append(buffer, parsed.format, context, parsed.key_version);
        let (in_out, aad) = buffer
            .split_at_mut_checked(ciphertext_len)
            .ok_or(CryptoError::Truncated)?;
        let aad = AssociatedData(aad);
        let mut unwrapped = SecretBytes(*parsed.wrapped_key);
        self.unwrap_data_key(&parsed, aad, &mut unwrapped)?;
        let plaintext_len = decrypt_payload(&parsed, &unwrapped.0, aad, in_out)?;
        buffer.truncate(plaintext_len);
        Ok(plaintext)
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
        let mut aad = AssociatedData::build(parsed.format, context, parsed.key_version);
        let mut unwrapped = SecretBytes(*parsed.wrapped_key);
        self.unwrap_data_key(&parsed, AssociatedData(&aad), &mut unwrapped)?;
        let mut scratch = Plaintext::new(parsed.ciphertext.to_vec());
        decrypt_payload(
            &parsed,
            &unwrapped.0,
            AssociatedData(&aad),
            scratch.buffer_mut(),
        )?;
        drop(scratch);
        let active = self.active_version();
        if parsed.key_version == active {
            return Ok(Envelope {
                bytes: envelope.to_vec(),
                key_version: active,
            });
        }
        aad.truncate(aad.len().saturating_sub(KEY_VERSION_LEN));
        aad.extend_from_slice(&active.get().to_be_bytes());
        let mut bytes = Vec::with_capacity(envelope.len());
        self.append_wrapped_key(
            &mut bytes,
            active,
            data_key_of(&unwrapped.0)?,
            AssociatedData(&aad),
        )?;
        bytes.extend_from_slice(parsed.payload_nonce);
        bytes.extend_from_slice(parsed.ciphertext);
        Ok(Envelope {
            bytes,
            key_version: active,
        })
    }

    /// Appends the header for `version`, a fresh wrap nonce and `data_key` wrapped under `version`
    /// (`aad` must carry `version`).
    fn append_wrapped_key(
        &self,
        out: &mut Vec<u8>,
        version: KeyVersion,
        data_key: &[u8; DATA_KEY_LEN],
        aad: AssociatedData<'_>,
    ) -> Result<(), CryptoError> {
        let key_encryption_key = self
            .key_encryption_key(version)
            .ok_or(CryptoError::UnknownKeyVersion(version))?;
        let wrap_nonce = random_nonce(self.rng())?;
        let mut wrapped = SecretBytes(*data_key);
        let tag = key_encryption_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(wrap_nonce),
                aad.wrap(),
                &mut wrapped.0,
            )
            .map_err(|_| CryptoError::PayloadTooLarge)?;
        out.extend_from_slice(&header_for(version));
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped.0);
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts the wrapped data key with the key of the envelope's version, in place: afterwards the
    /// first `DATA_KEY_LEN` bytes of `wrapped` are the data key.
    fn unwrap_data_key(
        &self,
        parsed: &ParsedEnvelope<'_>,
        aad: AssociatedData<'_>,
        wrapped: &mut SecretBytes<WRAPPED_KEY_LEN>,
    ) -> Result<(), CryptoError> {
        let key_encryption_key = self
            .key_encryption_key(parsed.key_version)
            .ok_or(CryptoError::UnknownKeyVersion(parsed.key_version))?;
        key_encryption_key
            .open_in_place(
                Nonce::assume_unique_for_key(*parsed.wrap_nonce),
                aad.wrap(),
                &mut wrapped.0,
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(())
    }
}

/// The data key in a decrypted wrapped-key buffer (its first `DATA_KEY_LEN` bytes; the rest is the tag).
fn data_key_of(unwrapped: &[u8; WRAPPED_KEY_LEN]) -> Result<&[u8; DATA_KEY_LEN], CryptoError> {
    unwrapped
        .split_first_chunk::<DATA_KEY_LEN>()
        .map(|(data_key, _tag)| data_key)
        .ok_or(CryptoError::Authentication)
}

/// Decrypts the payload in place with the unwrapped data key; returns the plaintext length.
fn decrypt_payload(
    parsed: &ParsedEnvelope<'_>,
    unwrapped: &[u8; WRAPPED_KEY_LEN],
    aad: AssociatedData<'_>,
    in_out: &mut [u8],
) -> Result<usize, CryptoError> {
    let plaintext = data_key_cipher(data_key_of(unwrapped)?)
        .open_in_place(
            Nonce::assume_unique_for_key(*parsed.payload_nonce),
            aad.payload(),
            in_out,
        )
        .map_err(|_| CryptoError::Authentication)?;
    Ok(plaintext.len())
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
    fn context_encoding_is_unambiguous() {
        let org = Uuid::from_u128(1);
        let credential = Uuid::from_u128(2);
        let mut encoded = Vec::new();
        EnvelopeContext::new(org, "ab", credential).encode_into(&mut encoded);
        let mut expected = Vec::new();
        expected.extend_from_slice(org.as_bytes());
        expected.extend_from_slice(credential.as_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"ab");
        assert_eq!(encoded, expected);
        assert_eq!(
            EnvelopeContext::new(org, "ab", credential).encoded_len(),
            expected.len()
        );
    }

    /// Builds an envelope by hand from the layout documented in the crate docs (HKDF-derived key-encryption
    /// key, associated data, field order) and opens it with the keyring: stored envelopes depend on this.
    #[test]
    fn documented_layout_opens() {
        use crate::{Keyring, MasterKey};
        use ring::hkdf;

        let master = [0x42u8; 32];
        let org = Uuid::from_u128(0x0102);
        let credential = Uuid::from_u128(0x0304);
        let credential_type = "twilio";
        let version = KeyVersion::new(7).expect("non-zero");
        let keyring =
            Keyring::new(vec![(version, MasterKey::from_bytes(master))], version).expect("keyring");

        let key_encryption_key = LessSafeKey::new(UnboundKey::from(
            hkdf::Salt::new(hkdf::HKDF_SHA256, b"byoc-crypto/v1 master key derivation")
                .extract(&master)
                .expand(&[b"byoc-crypto/v1 key-encryption key"], &AES_256_GCM)
                .expect("HKDF output length"),
        ));
        let mut payload_aad = vec![FORMAT_V1];
        payload_aad.extend_from_slice(org.as_bytes());
        payload_aad.extend_from_slice(credential.as_bytes());
        payload_aad.extend_from_slice(&6u64.to_be_bytes());
        payload_aad.extend_from_slice(credential_type.as_bytes());
        let mut wrap_aad = payload_aad.clone();
        wrap_aad.extend_from_slice(&7u32.to_be_bytes());

        let data_key = [0x24u8; 32];
        let mut wrapped = data_key.to_vec();
        key_encryption_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::from(&wrap_aad),
                &mut wrapped,
            )
            .expect("wrap");
        let mut ciphertext = b"hello".to_vec();
        data_key_cipher(&data_key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([2; 12]),
                Aad::from(&payload_aad),
                &mut ciphertext,
            )
            .expect("seal");

        let mut envelope = vec![FORMAT_V1, 0, 0, 0, 7];
        envelope.extend_from_slice(&[1; 12]);
        envelope.extend_from_slice(&wrapped);
        envelope.extend_from_slice(&[2; 12]);
        envelope.extend_from_slice(&ciphertext);

        let context = EnvelopeContext::new(org, credential_type, credential);
        let opened = keyring
            .open(&envelope, &context)
            .expect("documented layout opens");
        assert_eq!(opened.expose_secret(), b"hello");
    }

    #[test]
    fn header_encodes_format_and_big_endian_version() {
        let version = KeyVersion::new(0x0102_0304).expect("non-zero");
        assert_eq!(header_for(version), [FORMAT_V1, 1, 2, 3, 4]);
    }
}
