//! Sending SMS with an organization's own Twilio credential: the [`SmsSender`] trait and its message types.

use async_trait::async_trait;
use serde::Serialize;
use url::Url;

use byoc_credential_types::InvalidField;
use byoc_credential_types::{E164Phone, TwilioCredential};

use crate::error::ProviderError;

/// Twilio's limit on a message body, in characters.
pub const MAX_SMS_BODY_CHARS: usize = 1600;

/// A message to send: recipient, text and (optionally) a status-callback URL of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSms {
    to: E164Phone,
    body: String,
    status_callback: Option<Url>,
}

impl OutboundSms {
    /// A message to `to`; the body must be 1 to 1600 characters. Without
    /// [`with_status_callback`](Self::with_status_callback) the sender uses
    /// `{BYOC_PUBLIC_URL}/api/webhooks/twilio/status` when the public URL is configured.
    pub fn new(to: E164Phone, body: impl Into<String>) -> Result<Self, InvalidField> {
        let body = body.into();
        let length = body.chars().count();
        if body.trim().is_empty() || length > MAX_SMS_BODY_CHARS {
            return Err(InvalidField::new(
                "body",
                format!("must be 1 to {MAX_SMS_BODY_CHARS} characters"),
            ));
        }
        Ok(OutboundSms {
            to,
            body,
            status_callback: None,
        })
    }

    /// Uses `url` as this message's status callback (e.g. with a query naming the organization).
    pub fn with_status_callback(mut self, url: Url) -> Self {
        self.status_callback = Some(url);
        self
    }

    /// The recipient.
    pub fn to(&self) -> &E164Phone {
        &self.to
    }

    /// The text.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The message's own status callback, when set.
    pub fn status_callback(&self) -> Option<&Url> {
        self.status_callback.as_ref()
    }
}

/// Twilio accepted the message: its SID and initial status (`queued`, `sending`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentSms {
    /// The message SID (`SM…`).
    pub sid: String,
    /// Twilio's status at acceptance.
    pub status: String,
}

/// Sends an SMS with a given Twilio credential.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Sends `message` from the credential's phone number with the credential's account. Never retried once
    /// Twilio may have accepted it; see `docs/providers.md`.
    async fn send_sms(
        &self,
        credential: &TwilioCredential,
        message: &OutboundSms,
    ) -> Result<SentSms, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_length_is_bounded() {
        let to = E164Phone::parse("to", "+14155550123").expect("valid");
        assert!(OutboundSms::new(to.clone(), "hello").is_ok());
        assert_eq!(
            OutboundSms::new(to.clone(), "  ").expect_err("blank").field,
            "body"
        );
        assert!(OutboundSms::new(to.clone(), "x".repeat(MAX_SMS_BODY_CHARS)).is_ok());
        assert!(OutboundSms::new(to, "x".repeat(MAX_SMS_BODY_CHARS + 1)).is_err());
    }
}
