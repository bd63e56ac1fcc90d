//! What the service hands out: a decrypted credential (zeroed when its last holder drops it; `Debug` shows the
//! type and id only), a credential parsed as its provider's payload type, and which credential an any-status read
//! decrypts.

use std::sync::Arc;

use super::*;

/// A decrypted stored credential as cached.
pub(super) struct StoredSecret {
    pub(super) metadata: CredentialMetadata,
    pub(super) plaintext: Plaintext,
}

pub(super) enum Secret {
    Stored(Arc<StoredSecret>),
    Legacy {
        credential_type: CredentialType,
        json: Arc<CredentialJson>,
    },
}

/// A decrypted credential, ready to use. The JSON payload is reachable only through
/// [`DecryptedCredential::expose_json`] or [`DecryptedCredential::parse`]; the bytes are zeroed when the
/// last holder (cache entry or caller) drops them; `Debug` shows the type and id only.
pub struct DecryptedCredential {
    pub(super) secret: Secret,
}

impl DecryptedCredential {
    /// The provider.
    pub fn credential_type(&self) -> CredentialType {
        match &self.secret {
            Secret::Stored(stored) => stored.metadata.credential_type,
            Secret::Legacy {
                credential_type, ..
            } => *credential_type,
        }
    }

    /// The stored credential's metadata; `None` for the legacy fallback.
    pub fn metadata(&self) -> Option<&CredentialMetadata> {
        match &self.secret {
            Secret::Stored(stored) => Some(&stored.metadata),
            Secret::Legacy { .. } => None,
        }
    }

    /// The stored credential's id; `None` for the legacy fallback.
    pub fn id(&self) -> Option<CredentialId> {
        self.metadata().map(|metadata| metadata.id)
    }

    /// Whether this is the legacy env credential served by the transition fallback.
    pub fn is_legacy_fallback(&self) -> bool {
        matches!(self.secret, Secret::Legacy { .. })
    }

    /// The decrypted JSON payload. Keep the borrow short; do not copy it into types that are not zeroed.
    pub fn expose_json(&self) -> &[u8] {
        match &self.secret {
            Secret::Stored(stored) => stored.plaintext.expose_secret(),
            Secret::Legacy { json, .. } => json.as_bytes(),
        }
    }

    /// Parses the payload as the provider's type (its secrets are `SecretString`s).
    pub fn parse<P: CredentialPayload>(&self) -> ServiceResult<P> {
        let provider = self.credential_type();
        if P::KIND != provider {
            return Err(CredentialServiceError::NotConfigured { provider: P::KIND });
        }
        P::from_json_bytes(self.expose_json())
            .map_err(|source| CredentialServiceError::InvalidPayload { provider, source })
    }
}

impl fmt::Debug for DecryptedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedCredential")
            .field("credential_type", &self.credential_type())
            .field("id", &self.id())
            .field("legacy_fallback", &self.is_legacy_fallback())
            .finish_non_exhaustive()
    }
}

/// A credential parsed as its provider's payload type.
#[derive(Debug)]
pub struct UsableCredential<P> {
    /// The stored credential's id; `None` for the legacy fallback (record SMS with no credential id).
    pub credential_id: Option<CredentialId>,
    /// Whether this is the legacy env credential served by the transition fallback.
    pub legacy_fallback: bool,
    /// The payload; its secrets are `SecretString`s.
    pub payload: P,
}

/// Which credential [`CredentialService::get_payload_any_status`] decrypts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSelector {
    /// The organization's newest active credential of the payload's type (by creation time, then id),
    /// whatever its verification status.
    NewestActive,
    /// This credential, which must be active and of the payload's type.
    Id(CredentialId),
}
