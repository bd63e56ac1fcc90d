//! Errors shared by every provider client. No variant ever carries a secret: provider messages are copied
//! only after the credential's secrets have been scrubbed from them.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;

use byoc_credential_types::{CredentialType, InvalidField};

/// Why a provider said no, in byoc's terms; the provider's own code and message travel beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The credential was not accepted (Twilio 20003, HTTP 401, Stripe/HubSpot authentication errors).
    Authentication,
    /// The credential authenticates but lacks a permission or scope the call needs.
    PermissionDenied,
    /// The Twilio account is not `active` (suspended or closed).
    AccountInactive,
    /// The configured sending number does not belong to the Twilio account.
    PhoneNumberNotOnAccount,
    /// The configured sending number belongs to the account but has no SMS capability.
    PhoneNumberCannotSendSms,
    /// The recipient is not a valid phone number (Twilio 21211).
    InvalidRecipient,
    /// A trial account may only send to verified numbers (Twilio 21608).
    UnverifiedRecipient,
    /// The recipient replied STOP (Twilio 21610).
    RecipientUnsubscribed,
    /// The recipient cannot receive SMS or is unreachable (Twilio 21614, 21612).
    RecipientUnreachable,
    /// Google refused the refresh token (`invalid_grant`, or no refresh token was issued): the user must
    /// connect Google Calendar again.
    ReconnectGoogleCalendar,
    /// The resource named by the credential (calendar, account) does not exist.
    NotFound,
    /// Any other refusal; see the provider's code and message.
    Other,
}

impl RefusalReason {
    /// A short English explanation for users.
    pub const fn describe(self) -> &'static str {
        match self {
            RefusalReason::Authentication => "authentication failed",
            RefusalReason::PermissionDenied => "permission denied",
            RefusalReason::AccountInactive => "the account is not active",
            RefusalReason::PhoneNumberNotOnAccount => {
                "the phone number does not belong to the account"
            }
            RefusalReason::PhoneNumberCannotSendSms => "the phone number cannot send SMS",
            RefusalReason::InvalidRecipient => "the recipient phone number is invalid",
            RefusalReason::UnverifiedRecipient => {
                "trial accounts can only send to verified phone numbers"
            }
            RefusalReason::RecipientUnsubscribed => "the recipient has unsubscribed (replied STOP)",
            RefusalReason::RecipientUnreachable => "the recipient cannot receive SMS",
            RefusalReason::ReconnectGoogleCalendar => "reconnect Google Calendar",
            RefusalReason::NotFound => "not found",
            RefusalReason::Other => "request refused",
        }
    }

    /// Whether this refusal says the stored credential itself is unusable (so its status should become
    /// `failed`), rather than something about one request.
    pub const fn is_credential_failure(self) -> bool {
        matches!(
            self,
            RefusalReason::Authentication
                | RefusalReason::PermissionDenied
                | RefusalReason::AccountInactive
                | RefusalReason::PhoneNumberNotOnAccount
                | RefusalReason::PhoneNumberCannotSendSms
                | RefusalReason::ReconnectGoogleCalendar
                | RefusalReason::NotFound
        )
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A provider refused a request: byoc's reason plus the provider's own code and message (secret-free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefusal {
    /// Which provider refused.
    pub provider: CredentialType,
    /// byoc's classification of the refusal.
    pub reason: RefusalReason,
    /// The provider's code (`21211`, `invalid_grant`, `INVALID_AUTHENTICATION`, ...).
    pub code: String,
    /// The provider's message.
    pub message: String,
    /// The HTTP status of the provider's answer, when there was one.
    pub http_status: Option<u16>,
    /// The provider's documentation link for this error (Twilio's `more_info`), when given.
    pub more_info: Option<String>,
}

impl fmt::Display for ProviderRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({} error {}: {})",
            self.provider, self.reason, self.provider, self.code, self.message
        )
    }
}

