//! `POST /api/calendar/bookings` and `DELETE /api/calendar/bookings/{eventId}`: booking and cancelling
//! appointments on the organization's Google Calendar (every member; see [`crate::usecases::booking`] for
//! idempotency and what stays racy between free/busy and insert).

use actix_web::{delete, post, web, HttpRequest, HttpResponse};
use byoc_providers::EventId;

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{BookingBody, BookingResponse, DeleteResponse};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::plumbing::extract::ApiJson;
use crate::startup::state::AppState;
use crate::usecases::booking;

/// The request header that names one booking across retries.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The longest idempotency key, in characters.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// The request's `Idempotency-Key`: 1 to 255 printable ASCII characters.
fn idempotency_key(request: &HttpRequest) -> Result<String, ApiError> {
    let value = request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(ApiError::idempotency_key_required)?;
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| {
            (1..=MAX_IDEMPOTENCY_KEY_CHARS).contains(&key.len())
                && key.bytes().all(|byte| (b' '..=b'~').contains(&byte))
        })
        .ok_or_else(|| {
            ApiError::invalid_field(
                IDEMPOTENCY_KEY,
                "must be 1 to 255 printable ASCII characters",
            )
        })?;
    Ok(key.to_owned())
}

/// Books an appointment on the organization's Google Calendar when free/busy shows the interval free. Every
/// member. A retry with the same `Idempotency-Key` books nothing more and answers the same body.
#[utoipa::path(
    post,
    path = "/api/calendar/bookings",
    tag = "usage",
    request_body = BookingBody,
    params(
        ("Idempotency-Key" = String, Header, description = "Names this booking across retries: 1 to 255 printable ASCII characters, the same on every retry (a new one for a new booking)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Booked (or, for a retry, the event the first attempt booked)", body = BookingResponse),
        (status = 400, description = "Malformed JSON, wrong type, unknown or missing field, or no Idempotency-Key", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 409, description = "slot_taken (something overlaps the interval), credential_not_configured (no usable Google Calendar credential) or calendar_reconnect_required (the connection may only read availability: reconnect Google Calendar)", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 422, description = "Invalid field or Idempotency-Key (named in the message), or idempotency_key_reused (the key booked another interval, or its booking was cancelled)", body = ErrorBody),
        (status = 424, description = "Google refused (e.g. invalid_grant: reconnect Google Calendar)", body = ErrorBody),
        (status = 429, description = "Rate limited by byoc (Retry-After)", body = ErrorBody),
        (status = 503, description = "Database unavailable, or Google rate limited or failed (provider_unavailable, Retry-After: repeat with the same Idempotency-Key)", body = ErrorBody),
    )
)]
#[post("/api/calendar/bookings")]
pub async fn book(
    request: HttpRequest,
    caller: Caller,
    body: ApiJson<BookingBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Use)?;
    let key = idempotency_key(&request)?;
    let booking = body.0.into_request()?;
    let event = booking::book(
        &state.credential_service,
        &state.outbound,
        &caller.tenant,
        &booking,
        &key,
    )
    .await?;
    Ok(HttpResponse::Created().json(BookingResponse::from(event)))
}

/// Cancels a booking (deletes its event from the organization's calendar; one already cancelled counts as
/// done). Every member.
#[utoipa::path(
    delete,
    path = "/api/calendar/bookings/{eventId}",
    tag = "usage",
    params(("eventId" = String, Path, description = "The booking's event id (base32hex: 0-9 and a-v, 5 to 1024 characters)", pattern = "^[0-9a-v]{5,1024}$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = DeleteResponse),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 404, description = "The organization's calendar has no such event", body = ErrorBody),
        (status = 409, description = "credential_not_configured or calendar_reconnect_required", body = ErrorBody),
        (status = 424, description = "Google refused", body = ErrorBody),
        (status = 429, description = "Rate limited by byoc (Retry-After)", body = ErrorBody),
        (status = 503, description = "Database unavailable, or Google rate limited or failed (provider_unavailable, Retry-After)", body = ErrorBody),
    )
)]
#[delete("/api/calendar/bookings/{event_id:[0-9a-v]+}")]
pub async fn cancel(
    caller: Caller,
    event_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<DeleteResponse>, ApiError> {
    caller.require(Permission::Use)?;
    let event_id = EventId::parse(&event_id).ok_or_else(|| ApiError::not_found("booking"))?;
    booking::cancel(
        &state.credential_service,
        &state.outbound,
        &caller.tenant,
        &event_id,
    )
    .await?;
    Ok(web::Json(DeleteResponse { success: true }))
}
