//! Sending the hot-lead alert SMS with the organization's own Twilio credential ([`send_hot_lead_alert`], used
//! by `POST /api/sms/test` and `POST /api/leads`), and the status-callback URL its messages carry.
//!
//! Each message: the SMS and provider-call rate limits are taken (429 with `Retry-After` before anything is
//! sent), the Twilio credential is read through the credential service with its purpose (409
//! `credential_not_configured` when the organization has no active, verified one and no legacy fallback),
//! Twilio is asked with the message's status callback `{BYOC_PUBLIC_URL}/api/webhooks/twilio/status?org=ORG`,
//! the call is counted, and the accepted message is recorded (`sms_messages`: masked recipient, purpose,
//! status, sent time) so the status webhook can stamp its delivery (both queued while the database is
//! unavailable, see [`crate::usecases::write_behind`]). A refusal that says the credential itself is unusable
//! marks it `failed` ([`crate::usecases::refused_use`]).

use std::time::Instant;

use byoc_credential_store::{
    CredentialService, CredentialType, DeliveryStatus, MaskedPhone, NewSmsMessage, OrgId,
    ProviderMessageSid, Tenant,
};
use byoc_credential_types::{E164Phone, TwilioCredential};
use byoc_providers::{OutboundSms, SmsSender};
use chrono::Utc;
use url::Url;

use crate::plumbing::dto::SmsResult;
use crate::plumbing::error::ApiError;
use crate::usecases::outbound::{purpose, Outbound};
use crate::usecases::refused_use::mark_refused;
use crate::usecases::usage::Guarded;
use crate::usecases::write_behind::DeferredWrite;

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
pub fn status_callback_url(public_url: &Url, org_id: OrgId) -> Result<Url, ApiError> {
    let mut url = public_url
        .join(STATUS_CALLBACK_PATH.trim_start_matches('/'))
        .map_err(|error| ApiError::internal(&error))?;
    url.set_query(Some(&format!("org={org_id}")));
    Ok(url)
}

/// Sends the hot-lead alert about `lead_name` to `to` with the organization's Twilio credential, read for
/// `purpose_text` (`sms:test` or `sms:hot_lead`).
pub async fn send_hot_lead_alert(
    credential_service: &CredentialService,
    outbound: &Outbound,
    tenant: &Tenant,
    to: E164Phone,
    lead_name: &str,
    purpose_text: &'static str,
) -> Result<SmsResult, ApiError> {
    outbound.usage.admit(tenant.org_id, Guarded::Sms).await?;
    let purpose = purpose(purpose_text)?;
    let credential = credential_service
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
            mark_refused(credential_service, tenant, credential.credential_id, &error).await;
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