/// Everything a provider call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// An input or credential field is invalid; nothing was sent (HTTP 422 upstream).
    #[error("invalid {0}")]
    InvalidInput(#[from] InvalidField),
    /// The provider refused (HTTP 424 upstream, carrying the provider's code and message).
    #[error("{0}")]
    Refused(ProviderRefusal),
    /// The provider rate limited us and the retry budget is spent (HTTP 429 upstream).
    #[error("{provider} rate limited the request ({code}: {message})")]
    RateLimited {
        /// Which provider.
        provider: CredentialType,
        /// The provider's code (`20429`) or `http_429`.
        code: String,
        /// The provider's message.
        message: String,
        /// How long the provider asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The provider could not be reached or answered 5xx on a request that is safe to repeat later.
    #[error("{provider} is unavailable: {reason}")]
    Unavailable {
        /// Which provider.
        provider: CredentialType,
        /// What happened (connection refused, timeout, HTTP 503, ...).
        reason: String,
    },
    /// A non-idempotent request (an SMS) was sent but its answer was lost or was a 5xx: the provider may have
    /// accepted it, so it was not retried and must not be blindly repeated.
    #[error("{provider} may have accepted the request, its answer was lost: {reason}")]
    OutcomeUnknown {
        /// Which provider.
        provider: CredentialType,
        /// What happened.
        reason: String,
    },
    /// The provider answered something byoc does not understand.
    #[error("unexpected answer from {provider}: {reason}")]
    UnexpectedResponse {
        /// Which provider.
        provider: CredentialType,
        /// What was wrong with it.
        reason: String,
    },
}

impl ProviderError {
    /// The refusal, when the provider said no.
    pub fn refusal(&self) -> Option<&ProviderRefusal> {
        match self {
            ProviderError::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// The provider's code, when the provider gave one.
    pub fn provider_code(&self) -> Option<&str> {
        match self {
            ProviderError::Refused(refusal) => Some(&refusal.code),
            ProviderError::RateLimited { code, .. } => Some(code),
            _ => None,
        }
    }

    /// How long to wait before trying again, when the provider said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the stored credential is unusable (mark it `failed`); transient failures (rate limits,
    /// outages) and per-request refusals (a bad recipient) return false.
    pub fn is_credential_failure(&self) -> bool {
        match self {
            ProviderError::InvalidInput(_) => true,
            ProviderError::Refused(refusal) => refusal.reason.is_credential_failure(),
            _ => false,
        }
    }
}

/// The provider's error code, or `http_<status>` when its answer named none.
pub(crate) fn code_or_http_status(code: Option<String>, status: StatusCode) -> String {
    code.unwrap_or_else(|| format!("http_{}", status.as_u16()))
}

/// The provider's error message, or the status's canonical reason (`error` for an unknown status) when
/// its answer gave none.
pub(crate) fn message_or_status_reason(message: Option<String>, status: StatusCode) -> String {
    message.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned())
}

/// A refusal of an HTTP answer with `status` that links no documentation.
pub(crate) fn refused_with_status(
    provider: CredentialType,
    reason: RefusalReason,
    code: String,
    message: String,
    status: StatusCode,
) -> ProviderError {
    ProviderError::Refused(ProviderRefusal {
        provider,
        reason,
        code,
        message,
        http_status: Some(status.as_u16()),
        more_info: None,
    })
}

/// Replaces every occurrence of each secret in a provider's message so it can be stored and shown.
pub(crate) fn scrub(message: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|secret| secret.len() >= 4)
        .fold(message.to_owned(), |text, secret| {
            text.replace(secret, "[redacted]")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_secret_occurrence_but_keeps_short_fragments() {
        let scrubbed = scrub(
            "bad token tok_secret_1 (tok_secret_1) id",
            &["tok_secret_1", "id"],
        );
        assert_eq!(scrubbed, "bad token [redacted] ([redacted]) id");
    }

    #[test]
    fn refusal_display_names_reason_code_and_message() {
        let error = ProviderError::Refused(ProviderRefusal {
            provider: CredentialType::Twilio,
            reason: RefusalReason::RecipientUnsubscribed,
            code: "21610".into(),
            message: "Attempt to send to unsubscribed recipient".into(),
            http_status: Some(400),
            more_info: None,
        });
        assert_eq!(
            error.to_string(),
            "Twilio: the recipient has unsubscribed (replied STOP) (Twilio error 21610: Attempt to send to unsubscribed recipient)"
        );
        assert_eq!(error.provider_code(), Some("21610"));
        assert!(!error.is_credential_failure());
    }
}
