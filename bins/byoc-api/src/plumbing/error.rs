//! The one error type every endpoint answers with, and the JSON body it renders as.
//!
//! Every failure leaves the service as `{"error": {"code": "snake_case_code", "message": "…"}}` with the status the
//! contract gives. Internal failures answer an opaque 500 and log their cause chain; nothing in this module ever
//! formats a secret (messages are built from field names and fixed text, never from submitted values).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::error::{
    JsonPayloadError, PathError, PayloadError, QueryPayloadError, UrlencodedError,
};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use byoc_credential_store::{ConflictKind, CredentialServiceError, StoreError};
use byoc_providers::{BookingError, ProviderError};
use serde::Serialize;
use utoipa::ToSchema;

/// How long a client is asked to wait before repeating a booking when the provider said nothing.
pub const PROVIDER_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The media type of the JSON request bodies.
pub const JSON_MEDIA_TYPE: &str = "application/json";
/// The media type of form bodies (the settings page's sign-in and sign-out, Twilio's status callback).
pub const FORM_MEDIA_TYPE: &str = "application/x-www-form-urlencoded";

/// An error answered to an HTTP client: a status, a stable snake_case code and a human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    /// With 405: the `Allow` header's value.
    allow: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// 400: the body is not JSON, or the request cannot be read at all.
    pub fn malformed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_request", message)
    }

    /// 400: the body is JSON but has the wrong shape (wrong type, unknown or missing field).
    pub fn invalid_body(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    /// 401: the bearer token is missing, malformed, badly signed or expired.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 503: the JWKS that signs tokens cannot be fetched, so no token can be checked.
    pub fn auth_keys_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "auth_keys_unavailable",
            "the token signing keys cannot be fetched; retry later",
        )
    }

    /// 403: the caller is authenticated but not a member of the token's organization.
    pub fn not_a_member() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "not_a_member",
            "the token's user is not a member of its organization",
        )
    }

    /// 403: the caller's role does not allow this action.
    pub fn forbidden_role(required: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_role",
            format!("this action needs the {required} role"),
        )
    }

    /// 410: a settings-page login link that was already used, or never made.
    pub fn login_link_used() -> ApiError {
        ApiError::new(
            StatusCode::GONE,
            "login_link_used",
            "this sign-in link was already used or is not valid; ask for a new one",
        )
    }

    /// 410: a settings-page login link that expired before it was opened.
    pub fn login_link_expired() -> ApiError {
        ApiError::new(
            StatusCode::GONE,
            "login_link_expired",
            "this sign-in link has expired (links work for 60 seconds); ask for a new one",
        )
    }

    /// 403: a request made with the settings page's session cookie lacks the session's CSRF token.
    pub fn csrf_failed() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "missing or wrong CSRF token for this session; reload the page",
        )
    }

    /// 404: nothing by that id in the caller's organization.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 404 for a path that no route serves.
    pub fn no_route() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    /// 405 for a known path asked with a method it does not serve; `allowed` becomes the `Allow` header.
    pub fn method_not_allowed(allowed: &[Method]) -> ApiError {
        let list = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this endpoint answers {list} only"),
        );
        error.allow = Some(list);
        error
    }

    /// 409: a credential of that type already has that display name in the organization.
    pub fn duplicate_display_name() -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "duplicate_display_name",
            "a credential of this type with this display name already exists",
        )
    }

    /// 409: the credential is deactivated and is never used (or verified) again.
    pub fn credential_inactive() -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "credential_inactive",
            "this credential is deactivated; add a new one instead",
        )
    }

    /// 409: the organization has no usable credential for a provider it needs.
    pub fn credential_not_configured(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "credential_not_configured", message)
    }

    /// 413: the body is larger than the service accepts.
    pub fn payload_too_large(limit_bytes: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit_bytes} bytes"),
        )
    }

    /// 415: the body is not of the media type the endpoint reads (`application/json`, or
    /// `application/x-www-form-urlencoded` for the sign-in forms and the Twilio webhook).
    pub fn unsupported_media_type(expected: &'static str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the request body must be {expected}"),
        )
    }

    /// 422: a field has a value that is not allowed; the message names the field.
    pub fn invalid_field(field: &str, reason: impl fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {reason}"),
        )
    }

    /// 424: a provider refused; carries the provider's code and message (which never contain the secret).
    pub fn provider_refused(
        provider: &str,
        provider_code: &str,
        provider_message: &str,
    ) -> ApiError {
        ApiError::new(
            StatusCode::FAILED_DEPENDENCY,
            "provider_refused",
            format!("{provider} refused ({provider_code}): {provider_message}"),
        )
    }

    /// 424: the provider could not be asked (outage, timeout, unreadable answer); nothing was recorded.
    pub fn provider_unavailable(reason: &str) -> ApiError {
        ApiError::new(
            StatusCode::FAILED_DEPENDENCY,
            "provider_unavailable",
            format!("no usable answer from the provider: {reason}"),
        )
    }

    /// 400: a request that must carry an `Idempotency-Key` header has none.
    pub fn idempotency_key_required() -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "idempotency_key_required",
            "Idempotency-Key: the header is required (1 to 255 printable ASCII characters, the same on every retry of one booking)",
        )
    }

    /// 400: a Google connect `state` that is forged, expired, replayed or another user's; nothing was stored.
    pub fn invalid_oauth_state(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_oauth_state", message)
    }

    /// 403: a Twilio webhook whose `X-Twilio-Signature` does not check out for the organization's auth token.
    pub fn invalid_signature() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_signature",
            "the X-Twilio-Signature does not match this organization's Twilio credential",
        )
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after: Duration) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; retry later",
        );
        error.retry_after = Some(retry_after);
        error
    }

    /// 503 with `Retry-After`: the provider is busy or down for a request that is safe to repeat with the same
    /// idempotency key (a booking); `retry_after` is the provider's, else [`PROVIDER_RETRY_AFTER`].
    pub fn provider_busy(reason: &str, retry_after: Option<Duration>) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unavailable",
            format!("the provider is busy or down, retry with the same Idempotency-Key: {reason}"),
        );
        error.retry_after = Some(retry_after.unwrap_or(PROVIDER_RETRY_AFTER));
        error
    }

    /// 503: the database cannot be reached.
    pub fn database_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; retry later",
        )
    }

    /// 500: logs the cause chain and answers an opaque message.
    pub fn internal(cause: &(dyn StdError + 'static)) -> ApiError {
        tracing::error!(error = %CauseChain(cause), "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred",
        )
    }

    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl StdError for ApiError {}

/// The JSON error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `invalid_field`.
    pub code: String,
    /// Human-readable explanation; names the field for `invalid_field`.
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if let Some(allow) = &self.allow {
            if let Ok(value) = HeaderValue::from_str(allow) {
                response.insert_header((header::ALLOW, value));
            }
        }
        if let Some(retry_after) = self.retry_after {
            let seconds = retry_after.as_secs().max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.insert_header((header::RETRY_AFTER, value));
            }
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
            },
        })
    }
}

