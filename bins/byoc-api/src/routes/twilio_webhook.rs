//! `POST /api/webhooks/twilio/status`: Twilio's message status callback.
//!
//! byoc sends every message with the status callback `{BYOC_PUBLIC_URL}/api/webhooks/twilio/status?org=ORG`,
//! so the organization is named in the URL Twilio signs. The webhook reads that organization's Twilio
//! credential through the credential service (purpose `webhook:twilio_status`), rebuilds the exact signed URL
//! from `BYOC_PUBLIC_URL`, and checks `X-Twilio-Signature` (HMAC-SHA1 keyed by the auth token, constant-time)
//! before trusting anything in the form; the form's `AccountSid` must be that credential's account. A missing
//! or unknown organization, an organization without a usable Twilio credential, a bad signature or another
//! account answers 403 and records nothing. A valid callback records the message's status and its time
//! (`delivered` also stamps `delivered_at`, so send-to-delivery time is measurable).

use actix_web::{post, web, HttpRequest};
use byoc_credential_store::{
    DeliveryStatus, OrgId, ProviderErrorCode, ProviderMessageSid, ServiceName, SmsStatusUpdate,
    StoreError, Tenant,
};
use byoc_providers::{validate_signature, StatusCallback, TwilioCredential};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::outbound::purpose;
use crate::routes::sms::status_callback_url;
use crate::state::AppState;

/// The service principal the webhook acts as (audit actor `service:twilio-webhook`).
pub const WEBHOOK_SERVICE: &str = "twilio-webhook";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The webhook's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusRecorded {
    /// False when the message is not one this organization sent through byoc (nothing to update).
    pub recorded: bool,
}

fn organization(request: &HttpRequest) -> Option<OrgId> {
    url::form_urlencoded::parse(request.query_string().as_bytes())
        .find(|(name, _)| name == "org")
        .and_then(|(_, value)| value.parse::<OrgId>().ok())
}

/// Records a message's delivery status after checking Twilio's signature with the organization's auth token.
#[utoipa::path(
    post,
    path = "/api/webhooks/twilio/status",
    tag = "usage",
    params(("org" = uuid::Uuid, Query, description = "The organization that sent the message (part of the signed URL)")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's status callback form (MessageSid, MessageStatus, AccountSid, ErrorCode, …)"),
    responses(
        (status = 200, description = "Recorded (or not a message of this organization)", body = StatusRecorded),
        (status = 400, description = "The signed form lacks or garbles a parameter (named in the message)", body = ErrorBody),
        (status = 403, description = "Missing or invalid X-Twilio-Signature for the organization's auth token", body = ErrorBody),
        (status = 413, description = "Form larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/x-www-form-urlencoded", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/webhooks/twilio/status")]
pub async fn twilio_status(
    request: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
    state: web::Data<AppState>,
) -> Result<web::Json<StatusRecorded>, ApiError> {
    let org_id = organization(&request).ok_or_else(ApiError::invalid_signature)?;
    let service =
        ServiceName::parse(WEBHOOK_SERVICE).map_err(|error| ApiError::internal(&error))?;
    let tenant = Tenant::service(org_id, service);
    let params = form.into_inner();
    let credential = match state
        .credential_service
        .get_payload::<TwilioCredential>(&tenant, &purpose("webhook:twilio_status")?)
        .await
    {
        Ok(credential) => credential,
        Err(error) => {
            tracing::info!(org_id = %org_id, error = %error, "Twilio status callback for an organization without a usable Twilio credential");
            return Err(ApiError::invalid_signature());
        }
    };
    let url = status_callback_url(&state.outbound.public_url, org_id)?;
    let signature = request
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    if let Err(error) = validate_signature(
        &credential.payload.auth_token,
        url.as_str(),
        &params,
        signature,
    ) {
        tracing::warn!(org_id = %org_id, error = %error, "Twilio status callback refused");
        return Err(ApiError::invalid_signature());
    }
    let callback = StatusCallback::from_params(&params)
        .map_err(|error| ApiError::malformed(format!("{}: {}", error.field, error.reason)))?;
    if callback.account_sid != credential.payload.account_sid {
        tracing::warn!(org_id = %org_id, "Twilio status callback for another account");
        return Err(ApiError::invalid_signature());
    }
    let update = SmsStatusUpdate {
        provider_message_sid: ProviderMessageSid::parse(&callback.message_sid)?,
        status: DeliveryStatus::parse(&callback.status)?,
        error_code: callback
            .error_code
            .as_deref()
            .map(ProviderErrorCode::parse)
            .transpose()?,
        at: Utc::now(),
    };
    match state.repository.update_sms_status(&tenant, &update).await {
        Ok(message) => {
            let delivery_ms = message
                .delivered_at
                .map(|delivered| (delivered - message.sent_at).num_milliseconds());
            tracing::info!(
                org_id = %org_id,
                message_sid = %message.provider_message_sid,
                status = %message.status,
                delivery_ms,
                "SMS status recorded"
            );
            Ok(web::Json(StatusRecorded { recorded: true }))
        }
        Err(StoreError::NotFound { .. }) => {
            tracing::info!(org_id = %org_id, "Twilio status callback for a message byoc did not record");
            Ok(web::Json(StatusRecorded { recorded: false }))
        }
        Err(error) => Err(error.into()),
    }
}
