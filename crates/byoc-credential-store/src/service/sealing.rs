//! Sealing payloads into envelopes and opening them with the keyring, bound to (organization, type, id).

use super::*;

impl Inner {
    pub(super) fn open(
        &self,
        org_id: OrgId,
        credential_type: CredentialType,
        id: CredentialId,
        envelope: &EncryptedEnvelope,
    ) -> ServiceResult<Plaintext> {
        self.keyring
            .open(
                envelope.as_bytes(),
                &envelope_context(org_id, credential_type, id),
            )
            .map_err(|source| CredentialServiceError::Decrypt { id, source })
    }

    /// Opens a stored record of `org_id` and parses it as the provider's payload `P`.
    pub(super) fn open_payload<P: CredentialPayload>(
        &self,
        org_id: OrgId,
        record: &CredentialRecord,
    ) -> ServiceResult<P> {
        let provider = record.metadata.credential_type;
        let plaintext = self.open(org_id, provider, record.metadata.id, &record.encrypted_data)?;
        P::from_json_bytes(plaintext.expose_secret())
            .map_err(|source| CredentialServiceError::InvalidPayload { provider, source })
    }

    pub(super) fn seal(
        &self,
        org_id: OrgId,
        credential_type: CredentialType,
        id: CredentialId,
        plaintext: &[u8],
    ) -> ServiceResult<(EncryptedEnvelope, NonZeroU32)> {
        let envelope = self
            .keyring
            .seal(plaintext, &envelope_context(org_id, credential_type, id))
            .map_err(CredentialServiceError::Encrypt)?;
        let version = stored_key_version(envelope.key_version());
        let envelope = EncryptedEnvelope::new(envelope.into_bytes())
            .map_err(|error| CredentialServiceError::from(crate::StoreError::from(error)))?;
        Ok((envelope, version))
    }
}

/// The envelope context of a credential: organization, type and id.
pub fn envelope_context(
    org_id: OrgId,
    credential_type: CredentialType,
    id: CredentialId,
) -> EnvelopeContext<'static> {
    EnvelopeContext::new(org_id.as_uuid(), credential_type.as_str(), id.as_uuid())
}
