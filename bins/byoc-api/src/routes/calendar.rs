//! `GET /api/calendar/availability?date&duration&timeZone`: free slots in business hours from the
//! organization's Google Calendar (free/busy), with the organization's stored OAuth client and refresh token.
//!
//! Access tokens are cached by the Google client until shortly before they expire. A refresh that Google
//! answers `invalid_grant` (revoked, expired, password changed) marks the credential `failed` with "reconnect
//! Google Calendar" and answers 424; its cached token is dropped.
//!
//! A refresh that Google answers with a **new refresh token** (rotation) is stored before the slots are
//! returned, through
//! [`CredentialService::store_rotated_refresh_token`](byoc_credential_store::CredentialService): same
//! credential id, re-sealed under the active key version, cache dropped, audited as `updated` ("refresh
//! token rotated by Google"). Any member may run the check, so that write is one members and services may
//! make, and only that one: replacing the envelope of the organization's active Google Calendar credential
//! while it still holds the envelope just read (see docs/credential-service.md). The old access token stays
//! cached under the old refresh token until it expires, so requests still holding the old credential keep
//! working instead of refreshing with a token Google may have retired. A failure to store is logged and the
//! slots are still answered.

use actix_web::{get, web};
use byoc_credential_store::CredentialType;
use byoc_providers::{AvailabilityRequest, CalendarAvailability};
use chrono::Utc;
use serde::Deserialize;

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{AvailabilityQuery, AvailabilityResponse, TimeSlot};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::startup::state::AppState;
use crate::usecases::calendar_use::{after_refusal, google_credential, store_rotated};
use crate::usecases::outbound::purpose;

/// The query as sent (parsed by [`AvailabilityRequest::parse`], so a bad value answers 422 naming it).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAvailabilityQuery {
    date: String,
    duration: String,
    #[serde(default)]
    time_zone: Option<String>,
}

/// Free slots of `duration` minutes on `date` from the organization's Google Calendar. Every member.
#[utoipa::path(
    get,
    path = "/api/calendar/availability",
    tag = "usage",
    params(AvailabilityQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Free slots in business hours (09:00-17:00 local)", body = AvailabilityResponse),
        (status = 400, description = "A query parameter is missing or unknown", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 409, description = "No usable Google Calendar credential (credential_not_configured)", body = ErrorBody),
        (status = 422, description = "Invalid date, duration or timeZone (named in the message)", body = ErrorBody),
        (status = 424, description = "Google refused (e.g. invalid_grant: reconnect Google Calendar)", body = ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/calendar/availability")]
pub async fn availability(
    caller: Caller,
    query: web::Query<RawAvailabilityQuery>,
    state: web::Data<AppState>,
) -> Result<web::Json<AvailabilityResponse>, ApiError> {
    caller.require(Permission::Use)?;
    let request =
        AvailabilityRequest::parse(&query.date, &query.duration, query.time_zone.as_deref())?;
    let tenant = &caller.tenant;
    let outbound = &state.outbound;
    let service = &state.credential_service;
    let use_purpose = purpose("calendar:availability")?;
    let credential = google_credential(service, outbound, tenant, &use_purpose).await?;
    let result = outbound
        .providers
        .google
        .free_slots(&credential.payload, &request)
        .await;
    outbound
        .usage
        .record(tenant, CredentialType::GoogleCalendar, result.is_ok())
        .await;
    let availability = match result {
        Ok(availability) => availability,
        Err(error) => {
            after_refusal(service, outbound, tenant, &credential, &error).await;
            return Err(ApiError::from(error));
        }
    };
    store_rotated(
        service,
        tenant,
        credential.credential_id,
        availability.updated_credential.as_ref(),
        &use_purpose,
    )
    .await;
    Ok(web::Json(AvailabilityResponse {
        slots: availability
            .slots
            .into_iter()
            .map(|slot| TimeSlot {
                start: slot.start.with_timezone(&Utc),
                end: slot.end.with_timezone(&Utc),
            })
            .collect(),
    }))
}
