//! `POST /api/sms/test`: sends the hot-lead alert text with the organization's own Twilio credential, through
//! [`send_hot_lead_alert`], which `POST /api/leads` uses too.

use actix_web::{post, web};
use byoc_credential_types::E164Phone;

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{SmsResult, SmsTestRequest};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::plumbing::extract::ApiJson;
use crate::startup::state::AppState;
use crate::usecases::alerts::{send_hot_lead_alert, TEST_LEAD_NAME};

/// Sends the hot-lead alert text to `to` with the organization's own verified Twilio credential. Every member.
#[utoipa::path(
    post,
    path = "/api/sms/test",
    tag = "usage",
    request_body = SmsTestRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Twilio accepted the message", body = SmsResult),
        (status = 400, description = "Malformed JSON, wrong type, unknown or missing field", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 409, description = "No usable Twilio credential (credential_not_configured)", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 422, description = "`to` is not a valid E.164 phone number", body = ErrorBody),
        (status = 424, description = "Twilio refused (its code and message are carried)", body = ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/sms/test")]
pub async fn send_test_sms(
    caller: Caller,
    body: ApiJson<SmsTestRequest>,
    state: web::Data<AppState>,
) -> Result<web::Json<SmsResult>, ApiError> {
    caller.require(Permission::Use)?;
    let to = E164Phone::parse_dialable("to", body.0.to.trim())?;
    let sent = send_hot_lead_alert(
        &state.credential_service,
        &state.outbound,
        &caller.tenant,
        to,
        TEST_LEAD_NAME,
        "sms:test",
    )
    .await?;
    Ok(web::Json(sent))
}
