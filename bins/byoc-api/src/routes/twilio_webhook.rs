//! `POST /api/webhooks/twilio/status`: Twilio's message status callback.
//!
//! byoc sends every message with the status callback `{BYOC_PUBLIC_URL}/api/webhooks/twilio/status?org=ORG`,
//! so the organization is named in the URL Twilio signs. What can be refused without the secret is refused
//! first, before any credential is decrypted: a missing or garbled `org`, a missing `X-Twilio-Signature`, an
//! organization over its callback rate (`BYOC_TWILIO_WEBHOOK_PER_MINUTE`, 429 with `Retry-After`), an
//! organization without a usable Twilio credential, and an `AccountSid` other than the credential's stored
//! account id (its non-secret metadata). Only then is the auth token decrypted, through the credential service
//! (purpose `webhook:twilio_status`), to check the signature (HMAC-SHA1 over the URL rebuilt from
//! `BYOC_PUBLIC_URL` and the form, constant-time); the `read` is audited only when the signature holds, so
//! forged callbacks leave no trace in the organization's audit log. Every refusal answers 403
//! `invalid_signature` (429 for the rate) and is counted in `byoc_twilio_webhook_refusals_total{reason}`.
//!
//! A valid callback records the message's status and its time (`delivered` also stamps `delivered_at`, so
//! send-to-delivery time is measurable); a status older than the one recorded (Twilio's order: queued →
//! sending → sent → delivered / undelivered / failed) changes nothing.

use actix_web::{post, web, HttpRequest};
use byoc_credential_store::{
    CredentialType, DeliveryStatus, OrgId, ProviderErrorCode, ProviderMessageSid, ServiceName,
    SmsStatusUpdate, StoreError, Tenant,
};
use byoc_credential_types::TwilioCredential;
use byoc_providers::{validate_signature, StatusCallback};
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::plumbing::error::{ApiError, CauseChain, ErrorBody};
use crate::plumbing::metrics::{Metrics, WebhookRefusal};
use crate::startup::state::AppState;
use crate::usecases::alerts::status_callback_url;
use crate::usecases::outbound::purpose;
use crate::usecases::usage::Guarded;

/// The service principal the webhook acts as (audit actor `service:twilio-webhook`).
pub const WEBHOOK_SERVICE: &str = "twilio-webhook";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The webhook's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusRecorded {
    /// False when the message is not one this organization sent through byoc, or the status is older than the
    /// one recorded (nothing to update).
    pub recorded: bool,
}

fn organization(request: &HttpRequest) -> Option<OrgId> {
    url::form_urlencoded::parse(request.query_string().as_bytes())
        .find(|(name, _)| name == "org")
        .and_then(|(_, value)| value.parse::<OrgId>().ok())
}

/// The value of the form parameter `name`, trimmed.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.trim())
}

/// Records a message's delivery status after checking Twilio's signature with the organization's auth token.
#[utoipa::path(
    post,
    path = "/api/webhooks/twilio/status",
    tag = "usage",
    params(("org" = uuid::Uuid, Query, description = "The organization that sent the message (part of the signed URL)")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Twilio's status callback form (MessageSid, MessageStatus, AccountSid, ErrorCode, …)"),
    responses(
        (status = 200, description = "Recorded (or not a message of this organization, or an older status than the one recorded)", body = StatusRecorded),
        (status = 400, description = "The signed form lacks or garbles a parameter (named in the message)", body = ErrorBody),
        (status = 403, description = "Unknown organization, missing or invalid X-Twilio-Signature, no usable Twilio credential, or another account's AccountSid", body = ErrorBody),
        (status = 413, description = "Form larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/x-www-form-urlencoded", body = ErrorBody),
        (status = 429, description = "The organization's callbacks exceed BYOC_TWILIO_WEBHOOK_PER_MINUTE (Retry-After)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/webhooks/twilio/status")]
pub async fn twilio_status(
    request: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> Result<web::Json<StatusRecorded>, ApiError> {
    let refuse = |reason: WebhookRefusal| {
        metrics.twilio_webhook_refused(reason);
        ApiError::invalid_signature()
    };
    let org_id =
        organization(&request).ok_or_else(|| refuse(WebhookRefusal::UnknownOrganization))?;
    let signature = request
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| refuse(WebhookRefusal::MissingSignature))?;
    if let Err(limited) = state
        .outbound
        .usage
        .admit(org_id, Guarded::TwilioWebhook)
        .await
    {
        metrics.twilio_webhook_refused(WebhookRefusal::RateLimited);
        return Err(limited);
    }
    let service =
        ServiceName::parse(WEBHOOK_SERVICE).map_err(|error| ApiError::internal(&error))?;
    let tenant = Tenant::service(org_id, service);
    let params = form.into_inner();

    // Refused without the secret: the account the organization's credential belongs to is plain metadata.
    let stored_account = match state
        .credential_service
        .provider_account_id(&tenant, CredentialType::Twilio)
        .await
    {
        Ok(account) => account,
        Err(error) if error.is_database_unavailable() => return Err(ApiError::from(error)),
        Err(error) => {
            tracing::info!(org_id = %org_id, error = %CauseChain(&error), "Twilio status callback for an organization without a usable Twilio credential");
            return Err(refuse(WebhookRefusal::NoCredential));
        }
    };
    if let Some(stored) = stored_account {
        if param(&params, "AccountSid") != Some(stored.as_str()) {
            tracing::warn!(org_id = %org_id, "Twilio status callback for another account");
            return Err(refuse(WebhookRefusal::AccountMismatch));
        }
    }

    // Only now is the auth token decrypted; the read is audited only when the signature holds.
    let url = status_callback_url(&state.outbound.public_url, org_id)?;
    let checked = state
        .credential_service
        .get_payload_if::<TwilioCredential>(
            &tenant,
            &purpose("webhook:twilio_status")?,
            |credential| {
                validate_signature(
                    &credential.auth_token,
                    url.as_str(),
                    &params,
                    Some(signature),
                )
                .is_ok()
            },
        )
        .await;
    let credential = match checked {
        Ok(Some(credential)) => credential,
        Ok(None) => {
            tracing::warn!(org_id = %org_id, "Twilio status callback refused: the signature does not check out");
            return Err(refuse(WebhookRefusal::BadSignature));
        }
        Err(error) if error.is_database_unavailable() => return Err(ApiError::from(error)),
        Err(error) => {
            tracing::info!(org_id = %org_id, error = %CauseChain(&error), "Twilio status callback for an organization without a usable Twilio credential");
            return Err(refuse(WebhookRefusal::NoCredential));
        }
    };
    let callback = StatusCallback::from_params(&params)
        .map_err(|error| ApiError::malformed(format!("{}: {}", error.field, error.reason)))?;
    if callback.account_sid != credential.payload.account_sid {
        tracing::warn!(org_id = %org_id, "Twilio status callback for another account");
        return Err(refuse(WebhookRefusal::AccountMismatch));
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
            let recorded = message.status == update.status.as_str();
            let delivery_ms = message
                .delivered_at
                .map(|delivered| (delivered - message.sent_at).num_milliseconds());
            tracing::info!(
                org_id = %org_id,
                message_sid = %message.provider_message_sid,
                status = %message.status,
                reported = %update.status,
                recorded,
                delivery_ms,
                "SMS status recorded"
            );
            Ok(web::Json(StatusRecorded { recorded }))
        }
        Err(StoreError::NotFound { .. }) => {
            tracing::info!(org_id = %org_id, "Twilio status callback for a message byoc did not record");
            Ok(web::Json(StatusRecorded { recorded: false }))
        }
        Err(error) => Err(error.into()),
    }
}