/// Formats an error and all its sources on one line: `outer: middle: inner`.
pub struct CauseChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for CauseChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Maps a JSON extractor failure to the contract's body (used by `JsonConfig::error_handler`).
pub fn json_error(error: JsonPayloadError, _request: &HttpRequest) -> actix_web::Error {
    ApiError::from(error).into()
}

/// Maps a form extractor failure to the contract's body (used by `FormConfig::error_handler`).
pub fn form_error(error: UrlencodedError, _request: &HttpRequest) -> actix_web::Error {
    ApiError::from(error).into()
}

/// Maps a path extractor failure (e.g. an id that is not a uuid) to a 404: no such resource.
pub fn path_error(_error: PathError, _request: &HttpRequest) -> actix_web::Error {
    ApiError::not_found("resource").into()
}

/// Maps a query-string extractor failure to a 400 naming the problem.
pub fn query_error(error: QueryPayloadError, _request: &HttpRequest) -> actix_web::Error {
    let message = match &error {
        QueryPayloadError::Deserialize(inner) => describe_query_error(&inner.to_string()),
        _ => "the query string could not be read".to_owned(),
    };
    ApiError::invalid_body(message).into()
}

/// Query-string errors from `serde_urlencoded` name the parameter for unknown/missing fields; any other wording
/// may quote the submitted value, so it is replaced by a fixed text.
fn describe_query_error(serde_message: &str) -> String {
    if serde_message.starts_with("unknown field") || serde_message.starts_with("missing field") {
        format!("query string: {serde_message}")
    } else {
        "query string: a parameter has an invalid value".to_owned()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        ApiError::from_shared_store_error(&error)
    }
}

