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
use byoc_credential_types::GoogleCalendarCredential;
use byoc_providers::{AvailabilityRequest, CalendarAvailability};
use chrono::Utc;
use serde::Deserialize;

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{AvailabilityQuery, AvailabilityResponse, TimeSlot};
use crate::plumbing::error::{ApiError, CauseChain, ErrorBody};
use crate::startup::state::AppState;
use crate::usecases::outbound::purpose;
use crate::usecases::refused_use::mark_refused;
use crate::usecases::usage::Guarded;

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
    let use_purpose = purpose("calendar:availability")?;
    outbound
        .usage
        .admit(tenant.org_id, Guarded::ProviderCall)
        .await?;
    let credential = state
        .credential_service
        .get_payload::<GoogleCalendarCredential>(tenant, &use_purpose)
        .await
        .map_err(ApiError::from)?;
    let google = &outbound.providers.google;
    let result = google.free_slots(&credential.payload, &request).await;
    outbound
        .usage
        .record(tenant, CredentialType::GoogleCalendar, result.is_ok())
        .await;
    let availability = match result {
        Ok(availability) => availability,
        Err(error) => {
            if error.is_credential_failure() {
                google.forget_token(&credential.payload).await;
            }
            mark_refused(
                &state.credential_service,
                tenant,
                credential.credential_id,
                &error,
            )
            .await;
            return Err(ApiError::from(error));
        }
    };
    if let (Some(rotated), Some(id)) = (&availability.updated_credential, credential.credential_id)
    {
        match state
            .credential_service
            .store_rotated_refresh_token(tenant, id, rotated, &use_purpose)
            .await
        {
            Ok(Some(_)) => tracing::info!(
                org_id = %tenant.org_id,
                credential_id = %id,
                "Google rotated the refresh token during an availability check; the new one is stored"
            ),
            Ok(None) => {}
            Err(error) => tracing::warn!(
                org_id = %tenant.org_id,
                credential_id = %id,
                error = %CauseChain(&error),
                "Google rotated the refresh token during an availability check and it could not be stored; reconnect Google Calendar if Google later refuses the stored token"
            ),
        }
    }
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
