//! [`CredentialManager`]: what the management endpoints do with a credential — encrypt and store it, verify it
//! with its provider, deactivate or purge it — each change written to the audit log.
//!
//! Envelopes are sealed and opened with the keyring, bound to (org, type, id); plaintext lives only in
//! zeroize-on-drop buffers for the length of one call and never reaches a log, an error or a response.

use std::num::NonZeroU32;
use std::sync::Arc;

use byoc_credential_store::{
    AuditAction, CredentialId, CredentialMetadata, CredentialRepository, CredentialType,
    DisplayName, EncryptedEnvelope, NewAuditEvent, NewCredential, OrgId, PublicHint, ServiceName,
    Tenant, VerificationOutcome, VerificationStatus,
};
use byoc_crypto::{CryptoError, EnvelopeContext, Keyring};
use byoc_providers::{CredentialPayload, ProviderError, ProviderKind, VerifierRegistry};
use chrono::Utc;

use crate::error::ApiError;
use crate::keys::stored_key_version;
use crate::metrics::Metrics;

/// What verifying a credential found.
#[derive(Debug)]
pub struct Verification {
    /// The credential after the outcome was recorded.
    pub metadata: CredentialMetadata,
    /// Whether the provider accepted it.
    pub verified: bool,
}

/// Credential management over the store, the keyring and the providers' verifiers.
#[derive(Clone)]
pub struct CredentialManager {
    repository: Arc<dyn CredentialRepository>,
    keyring: Arc<Keyring>,
    verifiers: VerifierRegistry,
    metrics: Metrics,
}

impl CredentialManager {
    /// Builds the manager.
    pub fn new(
        repository: Arc<dyn CredentialRepository>,
        keyring: Arc<Keyring>,
        verifiers: VerifierRegistry,
        metrics: Metrics,
    ) -> CredentialManager {
        CredentialManager {
            repository,
            keyring,
            verifiers,
            metrics,
        }
    }

