//! `/api/organization/credentials…`: list, add, verify, deactivate and purge an organization's credentials.
//!
//! Role rules (the contract's table): every member lists; admins and owners add, verify and deactivate;
//! only owners purge. Another organization's credential answers 404 exactly like a missing one.

use actix_web::http::StatusCode;
use actix_web::{delete, get, post, web, HttpResponse};
use byoc_credential_store::{CredentialId, CredentialServiceError, CredentialType, DisplayName};
use byoc_credential_types::CredentialPayload;
use uuid::Uuid;

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{
    AddGoogleCalendarRequest, AddHubSpotRequest, AddStripeRequest, AddTwilioRequest, CredentialRow,
    DeleteQuery, DeleteResponse, VerifyResponse,
};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::plumbing::extract::ApiJson;
use crate::plumbing::metrics::Metrics;
use crate::startup::state::AppState;
use crate::usecases::usage::Guarded;
use crate::usecases::verification;

/// Lists the organization's credentials (metadata only, newest first; never a secret). Every member.
#[utoipa::path(
    get,
    path = "/api/organization/credentials",
    tag = "credentials",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The organization's credentials", body = [CredentialRow]),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/organization/credentials")]
pub async fn list_credentials(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<CredentialRow>>, ApiError> {
    caller.require(Permission::Use)?;
    let credentials = state.credential_service.list(&caller.tenant).await?;
    Ok(web::Json(
        credentials.into_iter().map(CredentialRow::from).collect(),
    ))
}

/// Stores a Twilio credential, encrypted, as `pending`. Admins and owners.
#[utoipa::path(
    post,
    path = "/api/organization/credentials/twilio",
    tag = "credentials",
    request_body = AddTwilioRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored; verify it next", body = CredentialRow),
        (status = 400, description = "Malformed JSON, wrong type, unknown or missing field", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member, or a member without the admin role", body = ErrorBody),
        (status = 409, description = "A Twilio credential with this display name exists", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/organization/credentials/twilio")]
pub async fn add_twilio(
    caller: Caller,
    body: ApiJson<AddTwilioRequest>,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Manage)?;
    let (credential, display_name) = body.0.into_parts()?;
    store_new(
        &caller,
        &state,
        &metrics,
        CredentialType::Twilio,
        &credential,
        display_name,
    )
    .await
}

/// Stores a Google Calendar credential (OAuth client and refresh token), encrypted, as `pending`. Admins and
/// owners.
#[utoipa::path(
    post,
    path = "/api/organization/credentials/google_calendar",
    tag = "credentials",
    request_body = AddGoogleCalendarRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored; verify it next", body = CredentialRow),
        (status = 400, description = "Malformed JSON, wrong type, unknown or missing field", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member, or a member without the admin role", body = ErrorBody),
        (status = 409, description = "A Google Calendar credential with this display name exists", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/organization/credentials/google_calendar")]
pub async fn add_google_calendar(
    caller: Caller,
    body: ApiJson<AddGoogleCalendarRequest>,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Manage)?;
    let (credential, display_name) = body.0.into_parts()?;
    store_new(
        &caller,
        &state,
        &metrics,
        CredentialType::GoogleCalendar,
        &credential,
        display_name,
    )
    .await
}

/// Stores a Stripe secret or restricted key, encrypted, as `pending`. Admins and owners.
#[utoipa::path(
    post,
    path = "/api/organization/credentials/stripe",
    tag = "credentials",
    request_body = AddStripeRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored; verify it next", body = CredentialRow),
        (status = 400, description = "Malformed JSON, wrong type, unknown or missing field", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member, or a member without the admin role", body = ErrorBody),
        (status = 409, description = "A Stripe credential with this display name exists", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/organization/credentials/stripe")]
pub async fn add_stripe(
    caller: Caller,
    body: ApiJson<AddStripeRequest>,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Manage)?;
    let (credential, display_name) = body.0.into_parts()?;
    store_new(
        &caller,
        &state,
        &metrics,
        CredentialType::Stripe,
        &credential,
        display_name,
    )
    .await
}

/// Stores a HubSpot private-app access token, encrypted, as `pending`. Admins and owners.
#[utoipa::path(
    post,
    path = "/api/organization/credentials/hubspot",
    tag = "credentials",
    request_body = AddHubSpotRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored; verify it next", body = CredentialRow),
        (status = 400, description = "Malformed JSON, wrong type, unknown or missing field", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member, or a member without the admin role", body = ErrorBody),
        (status = 409, description = "A HubSpot credential with this display name exists", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/organization/credentials/hubspot")]
pub async fn add_hubspot(
    caller: Caller,
    body: ApiJson<AddHubSpotRequest>,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Manage)?;
    let (credential, display_name) = body.0.into_parts()?;
    store_new(
        &caller,
        &state,
        &metrics,
        CredentialType::HubSpot,
        &credential,
        display_name,
    )
    .await
}

/// Verifies a credential with its provider and records the outcome. Admins and owners; per organization at
/// most `BYOC_VERIFY_PER_MINUTE` a minute (429 with `Retry-After` beyond, before the provider is asked).
#[utoipa::path(
    post,
    path = "/api/organization/credentials/{id}/verify",
    tag = "credentials",
    params(("id" = Uuid, Path, description = "The credential id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The provider's verdict (recorded on the credential)", body = VerifyResponse),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member, or a member without the admin role", body = ErrorBody),
        (status = 404, description = "No such credential in this organization", body = ErrorBody),
        (status = 409, description = "The credential is deactivated", body = ErrorBody),
        (status = 424, description = "The provider could not be reached; nothing recorded", body = ErrorBody),
        (status = 429, description = "Too many verifications for this organization (BYOC_VERIFY_PER_MINUTE), or the provider rate limited the check; Retry-After", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/organization/credentials/{id:[0-9a-fA-F-]+}/verify")]
pub async fn verify_credential(
    caller: Caller,
    id: web::Path<Uuid>,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<web::Json<VerifyResponse>, ApiError> {
    caller.require(Permission::Manage)?;
    state
        .outbound
        .usage
        .admit(caller.tenant.org_id, Guarded::Verification)
        .await?;
    let verification = verification::verify_credential(
        &state.credential_service,
        &state.verifiers,
        &caller.tenant,
        CredentialId::from_uuid(id.into_inner()),
    )
    .await?;
    metrics.credential_operation(
        "verified",
        verification.metadata.credential_type.as_str(),
        if verification.verified {
            "ok"
        } else {
            "refused"
        },
    );
    Ok(web::Json(VerifyResponse {
        verified: verification.verified,
        verification_status: verification.metadata.verification_status.into(),
        verification_error: verification.metadata.verification_error,
    }))
}

/// Deactivates a credential (admins and owners), or with `?purge=true` deletes it and its ciphertext for good
/// (owners only; its audit entries stay).
#[utoipa::path(
    delete,
    path = "/api/organization/credentials/{id}",
    tag = "credentials",
    params(("id" = Uuid, Path, description = "The credential id"), DeleteQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Deactivated (or purged)", body = DeleteResponse),
        (status = 400, description = "Unreadable query string", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Role does not allow this (purge needs owner)", body = ErrorBody),
        (status = 404, description = "No such credential in this organization", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[delete("/api/organization/credentials/{id:[0-9a-fA-F-]+}")]
pub async fn delete_credential(
    caller: Caller,
    id: web::Path<Uuid>,
    query: web::Query<DeleteQuery>,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<web::Json<DeleteResponse>, ApiError> {
    let id = CredentialId::from_uuid(id.into_inner());
    if query.purge {
        caller.require(Permission::Purge)?;
        state.credential_service.purge(&caller.tenant, id).await?;
        metrics.credential_operation("purged", "any", "ok");
    } else {
        caller.require(Permission::Manage)?;
        let metadata = state
            .credential_service
            .deactivate(&caller.tenant, id)
            .await?;
        metrics.credential_operation("deactivated", metadata.credential_type.as_str(), "ok");
    }
    Ok(web::Json(DeleteResponse { success: true }))
}

/// Counts a credential operation by its outcome and turns the service's error into the API's.
/// Stores `credential` for the caller's organization as `pending`, counts the creation, and answers 201
/// with its row: the body of every add handler once the caller's role and the request are checked.
async fn store_new<P: CredentialPayload>(
    caller: &Caller,
    state: &AppState,
    metrics: &Metrics,
    credential_type: CredentialType,
    credential: &P,
    display_name: DisplayName,
) -> Result<HttpResponse, ApiError> {
    let stored = state
        .credential_service
        .store(&caller.tenant, credential, display_name)
        .await;
    let metadata = counted(metrics, "created", credential_type, stored)?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(CredentialRow::from(metadata)))
}

fn counted<T>(
    metrics: &Metrics,
    operation: &str,
    credential_type: CredentialType,
    result: Result<T, CredentialServiceError>,
) -> Result<T, ApiError> {
    metrics.credential_operation(
        operation,
        credential_type.as_str(),
        if result.is_ok() { "ok" } else { "error" },
    );
    Ok(result?)
}
