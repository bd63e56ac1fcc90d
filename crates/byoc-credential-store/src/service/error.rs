//! [`CredentialServiceError`]: why a credential service call failed. No message ever contains a secret.

use std::sync::Arc;

use byoc_credential_types::InvalidField;
use byoc_crypto::CryptoError;

use crate::error::StoreError;
use crate::model::CredentialType;
use crate::tenant::CredentialId;

/// Why a credential service call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CredentialServiceError {
    /// The organization has no active, verified credential of this type (and no legacy fallback applies).
    /// The API answers 409 `credential_not_configured`.
    #[error(
        "no usable {} credential: add and verify a {} credential for this organization",
        provider.display_name(),
        provider.display_name()
    )]
    NotConfigured {
        /// The provider to configure.
        provider: CredentialType,
    },
    /// The credential is deactivated; it is never decrypted again.
    #[error("credential {id} is deactivated")]
    Inactive {
        /// The credential.
        id: CredentialId,
    },
    /// The store failed (not found, forbidden, conflict, unavailable, ...). Shared, because concurrent
    /// callers waiting on one database read all receive its error.
    #[error(transparent)]
    Store(Arc<StoreError>),
    /// A stored envelope could not be decrypted (wrong or missing key version, damaged bytes).
    #[error("credential {id} cannot be decrypted: {source}")]
    Decrypt {
        /// The credential.
        id: CredentialId,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// Sealing a new envelope failed (the operating system's random number generator).
    #[error("a credential cannot be encrypted: {0}")]
    Encrypt(#[source] CryptoError),
    /// A decrypted payload is not a valid payload of its provider.
    #[error("the stored {} credential is not valid: {source}", provider.display_name())]
    InvalidPayload {
        /// The provider.
        provider: CredentialType,
        /// Which field is wrong (never its value).
        #[source]
        source: InvalidField,
    },
}

/// The result type of the credential service.
pub type ServiceResult<T> = Result<T, CredentialServiceError>;

impl From<StoreError> for CredentialServiceError {
    fn from(error: StoreError) -> Self {
        CredentialServiceError::Store(Arc::new(error))
    }
}

impl CredentialServiceError {
    /// The store's error, when the store failed.
    pub fn store_error(&self) -> Option<&StoreError> {
        match self {
            CredentialServiceError::Store(error) => Some(error),
            _ => None,
        }
    }

    /// Whether the database could not be reached (the API answers 503).
    pub fn is_database_unavailable(&self) -> bool {
        matches!(self.store_error(), Some(StoreError::Unavailable(_)))
    }
}
