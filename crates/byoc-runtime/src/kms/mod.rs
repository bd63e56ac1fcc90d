//! Master keys held by a key management service: the seam ([`Kms`]: encrypt or decrypt a 32-byte master key under
//! a KMS key with an encryption context), the names it speaks in ([`KmsKeyId`], [`KmsContext`],
//! [`WrappedMasterKey`], [`KmsError`]) and, with the `kms` feature, AWS KMS behind it ([`aws::AwsKms`]).
//!
//! `byoc-crypto` never calls a KMS: a KMS-held version is unwrapped here, once at start, and handed to the
//! keyring like an environment key. Another KMS (GCP, Vault Transit) implements [`Kms`] the same way.

#[cfg(feature = "kms")]
pub mod aws;
pub mod held;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use byoc_crypto::{KeyVersion, MasterKey};

/// The product name every encryption context carries, so a ciphertext made for byoc opens only for byoc.
pub const CONTEXT_PRODUCT: &str = "byoc";

/// A KMS key as the operator names it: a key id, a key ARN, an alias (`alias/…`) or an alias ARN.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KmsKeyId(String);

/// Why text is not a KMS key name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a KMS key is a key id, key ARN, alias/NAME or alias ARN: 1 to 2048 characters without spaces"
)]
pub struct InvalidKmsKeyId;

impl KmsKeyId {
    /// Parses a key id, key ARN, alias or alias ARN (surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<KmsKeyId, InvalidKmsKeyId> {
        let text = text.trim();
        if text.is_empty()
            || text.len() > 2048
            || text.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(InvalidKmsKeyId);
        }
        Ok(KmsKeyId(text.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KmsKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KmsKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KmsKeyId({})", self.0)
    }
}

impl std::str::FromStr for KmsKeyId {
    type Err = InvalidKmsKeyId;

    fn from_str(text: &str) -> Result<KmsKeyId, InvalidKmsKeyId> {
        KmsKeyId::parse(text)
    }
}

/// The encryption context a master key version is encrypted under: the product and the version. The KMS
/// authenticates it, so a ciphertext decrypts only for the version (and product) it was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsContext(BTreeMap<String, String>);

impl KmsContext {
    /// The context of master key `version`: `{"product": "byoc", "purpose": "master-key", "key_version": N}`.
    pub fn for_version(version: KeyVersion) -> KmsContext {
        KmsContext(BTreeMap::from([
            ("product".to_owned(), CONTEXT_PRODUCT.to_owned()),
            ("purpose".to_owned(), "master-key".to_owned()),
            ("key_version".to_owned(), version.to_string()),
        ]))
    }

    /// The context's pairs, in key order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }
}

/// A master key as the KMS encrypted it (its ciphertext blob); useless without the KMS key.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedMasterKey(Vec<u8>);

impl WrappedMasterKey {
    /// Wraps ciphertext bytes (as stored).
    pub fn from_bytes(bytes: Vec<u8>) -> WrappedMasterKey {
        WrappedMasterKey(bytes)
    }

    /// The ciphertext bytes, for storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WrappedMasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedMasterKey({} bytes)", self.0.len())
    }
}

/// Why the KMS did not encrypt or decrypt. `Display` is one line naming KMS and the key, never key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// The KMS could not be reached or failed on its side (network, timeout, throttling, internal error):
    /// asking again may work.
    #[error("KMS key {key}: KMS is unreachable: {reason}")]
    Unreachable {
        /// The KMS key asked for.
        key: String,
        /// What went wrong (the SDK's words).
        reason: String,
    },
    /// The KMS answered and refused: the key is disabled, pending deletion, unknown or not allowed, or the
    /// ciphertext is not one it made under this key and context. Asking again will not help.
    #[error("KMS key {key}: KMS refused: {reason}")]
    Refused {
        /// The KMS key asked for.
        key: String,
        /// The KMS's error code and message.
        reason: String,
    },
    /// The KMS decrypted to something that is not a 32-byte master key.
    #[error("KMS key {key}: the decrypted master key is {found} bytes, not 32")]
    NotAMasterKey {
        /// The KMS key asked for.
        key: String,
        /// How many bytes came back.
        found: usize,
    },
}

impl KmsError {
    /// Whether asking again may succeed ([`KmsError::Unreachable`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, KmsError::Unreachable { .. })
    }
}

/// A key management service that encrypts and decrypts 32-byte master keys under its own keys, binding each
/// ciphertext to an encryption context.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Kms: Send + Sync {
    /// Encrypts `master_key` under the KMS key `key` with `context`.
    async fn encrypt_master_key(
        &self,
        key: &KmsKeyId,
        master_key: &MasterKey,
        context: &KmsContext,
    ) -> Result<WrappedMasterKey, KmsError>;

    /// Decrypts `wrapped` (made by [`Kms::encrypt_master_key`] under `key` with the same `context`).
    async fn decrypt_master_key(
        &self,
        key: &KmsKeyId,
        wrapped: &WrappedMasterKey,
        context: &KmsContext,
    ) -> Result<MasterKey, KmsError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_parse_and_refuse_blanks() {
        for good in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            " alias/byoc ",
        ] {
            assert!(KmsKeyId::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            KmsKeyId::parse(" alias/byoc ").map(|k| k.to_string()),
            Ok("alias/byoc".to_owned())
        );
        for bad in ["", "  ", "alias/with space", "a\u{0}b"] {
            assert_eq!(KmsKeyId::parse(bad), Err(InvalidKmsKeyId), "{bad:?}");
        }
    }

    #[test]
    fn the_context_names_the_product_and_the_version() {
        let version = KeyVersion::new(7).expect("non-zero");
        let context = KmsContext::for_version(version);
        let pairs: Vec<(&str, &str)> = context.pairs().collect();
        assert_eq!(
            pairs,
            vec![
                ("key_version", "7"),
                ("product", "byoc"),
                ("purpose", "master-key")
            ]
        );
        assert_ne!(
            KmsContext::for_version(version),
            KmsContext::for_version(KeyVersion::FIRST)
        );
    }
}
