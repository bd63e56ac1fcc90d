//! `POST /api/sms/test`: sends the hot-lead alert text with the organization's own Twilio credential, and
//! [`send_hot_lead_alert`], which `POST /api/leads` uses too.
//!
//! Each message: the SMS and provider-call rate limits are taken (429 with `Retry-After` before anything is
//! sent), the Twilio credential is read through the credential service with its purpose (409
//! `credential_not_configured` when the organization has no active, verified one and no legacy fallback),
//! Twilio is asked with the message's status callback `{BYOC_PUBLIC_URL}/api/webhooks/twilio/status?org=ORG`,
//! the call is counted, and the accepted message is recorded (`sms_messages`: masked recipient, purpose,
//! status, sent time) so the status webhook can stamp its delivery (both queued while the database is
//! unavailable, see [`crate::write_behind`]). A refusal that says the credential itself
//! is unusable marks it `failed`.

use std::time::Instant;

use actix_web::{post, web};
use byoc_credential_store::{
    CredentialType, DeliveryStatus, MaskedPhone, NewSmsMessage, ProviderMessageSid, Tenant,
};
use byoc_credential_types::{E164Phone, TwilioCredential};
use byoc_providers::{OutboundSms, SmsSender};
use chrono::Utc;
use url::Url;

use crate::caller::{Caller, Permission};
use crate::dto::{SmsResult, SmsTestRequest};
use crate::error::{ApiError, CauseChain, ErrorBody};
use crate::extract::ApiJson;
use crate::outbound::purpose;
use crate::state::AppState;
use crate::usage::Guarded;
use crate::write_behind::DeferredWrite;

/// The webhook path Twilio posts delivery statuses to.
pub const STATUS_CALLBACK_PATH: &str = "/api/webhooks/twilio/status";
/// The lead name used in the text of a test SMS.
pub const TEST_LEAD_NAME: &str = "Test Lead";

/// The plan's hot-lead alert text.
pub fn hot_lead_text(lead_name: &str) -> String {
    format!("🔥 Hot Lead! {lead_name} just expressed high interest in booking.")
}

/// The status-callback URL of an organization's messages: `BYOC_PUBLIC_URL` + the webhook path + `?org=ORG`
/// (Twilio signs this exact URL; the webhook rebuilds it the same way).
pub fn status_callback_url(
    public_url: &Url,
    org_id: byoc_credential_store::OrgId,
) -> Result<Url, ApiError> {
    let mut url = public_url
        .join(STATUS_CALLBACK_PATH.trim_start_matches('/'))
        .map_err(|error| ApiError::internal(&error))?;
    url.set_query(Some(&format!("org={org_id}")));
    Ok(url)
}

/// Sends the hot-lead alert about `lead_name` to `to` with the organization's Twilio credential, read for
/// `purpose_text` (`sms:test` or `sms:hot_lead`).
pub async fn send_hot_lead_alert(
    state: &AppState,
    tenant: &Tenant,
    to: E164Phone,
    lead_name: &str,
    purpose_text: &'static str,
) -> Result<SmsResult, ApiError> {
    let outbound = &state.outbound;
    outbound.usage.admit(tenant.org_id, Guarded::Sms)?;
    let purpose = purpose(purpose_text)?;
    let credential = state
        .credential_service
        .get_payload::<TwilioCredential>(tenant, &purpose)
        .await
        .map_err(ApiError::from)?;
    let message = OutboundSms::new(to.clone(), hot_lead_text(lead_name))?
        .with_status_callback(status_callback_url(&outbound.public_url, tenant.org_id)?);
    let started = Instant::now();
    let result = outbound
        .providers
        .twilio
        .send_sms(&credential.payload, &message)
        .await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    outbound
        .usage
        .record(tenant, CredentialType::Twilio, result.is_ok())
        .await;
    let sent = match result {
        Ok(sent) => sent,
        Err(error) => {
            tracing::info!(
                org_id = %tenant.org_id,
                purpose = purpose_text,
                provider_code = error.provider_code().unwrap_or("none"),
                elapsed_ms,
                "SMS refused"
            );
            if error.is_credential_failure() {
                if let Some(id) = credential.credential_id {
                    if let Err(record_error) = state
                        .credential_service
                        .record_refused_use(tenant, id, error.to_string())
                        .await
                    {
                        tracing::warn!(error = %CauseChain(&record_error), "cannot mark the Twilio credential failed");
                    }
                }
            }
            return Err(ApiError::from(error));
        }
    };
    tracing::info!(
        org_id = %tenant.org_id,
        purpose = purpose_text,
        message_sid = %sent.sid,
        status = %sent.status,
        legacy_fallback = credential.legacy_fallback,
        elapsed_ms,
        "SMS accepted by Twilio"
    );
    let record = NewSmsMessage {
        credential_id: credential.credential_id,
        provider_message_sid: ProviderMessageSid::parse(&sent.sid)?,
        to_masked: MaskedPhone::parse(&to.masked())?,
        purpose,
        status: DeliveryStatus::parse(&sent.status)?,
        sent_at: Utc::now(),
    };
    outbound
        .writes
        .submit(DeferredWrite::SentSms {
            tenant: tenant.clone(),
            record,
        })
        .await;
    Ok(SmsResult {
        sid: sent.sid,
        status: sent.status,
    })
}

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
    let sent = send_hot_lead_alert(&state, &caller.tenant, to, TEST_LEAD_NAME, "sms:test").await?;
    Ok(web::Json(sent))
}
