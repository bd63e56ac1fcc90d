//! Twilio's error body `{code, message, more_info, status}` mapped to [`ProviderError`].

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::{
    code_or_http_status, message_or_status_reason, scrub, ProviderError, ProviderRefusal,
    RefusalReason,
};
use crate::http::Idempotency;
use byoc_credential_types::CredentialType;

const PROVIDER: CredentialType = CredentialType::Twilio;

#[derive(Deserialize, Default)]
struct TwilioErrorBody {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    more_info: Option<String>,
}

/// byoc's reason for a Twilio error code.
fn reason_for(code: Option<u32>, status: StatusCode) -> RefusalReason {
    match code {
        Some(20003) => RefusalReason::Authentication,
        Some(10001 | 20005) => RefusalReason::AccountInactive,
        Some(21211) => RefusalReason::InvalidRecipient,
        Some(21608) => RefusalReason::UnverifiedRecipient,
        Some(21610) => RefusalReason::RecipientUnsubscribed,
        Some(21612 | 21614) => RefusalReason::RecipientUnreachable,
        Some(20404) => RefusalReason::NotFound,
        _ => match status {
            StatusCode::UNAUTHORIZED => RefusalReason::Authentication,
            StatusCode::FORBIDDEN => RefusalReason::PermissionDenied,
            StatusCode::NOT_FOUND => RefusalReason::NotFound,
            _ => RefusalReason::Other,
        },
    }
}

/// Maps a non-2xx Twilio answer. `secrets` are scrubbed from Twilio's message.
pub(super) fn map_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
    secrets: &[&str],
    idempotency: Idempotency,
) -> ProviderError {
    let parsed: TwilioErrorBody = serde_json::from_str(body).unwrap_or_default();
    let message = message_or_status_reason(
        parsed.message.map(|message| scrub(&message, secrets)),
        status,
    );
    let code = code_or_http_status(parsed.code.map(|code| code.to_string()), status);

    if status == StatusCode::TOO_MANY_REQUESTS || parsed.code == Some(20429) {
        return ProviderError::RateLimited {
            provider: PROVIDER,
            code,
            message,
            retry_after,
        };
    }
    if status.is_server_error() {
        let reason = format!("HTTP {} ({code}: {message})", status.as_u16());
        return if status == StatusCode::SERVICE_UNAVAILABLE || idempotency == Idempotency::Safe {
            ProviderError::Unavailable {
                provider: PROVIDER,
                reason,
            }
        } else {
            ProviderError::OutcomeUnknown {
                provider: PROVIDER,
                reason,
            }
        };
    }
    ProviderError::Refused(ProviderRefusal {
        provider: PROVIDER,
        reason: reason_for(parsed.code, status),
        code,
        message,
        http_status: Some(status.as_u16()),
        more_info: parsed.more_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: u32, message: &str, status: u16) -> String {
        serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status
        })
        .to_string()
    }

    #[test]
    fn documented_codes_map_to_reasons() {
        let cases = [
            (20003, 401, RefusalReason::Authentication),
            (21211, 400, RefusalReason::InvalidRecipient),
            (21608, 400, RefusalReason::UnverifiedRecipient),
            (21610, 400, RefusalReason::RecipientUnsubscribed),
            (21612, 400, RefusalReason::RecipientUnreachable),
            (21614, 400, RefusalReason::RecipientUnreachable),
            (20404, 404, RefusalReason::NotFound),
            (21606, 400, RefusalReason::Other),
        ];
        for (code, status, expected) in cases {
            let status = StatusCode::from_u16(status).expect("valid status");
            let error = map_error(
                status,
                None,
                &body(code, "msg", status.as_u16()),
                &[],
                Idempotency::SendsOnce,
            );
            let refusal = error.refusal().expect("a refusal");
            assert_eq!(refusal.reason, expected, "code {code}");
            assert_eq!(refusal.code, code.to_string());
            assert_eq!(
                refusal.more_info.as_deref(),
                Some(format!("https://www.twilio.com/docs/errors/{code}").as_str())
            );
        }
    }

    #[test]
    fn rate_limits_keep_retry_after() {
        let error = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(7)),
            &body(20429, "Too Many Requests", 429),
            &[],
            Idempotency::SendsOnce,
        );
        assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(error.provider_code(), Some("20429"));

        let bare = map_error(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            "",
            &[],
            Idempotency::Safe,
        );
        assert_eq!(bare.provider_code(), Some("http_429"));
    }

    #[test]
    fn server_errors_after_a_send_are_outcome_unknown() {
        let send = map_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "oops",
            &[],
            Idempotency::SendsOnce,
        );
        assert!(matches!(send, ProviderError::OutcomeUnknown { .. }));
        let read = map_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "oops",
            &[],
            Idempotency::Safe,
        );
        assert!(matches!(read, ProviderError::Unavailable { .. }));
        let unavailable = map_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "",
            &[],
            Idempotency::SendsOnce,
        );
        assert!(matches!(unavailable, ProviderError::Unavailable { .. }));
    }

    #[test]
    fn secrets_are_scrubbed_from_twilio_messages() {
        let error = map_error(
            StatusCode::UNAUTHORIZED,
            None,
            &body(20003, "Authenticate with token f00dface1234", 401),
            &["f00dface1234"],
            Idempotency::Safe,
        );
        assert!(!error.to_string().contains("f00dface1234"));
        assert!(!format!("{error:?}").contains("f00dface1234"));
    }
}
