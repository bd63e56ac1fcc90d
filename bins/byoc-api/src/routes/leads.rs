//! `POST /api/leads`: a scored lead. A score at or above the organization's hot-lead threshold (default 80,
//! set per organization) sends the hot-lead alert SMS with the organization's own Twilio credential; below
//! it nothing is sent. The answer says which happened.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpResponse};
use byoc_credential_types::E164Phone;

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{LeadRequest, LeadResponse};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::plumbing::extract::ApiJson;
use crate::startup::state::AppState;
use crate::usecases::alerts::send_hot_lead_alert;

/// The highest lead score.
pub const MAX_SCORE: u8 = 100;
/// The longest lead name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Records a scored lead; a hot one triggers the hot-lead SMS. Every member.
#[utoipa::path(
    post,
    path = "/api/leads",
    tag = "usage",
    request_body = LeadRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Scored; `sms` is the alert sent for a hot lead, else null", body = LeadResponse),
        (status = 400, description = "Malformed JSON, wrong type, unknown or missing field", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 409, description = "A hot lead, but no usable Twilio credential (credential_not_configured)", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 422, description = "Invalid name, score or notifyPhone (named in the message)", body = ErrorBody),
        (status = 424, description = "Twilio refused the alert (its code and message are carried)", body = ErrorBody),
        (status = 429, description = "Rate limited (Retry-After)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/leads")]
pub async fn create_lead(
    caller: Caller,
    body: ApiJson<LeadRequest>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Use)?;
    let lead = body.0;
    let name = lead.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid_field(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters and not blank"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "name",
            "must not contain control characters",
        ));
    }
    if lead.score > MAX_SCORE {
        return Err(ApiError::invalid_field(
            "score",
            format!("must be from 0 to {MAX_SCORE}"),
        ));
    }
    let notify_phone = E164Phone::parse_dialable("notifyPhone", lead.notify_phone.trim())?;
    let organization = state
        .credential_service
        .organization(&caller.tenant)
        .await
        .map_err(ApiError::from)?;
    let hot = lead.score >= organization.hot_lead_threshold.get();
    let sms = if hot {
        Some(
            send_hot_lead_alert(
                &state.credential_service,
                &state.outbound,
                &caller.tenant,
                notify_phone,
                name,
                "sms:hot_lead",
            )
            .await?,
        )
    } else {
        None
    };
    tracing::info!(org_id = %caller.tenant.org_id, score = lead.score, threshold = organization.hot_lead_threshold.get(), hot, "lead scored");
    Ok(HttpResponse::build(StatusCode::CREATED).json(LeadResponse { hot, sms }))
}
