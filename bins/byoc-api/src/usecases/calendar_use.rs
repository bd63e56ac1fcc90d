//! Using the organization's Google Calendar credential: reading it for a purpose, and what follows a call with
//! it (Google refused the credential: drop its cached token and mark it failed; Google rotated the refresh
//! token: store the new one). Availability and booking share these steps.

use byoc_credential_store::{CredentialId, CredentialService, Purpose, Tenant, UsableCredential};
use byoc_credential_types::GoogleCalendarCredential;
use byoc_providers::ProviderError;

use crate::plumbing::error::{ApiError, CauseChain};
use crate::usecases::outbound::Outbound;
use crate::usecases::refused_use::mark_refused;
use crate::usecases::usage::Guarded;

/// Admits a provider call for the caller's organization and reads its usable Google Calendar credential for
/// `purpose` (audited).
pub async fn google_credential(
    service: &CredentialService,
    outbound: &Outbound,
    tenant: &Tenant,
    purpose: &Purpose,
) -> Result<UsableCredential<GoogleCalendarCredential>, ApiError> {
    outbound
        .usage
        .admit(tenant.org_id, Guarded::ProviderCall)
        .await?;
    Ok(service
        .get_payload::<GoogleCalendarCredential>(tenant, purpose)
        .await?)
}

/// After Google answered `error` for `credential`: a refusal of the credential itself drops its cached access
/// token and marks it failed (a legacy fallback has no id and is left alone).
pub async fn after_refusal(
    service: &CredentialService,
    outbound: &Outbound,
    tenant: &Tenant,
    credential: &UsableCredential<GoogleCalendarCredential>,
    error: &ProviderError,
) {
    if error.is_credential_failure() {
        outbound
            .providers
            .google
            .forget_token(&credential.payload)
            .await;
    }
    mark_refused(service, tenant, credential.credential_id, error).await;
}

/// Stores the refresh token Google rotated to during a call made for `purpose` (same credential, audited as
/// `updated`). A failure is logged: the call's answer stands.
pub async fn store_rotated(
    service: &CredentialService,
    tenant: &Tenant,
    credential_id: Option<CredentialId>,
    rotated: Option<&GoogleCalendarCredential>,
    purpose: &Purpose,
) {
    let (Some(rotated), Some(id)) = (rotated, credential_id) else {
        return;
    };
    match service
        .store_rotated_refresh_token(tenant, id, rotated, purpose)
        .await
    {
        Ok(Some(_)) => tracing::info!(
            org_id = %tenant.org_id,
            credential_id = %id,
            purpose = %purpose,
            "Google rotated the refresh token during a calendar call; the new one is stored"
        ),
        Ok(None) => {}
        Err(error) => tracing::warn!(
            org_id = %tenant.org_id,
            credential_id = %id,
            error = %CauseChain(&error),
            "Google rotated the refresh token during a calendar call and it could not be stored; reconnect Google Calendar if Google later refuses the stored token"
        ),
    }
}