impl ApiError {
    /// The answer for a store error (also when it is shared by several waiting callers).
    fn from_shared_store_error(error: &StoreError) -> ApiError {
        match error {
            StoreError::NotFound { what } => ApiError::not_found(what),
            StoreError::Conflict {
                what: ConflictKind::DisplayName,
            } => ApiError::duplicate_display_name(),
            StoreError::Conflict { what } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{} already exists", what.field()),
            ),
            StoreError::Forbidden { .. } => {
                tracing::warn!(error = %error, "the store refused an action the handler allowed");
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "insufficient_role",
                    "your role does not allow this action",
                )
            }
            StoreError::Invalid(invalid) => ApiError::invalid_field(invalid.field, invalid.reason),
            StoreError::Unavailable(_) => {
                tracing::error!(error = %CauseChain(error), "database unavailable");
                ApiError::database_unavailable()
            }
            // The database refused the connected role: a deployment's grants or a bug, never the caller's.
            StoreError::Denied { .. } | StoreError::Internal { .. } => ApiError::internal(error),
        }
    }
}

impl From<CredentialServiceError> for ApiError {
    fn from(error: CredentialServiceError) -> ApiError {
        match error {
            CredentialServiceError::NotConfigured { .. } => {
                ApiError::credential_not_configured(error.to_string())
            }
            CredentialServiceError::Inactive { .. } => ApiError::credential_inactive(),
            CredentialServiceError::Store(store) => match Arc::try_unwrap(store) {
                Ok(store) => store.into(),
                Err(shared) => ApiError::from_shared_store_error(&shared),
            },
            // A stored credential that no longer parses, or does not decrypt, is the service's fault.
            other @ (CredentialServiceError::InvalidPayload { .. }
            | CredentialServiceError::Decrypt { .. }
            | CredentialServiceError::Encrypt(_)) => ApiError::internal(&other),
        }
    }
}

impl From<ProviderError> for ApiError {
    fn from(error: ProviderError) -> ApiError {
        match error {
            ProviderError::InvalidInput(field) => field.into(),
            ProviderError::Refused(refusal) => ApiError::provider_refused(
                refusal.provider.display_name(),
                &refusal.code,
                &refusal.message,
            ),
            ProviderError::RateLimited { retry_after, .. } => {
                ApiError::rate_limited(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            other => ApiError::provider_unavailable(&other.to_string()),
        }
    }
}

impl From<BookingError> for ApiError {
    fn from(error: BookingError) -> ApiError {
        let message = error.to_string();
        match error {
            BookingError::SlotTaken => ApiError::new(StatusCode::CONFLICT, "slot_taken", message),
            BookingError::KeyReused(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            ),
            BookingError::NeedsEventWrite => {
                ApiError::new(StatusCode::CONFLICT, "calendar_reconnect_required", message)
            }
            BookingError::NotFound => ApiError::not_found("booking"),
            // Every attempt names the same event id, so repeating a booking never double-books: Google's
            // 429 and 5xx ask the client to come back later.
            BookingError::Provider(ProviderError::RateLimited { retry_after, .. }) => {
                ApiError::provider_busy(&message, retry_after)
            }
            BookingError::Provider(ProviderError::Unavailable { .. }) => {
                ApiError::provider_busy(&message, None)
            }
            BookingError::Provider(provider) => provider.into(),
        }
    }
}

impl From<JsonPayloadError> for ApiError {
    fn from(error: JsonPayloadError) -> ApiError {
        match error {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => ApiError::payload_too_large(limit),
            JsonPayloadError::ContentType => ApiError::unsupported_media_type(JSON_MEDIA_TYPE),
            JsonPayloadError::Deserialize(inner) => describe_json_error(&inner),
            JsonPayloadError::Payload(PayloadError::Overflow) => {
                ApiError::payload_too_large(crate::BODY_LIMIT_BYTES)
            }
            _ => ApiError::malformed("the request body could not be read"),
        }
    }
}

impl From<UrlencodedError> for ApiError {
    fn from(error: UrlencodedError) -> ApiError {
        match error {
            UrlencodedError::Overflow { limit, .. } => ApiError::payload_too_large(limit),
            UrlencodedError::Payload(PayloadError::Overflow) => {
                ApiError::payload_too_large(crate::BODY_LIMIT_BYTES)
            }
            UrlencodedError::ContentType => ApiError::unsupported_media_type(FORM_MEDIA_TYPE),
            // serde_urlencoded's message may quote the submitted value: name only the problem.
            UrlencodedError::Parse(_) => {
                ApiError::invalid_body("the form lacks a field or has one with an invalid value")
            }
            _ => ApiError::malformed("the request body could not be read"),
        }
    }
}

/// A body deserialization failure, classified without quoting the submitted value.
pub fn describe_json_error(error: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::malformed(format!(
            "the request body is not valid JSON (line {}, column {})",
            error.line(),
            error.column()
        )),
        Category::Data => ApiError::invalid_body(describe_data_error(&error.to_string(), None)),
    }
}

/// Builds a message for a JSON data error at `path` (when known) that names fields but never values.
pub fn describe_data_error(serde_message: &str, path: Option<&str>) -> String {
    let location = match path {
        Some(path) if !path.is_empty() && path != "." => format!("field `{path}`"),
        _ => "request body".to_owned(),
    };
    let reason = serde_message
        .split(" at line ")
        .next()
        .unwrap_or(serde_message);
    if reason.starts_with("unknown field") || reason.starts_with("missing field") {
        let reason = reason.split(", expected").next().unwrap_or(reason);
        match path {
            Some(path)
                if !path.is_empty() && path != "." && reason.starts_with("unknown field") =>
            {
                format!("{reason} (in `{path}`)")
            }
            _ => reason.to_owned(),
        }
    } else if reason.starts_with("invalid type") {
        let expected = reason
            .split(", expected ")
            .nth(1)
            .map(|expected| format!(", expected {expected}"))
            .unwrap_or_default();
        format!("{location} has the wrong type{expected}")
    } else {
        format!("{location} has an invalid value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(error: &ApiError) -> serde_json::Value {
        let bytes = error
            .error_response()
            .into_body()
            .try_into_bytes()
            .expect("a JSON body is in memory");
        serde_json::from_slice(&bytes).expect("the error body is JSON")
    }

    #[test]
    fn renders_the_contract_body() {
        let error = ApiError::invalid_field("phoneNumber", "must be E.164");
        assert_eq!(error.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body_of(&error),
            serde_json::json!({"error": {"code": "invalid_field", "message": "phoneNumber: must be E.164"}})
        );
    }

    #[test]
    fn rate_limited_carries_retry_after_in_whole_seconds() {
        let response = ApiError::rate_limited(Duration::from_millis(1500)).error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|value| value.to_str().ok()),
            Some(Some("1"))
        );
        let subsecond = ApiError::rate_limited(Duration::from_millis(10)).error_response();
        assert_eq!(
            subsecond
                .headers()
                .get(header::RETRY_AFTER)
                .map(|value| value.to_str().ok()),
            Some(Some("1"))
        );
    }