    /// Encrypts and stores a new credential (`pending`), created by the tenant's user.
    pub async fn add<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        payload: &P,
        display_name: DisplayName,
    ) -> Result<CredentialMetadata, ApiError> {
        let credential = self.new_credential(tenant, payload, display_name)?;
        let result = self.repository.insert_credential(tenant, &credential).await;
        self.count("created", credential.credential_type, result.is_ok());
        let metadata = result?;
        self.audit(
            tenant,
            "created",
            &metadata,
            serde_json::json!({"display_name": metadata.display_name}),
        )
        .await?;
        Ok(metadata)
    }

    /// Operator: encrypts and stores a credential in `org` with no user (`byoc import-env`), audited as the
    /// calling service.
    pub async fn import<P: CredentialPayload>(
        &self,
        org: OrgId,
        service: ServiceName,
        payload: &P,
        display_name: DisplayName,
    ) -> Result<CredentialMetadata, ApiError> {
        let tenant = Tenant::service(org, service);
        let credential = self.new_credential(&tenant, payload, display_name)?;
        let metadata = self
            .repository
            .operator_insert_credential(org, &credential)
            .await?;
        self.count("imported", credential.credential_type, true);
        self.audit(
            &tenant,
            "created",
            &metadata,
            serde_json::json!({"display_name": metadata.display_name, "source": "import-env"}),
        )
        .await?;
        Ok(metadata)
    }

    fn new_credential<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        payload: &P,
        display_name: DisplayName,
    ) -> Result<NewCredential, ApiError> {
        let credential_type = credential_type(P::KIND)?;
        let id = CredentialId::new_random();
        let json = payload.to_json_bytes();
        let (encrypted_data, encryption_key_version) =
            self.seal(tenant, credential_type, id, json.as_bytes())?;
        Ok(NewCredential {
            id,
            credential_type,
            display_name,
            public_hint: PublicHint::parse(&payload.public_hint()).ok(),
            encrypted_data,
            encryption_key_version,
        })
    }

    /// Decrypts the credential, asks its provider, and records the outcome (status, error, time).
    ///
    /// A refusal that says the credential is unusable marks it `failed`; an outage or rate limit records
    /// nothing and answers 424 or 429. A deactivated credential is not decrypted again (409).
    pub async fn verify(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> Result<Verification, ApiError> {
        let record = self.repository.get_credential(tenant, id).await?;
        if !record.metadata.is_active {
            return Err(ApiError::credential_inactive());
        }
        let credential_type = record.metadata.credential_type;
        let kind = provider_kind(credential_type)?;
        let result = {
            let context = envelope_context(tenant, credential_type, id);
            let plaintext = self
                .keyring
                .open(record.encrypted_data.as_bytes(), &context)
                .map_err(|error| crypto_failure(&error))?;
            self.verifiers.verify(kind, plaintext.expose_secret()).await
        };
        let (outcome, verified, detail) = match result {
            Ok(accepted) => {
                if let Some(updated) = accepted.updated_payload {
                    let (envelope, version) =
                        self.seal(tenant, credential_type, id, updated.as_bytes())?;
                    self.repository
                        .update_envelope(tenant, id, &envelope, version)
                        .await?;
                }
                (
                    VerificationOutcome {
                        status: VerificationStatus::Verified,
                        error: None,
                        at: Utc::now(),
                    },
                    true,
                    serde_json::json!({}),
                )
            }
            Err(error) if error.is_credential_failure() => (
                VerificationOutcome {
                    status: VerificationStatus::Failed,
                    error: Some(error.to_string()),
                    at: Utc::now(),
                },
                false,
                serde_json::json!({"provider_code": error.provider_code()}),
            ),
            Err(error) => {
                self.count("verified", credential_type, false);
                return Err(ApiError::from(error));
            }
        };
        let metadata = self
            .repository
            .record_verification(tenant, id, &outcome)
            .await?;
        self.count("verified", credential_type, verified);
        let action = if verified {
            "verified"
        } else {
            "verification_failed"
        };
        self.audit(tenant, action, &metadata, detail).await?;
        Ok(Verification { metadata, verified })
    }

    /// Deactivates a credential: it is never used again.
    pub async fn deactivate(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> Result<CredentialMetadata, ApiError> {
        let metadata = self.repository.deactivate_credential(tenant, id).await?;
        self.count("deactivated", metadata.credential_type, true);
        self.audit(tenant, "deactivated", &metadata, serde_json::json!({}))
            .await?;
        Ok(metadata)
    }

    /// Deletes a credential and its ciphertext for good; its audit entries stay.
    pub async fn purge(&self, tenant: &Tenant, id: CredentialId) -> Result<(), ApiError> {
        let metadata = self.repository.get_credential(tenant, id).await?.metadata;
        self.repository.purge_credential(tenant, id).await?;
        self.count("purged", metadata.credential_type, true);
        self.audit(
            tenant,
            "purged",
            &metadata,
            serde_json::json!({"display_name": metadata.display_name}),
        )
        .await
    }

    fn seal(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
        id: CredentialId,
        plaintext: &[u8],
    ) -> Result<(EncryptedEnvelope, NonZeroU32), ApiError> {
        let envelope = self
            .keyring
            .seal(plaintext, &envelope_context(tenant, credential_type, id))
            .map_err(|error| crypto_failure(&error))?;
        let version = stored_key_version(envelope.key_version());
        Ok((EncryptedEnvelope::new(envelope.into_bytes())?, version))
    }

    async fn audit(
        &self,
        tenant: &Tenant,
        action: &str,
        metadata: &CredentialMetadata,
        detail: serde_json::Value,
    ) -> Result<(), ApiError> {
        let event = NewAuditEvent {
            actor: tenant.actor.clone(),
            action: AuditAction::parse(action)?,
            at: Utc::now(),
            credential_id: Some(metadata.id),
            credential_type: Some(metadata.credential_type),
            detail,
        };
        self.repository.append_audit_event(tenant, &event).await?;
        Ok(())
    }

    fn count(&self, operation: &str, credential_type: CredentialType, ok: bool) {
        self.metrics.credential_operation(
            operation,
            credential_type.as_str(),
            if ok { "ok" } else { "error" },
        );
    }
}

fn envelope_context(
    tenant: &Tenant,
    credential_type: CredentialType,
    id: CredentialId,
) -> EnvelopeContext<'static> {
    EnvelopeContext::new(
        tenant.org_id.as_uuid(),
        credential_type.as_str(),
        id.as_uuid(),
    )
}

fn credential_type(kind: ProviderKind) -> Result<CredentialType, ApiError> {
    Ok(kind.as_str().parse::<CredentialType>()?)
}

fn provider_kind(credential_type: CredentialType) -> Result<ProviderKind, ApiError> {
    credential_type
        .as_str()
        .parse::<ProviderKind>()
        .map_err(|_| ApiError::internal(&UnknownKind(credential_type)))
}

#[derive(Debug, thiserror::Error)]
#[error("no provider kind for credential type {0}")]
struct UnknownKind(CredentialType);

fn crypto_failure(error: &CryptoError) -> ApiError {
    ApiError::internal(error)
}

impl From<ProviderError> for ApiError {
    fn from(error: ProviderError) -> ApiError {
        match error {
            ProviderError::InvalidInput(field) => field.into(),
            ProviderError::Refused(refusal) => ApiError::provider_refused(
                refusal.provider.display_name(),
                &refusal.code,
                &refusal.message,
            ),
            ProviderError::RateLimited { retry_after, .. } => {
                ApiError::rate_limited(retry_after.unwrap_or(std::time::Duration::from_secs(1)))
            }
            other => ApiError::provider_unavailable(&other.to_string()),
        }
    }
}
