//! What verifying a credential needs from the service: the credential decrypted for its verifier, and the
//! outcome recorded (by an admin, or by the service itself when a provider refuses a use).

use std::sync::Arc;

use super::*;

impl CredentialService {
    /// The credential `id` decrypted for verifying it against its provider: owners, admins and services only
    /// (verifying is an admin's action), active credentials only ([`CredentialServiceError::Inactive`]
    /// otherwise), whatever its verification status. Never cached, not audited as a read: the outcome
    /// recorded with [`CredentialService::record_verification`] is the audit of a verification.
    pub async fn credential_to_verify(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> ServiceResult<DecryptedCredential> {
        let role = self.inner.repository.member_role(tenant).await?;
        check(&tenant.actor, role, Need::ManagerOrService)?;
        let record = self.inner.repository.get_credential(tenant, id).await?;
        if !record.metadata.is_active {
            return Err(CredentialServiceError::Inactive { id });
        }
        let plaintext = self.inner.open(
            tenant.org_id,
            record.metadata.credential_type,
            id,
            &record.encrypted_data,
        )?;
        Ok(DecryptedCredential {
            secret: Secret::Stored(Arc::new(StoredSecret {
                metadata: record.metadata,
                plaintext,
            })),
        })
    }

    /// Records a verification outcome (status, error; the store's time) for a credential, audited as
    /// `verified`, `verification_failed` or `verification_reset`. Owners, admins and services may record one;
    /// a member's use that the provider refuses goes through [`CredentialService::record_refused_use`].
    /// `error` is the provider's reason, never a secret.
    pub async fn record_verification(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        status: VerificationStatus,
        error: Option<String>,
    ) -> ServiceResult<CredentialMetadata> {
        let outcome = VerificationOutcome { status, error };
        let metadata = self
            .inner
            .repository
            .record_verification(tenant, id, &outcome)
            .await?;
        let detail = match &outcome.error {
            Some(reason) => serde_json::json!({"error": reason}),
            None => serde_json::json!({}),
        };
        self.changed(tenant, self.verification_action(status), &metadata, detail)
            .await;
        Ok(metadata)
    }

    /// Marks a credential `failed` because its provider refused a use (an SMS the provider refused with a
    /// credential error, an availability check that hit `invalid_grant`). Recording a verification outcome is
    /// an owner's or admin's action, which a member's request only triggers, so the service records it in its
    /// own name ([`ServiceConfig::service_name`], a service context: on Postgres, the service login). Audited
    /// as `verification_failed` with the provider's reason and who triggered it.
    pub async fn record_refused_use(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        reason: String,
    ) -> ServiceResult<CredentialMetadata> {
        let service = Tenant::service(tenant.org_id, self.inner.service_name.clone());
        let outcome = VerificationOutcome {
            status: VerificationStatus::Failed,
            error: Some(reason),
        };
        let metadata = self
            .inner
            .repository
            .record_verification(&service, id, &outcome)
            .await?;
        self.changed(
            &service,
            &self.inner.actions.verification_failed,
            &metadata,
            serde_json::json!({"error": outcome.error, "triggered_by": tenant.actor.to_string()}),
        )
        .await;
        Ok(metadata)
    }

    pub(super) fn verification_action(&self, status: VerificationStatus) -> &AuditAction {
        match status {
            VerificationStatus::Verified => &self.inner.actions.verified,
            VerificationStatus::Failed => &self.inner.actions.verification_failed,
            VerificationStatus::Pending => &self.inner.actions.verification_reset,
        }
    }
}