    #[test]
    fn data_errors_name_fields_but_never_values() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Probe {
            token: String,
        }
        let wrong_type = serde_json::from_str::<Probe>(r#"{"token": 123456789}"#)
            .expect_err("a number is not a string");
        let message = describe_data_error(&wrong_type.to_string(), Some("token"));
        assert_eq!(
            message,
            "field `token` has the wrong type, expected a string"
        );
        assert!(!message.contains("123456789"));

        let unknown = serde_json::from_str::<Probe>(r#"{"token": "x", "extra": 1}"#)
            .expect_err("unknown fields are denied");
        assert_eq!(
            describe_data_error(&unknown.to_string(), None),
            "unknown field `extra`"
        );

        let missing = serde_json::from_str::<Probe>("{}").expect_err("token is required");
        assert_eq!(
            describe_data_error(&missing.to_string(), None),
            "missing field `token`"
        );
    }

    #[test]
    fn syntax_errors_are_malformed() {
        let error =
            serde_json::from_str::<serde_json::Value>("{not json").expect_err("invalid JSON");
        let api_error = describe_json_error(&error);
        assert_eq!(api_error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(api_error.code(), "malformed_request");
    }

    #[test]
    fn service_errors_have_one_answer_each() {
        let answer = |error: CredentialServiceError| {
            let api_error = ApiError::from(error);
            (api_error.status(), api_error.code())
        };
        let store = |error: StoreError| CredentialServiceError::Store(Arc::new(error));
        assert_eq!(
            answer(store(StoreError::Forbidden { reason: "admin" })),
            (StatusCode::FORBIDDEN, "insufficient_role")
        );
        assert_eq!(
            answer(store(StoreError::Conflict {
                what: ConflictKind::Member
            })),
            (StatusCode::CONFLICT, "conflict")
        );
        // A stored credential that no longer parses is the service's fault, not the caller's.
        assert_eq!(
            answer(CredentialServiceError::InvalidPayload {
                provider: byoc_credential_store::CredentialType::Twilio,
                source: byoc_credential_types::InvalidField::new("accountSid", "not hex"),
            }),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
        );
    }

    #[test]
    fn cause_chain_lists_every_source() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(CauseChain(&error).to_string(), "outer: inner");
    }
}
