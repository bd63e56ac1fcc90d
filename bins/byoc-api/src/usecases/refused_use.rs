//! A provider refused a stored credential while the service used it (an SMS, an availability check): when the
//! refusal says the credential itself is unusable (wrong auth token, revoked grant), the credential is marked
//! `failed` with the provider's reason, so the settings page and `GET /api/organization/credentials` show it
//! and the next use is refused before any provider call.

use byoc_credential_store::{CredentialId, CredentialService, Tenant};
use byoc_providers::ProviderError;

use crate::plumbing::error::CauseChain;

/// Marks the credential `credential_id` failed when `error` says the credential is unusable; a legacy fallback
/// (no id) or a refusal about the request (a bad number, a limit) changes nothing. Never fails the request:
/// a failure to record is logged.
pub async fn mark_refused(
    credential_service: &CredentialService,
    tenant: &Tenant,
    credential_id: Option<CredentialId>,
    error: &ProviderError,
) {
    let Some(id) = credential_id.filter(|_| error.is_credential_failure()) else {
        return;
    };
    if let Err(record_error) = credential_service
        .record_refused_use(tenant, id, error.to_string())
        .await
    {
        tracing::warn!(
            org_id = %tenant.org_id,
            credential_id = %id,
            error = %CauseChain(&record_error),
            "cannot mark the refused credential failed"
        );
    }
}
