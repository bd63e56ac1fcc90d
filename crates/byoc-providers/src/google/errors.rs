//! Google's error answers, read in one place: the OAuth token endpoint's
//! `{"error": "invalid_grant", "error_description": "…"}` and the Calendar API's
//! `{"error": {"code", "message", "status", "errors": [{"reason"}]}}`, both mapped to a [`ProviderError`].

use std::time::Duration;

use byoc_credential_types::CredentialType;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::{
    code_or_http_status, message_or_status_reason, refused_with_status, scrub, ProviderError,
    RefusalReason,
};

const PROVIDER: CredentialType = CredentialType::GoogleCalendar;

/// A non-2xx answer of the token endpoint or the Calendar API.
#[derive(Deserialize, Default)]
struct GoogleErrorAnswer {
    #[serde(default)]
    error: Option<ErrorField>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `error` is the OAuth error code, or the Calendar API's error object.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Code(String),
    Api(GoogleErrorBody),
}

#[derive(Deserialize, Default)]
struct GoogleErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    errors: Vec<GoogleErrorItem>,
}

/// One entry of an error's `errors` list (also what free/busy reports per calendar).
#[derive(Deserialize, Default)]
pub(super) struct GoogleErrorItem {
    #[serde(default)]
    pub(super) reason: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

/// The reasons a Calendar API error answer gives (each `errors[].reason`, then its `status`).
pub(super) fn reasons(body: &str) -> Vec<String> {
    let answer: GoogleErrorAnswer = serde_json::from_str(body).unwrap_or_default();
    match answer.error {
        Some(ErrorField::Api(api)) => api
            .errors
            .into_iter()
            .filter_map(|item| item.reason)
            .chain(api.status)
            .collect(),
        _ => Vec::new(),
    }
}

/// Maps a non-2xx answer of Google's token endpoint or Calendar API; `secrets` are scrubbed from Google's words.
pub(super) fn map_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
    secrets: &[&str],
) -> ProviderError {
    let answer: GoogleErrorAnswer = serde_json::from_str(body).unwrap_or_default();
    let (code, message) = match answer.error {
        Some(ErrorField::Code(code)) => (Some(code), answer.error_description),
        Some(ErrorField::Api(api)) => (
            api.errors
                .into_iter()
                .find_map(|item| item.reason)
                .or(api.status),
            api.message,
        ),
        None => (None, answer.error_description),
    };
    let code = code_or_http_status(code, status);
    let message = message_or_status_reason(message.map(|text| scrub(&text, secrets)), status);
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || matches!(code.as_str(), "rateLimitExceeded" | "userRateLimitExceeded");
    if rate_limited {
        return ProviderError::RateLimited {
            provider: PROVIDER,
            code,
            message,
            retry_after,
        };
    }
    if status.is_server_error() {
        return ProviderError::Unavailable {
            provider: PROVIDER,
            reason: format!("HTTP {} ({code}: {message})", status.as_u16()),
        };
    }
    let reason = match (code.as_str(), status) {
        ("invalid_grant", _) => RefusalReason::ReconnectGoogleCalendar,
        ("invalid_client" | "unauthorized_client", _) | (_, StatusCode::UNAUTHORIZED) => {
            RefusalReason::Authentication
        }
        ("access_denied" | "invalid_scope", _) | (_, StatusCode::FORBIDDEN) => {
            RefusalReason::PermissionDenied
        }
        (_, StatusCode::NOT_FOUND) => RefusalReason::NotFound,
        _ => RefusalReason::Other,
    };
    refused_with_status(PROVIDER, reason, code, message, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_grant_means_reconnect() {
        let body = r#"{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}"#;
        let error = map_error(StatusCode::BAD_REQUEST, None, body, &[]);
        let refusal = error.refusal().expect("refusal");
        assert_eq!(refusal.reason, RefusalReason::ReconnectGoogleCalendar);
        assert_eq!(refusal.code, "invalid_grant");
        assert!(error.to_string().contains("reconnect Google Calendar"));
        assert!(error.is_credential_failure());
    }

    #[test]
    fn api_errors_map_to_reasons() {
        let body = r#"{"error": {"code": 403, "message": "Insufficient Permission", "status": "PERMISSION_DENIED", "errors": [{"reason": "insufficientPermissions", "domain": "global"}]}}"#;
        let error = map_error(StatusCode::FORBIDDEN, None, body, &[]);
        let refusal = error.refusal().expect("refusal");
        assert_eq!(refusal.reason, RefusalReason::PermissionDenied);
        assert_eq!(refusal.code, "insufficientPermissions");

        let limited = r#"{"error": {"code": 403, "message": "Rate Limit Exceeded", "errors": [{"reason": "rateLimitExceeded"}]}}"#;
        assert!(matches!(
            map_error(StatusCode::FORBIDDEN, None, limited, &[]),
            ProviderError::RateLimited { .. }
        ));
        assert!(matches!(
            map_error(StatusCode::BAD_GATEWAY, None, "", &[]),
            ProviderError::Unavailable { .. }
        ));
        let unauthorized = r#"{"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}}"#;
        assert_eq!(
            map_error(StatusCode::UNAUTHORIZED, None, unauthorized, &[])
                .refusal()
                .map(|refusal| refusal.reason),
            Some(RefusalReason::Authentication)
        );
    }

    #[test]
    fn secrets_are_scrubbed_from_googles_words() {
        let body = r#"{"error": "invalid_client", "error_description": "client secret GOCSPX-topsecret is wrong"}"#;
        let error = map_error(StatusCode::UNAUTHORIZED, None, body, &["GOCSPX-topsecret"]);
        assert!(!error.to_string().contains("GOCSPX-topsecret"), "{error}");
    }
}
