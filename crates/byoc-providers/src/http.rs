//! Shared HTTP plumbing: the reqwest client with timeouts, URL building under a configurable base, and the
//! one retry loop every provider call goes through.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use url::Url;

use crate::config::{HttpTimeouts, ProviderConfig, RetryPolicy};
use crate::error::{code_or_http_status, refused_with_status, ProviderError, RefusalReason};
use byoc_credential_types::CredentialType;

/// The HTTP client could not be built (TLS backend initialisation failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct HttpClientError(#[source] reqwest::Error);

/// A reqwest client with byoc's timeouts and no redirects (a redirect would resend credentials).
pub fn build_http_client(timeouts: HttpTimeouts) -> Result<reqwest::Client, HttpClientError> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.request)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("byoc-providers/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(HttpClientError)
}

/// `base` with `segments` appended to its path (each percent-encoded as one segment).
pub(crate) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// How a client calls its provider: the retry policy and a per-request timeout (applied on top of the
/// client's own, so a client built without [`build_http_client`] still times out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallPolicy {
    /// When to retry.
    pub retry: RetryPolicy,
    /// Longest time for one attempt.
    pub timeout: Duration,
}

impl CallPolicy {
    /// The policy configured in `config`.
    pub fn from_config(config: &ProviderConfig) -> Self {
        CallPolicy {
            retry: config.retry,
            timeout: config.timeouts.request,
        }
    }
}

/// Whether repeating a request could make the provider act twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads and read-only queries: a lost answer is reported as `Unavailable`.
    Safe,
    /// Sends (an SMS): once the request may have reached the provider it is never repeated, and a lost
    /// answer is reported as `OutcomeUnknown`.
    SendsOnce,
}

/// Sends the request built by `build`, retrying only when the provider cannot have acted on it: a
/// connection that could not be opened, or an HTTP 429 / 503 answer, with bounded backoff. A 429/503
/// that survives the retry budget is returned as the response for the caller to map.
pub(crate) async fn send_with_retry(
    provider: CredentialType,
    calls: CallPolicy,
    idempotency: Idempotency,
    build: impl Fn() -> RequestBuilder,
) -> Result<Response, ProviderError> {
    let policy = calls.retry;
    let mut attempt: u32 = 1;
    loop {
        let may_retry = attempt < policy.max_attempts.max(1);
        match build().timeout(calls.timeout).send().await {
            Ok(response) => {
                let status = response.status();
                let retriable = status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE;
                if !retriable || !may_retry {
                    return Ok(response);
                }
                let wait = match retry_after(&response) {
                    Some(asked) if asked > policy.max_backoff => return Ok(response),
                    Some(asked) => asked,
                    None => policy.backoff(attempt),
                };
                tracing::debug!(%provider, attempt, status = status.as_u16(), wait_ms = wait.as_millis() as u64, "retrying after a refusal to act");
                tokio::time::sleep(wait).await;
            }
            Err(error) if error.is_connect() && may_retry => {
                let wait = policy.backoff(attempt);
                tracing::debug!(%provider, attempt, wait_ms = wait.as_millis() as u64, "retrying after a connection failure");
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(transport_error(provider, idempotency, error)),
        }
        attempt += 1;
    }
}

/// Maps a transport failure: before anything was sent it is `Unavailable`; afterwards a send may have
/// been accepted.
fn transport_error(
    provider: CredentialType,
    idempotency: Idempotency,
    error: reqwest::Error,
) -> ProviderError {
    let reason = describe_transport(&error);
    if error.is_connect() || idempotency == Idempotency::Safe {
        ProviderError::Unavailable { provider, reason }
    } else {
        ProviderError::OutcomeUnknown { provider, reason }
    }
}

/// A short description of a transport failure, without the URL.
fn describe_transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "the request timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer could not be read".to_owned()
    } else {
        "the connection failed".to_owned()
    }
}

/// The `Retry-After` header in seconds (the HTTP-date form is not used by these providers).
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Reads an answer body as text, at most 4 MiB, chunk by chunk so a hostile server cannot exhaust memory.
pub(crate) async fn read_body(
    provider: CredentialType,
    idempotency: Idempotency,
    mut response: Response,
) -> Result<String, ProviderError> {
    const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport_error(provider, idempotency, error))?
    {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ProviderError::UnexpectedResponse {
                provider,
                reason: format!("the answer is larger than {MAX_BODY_BYTES} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses a successful JSON answer into `T`.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    provider: CredentialType,
    body: &str,
) -> Result<T, ProviderError> {
    serde_json::from_str(body).map_err(|error| ProviderError::UnexpectedResponse {
        provider,
        reason: format!("malformed JSON answer ({})", json_error_kind(&error)),
    })
}

/// Names a serde_json error category without quoting the input.
pub(crate) fn json_error_kind(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "i/o error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "truncated",
    }
}

/// A non-2xx answer, read for error mapping.
pub(crate) struct ErrorAnswer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `Retry-After`, when given.
    pub retry_after: Option<Duration>,
    /// The body text.
    pub body: String,
}

impl ErrorAnswer {
    /// Maps the answer of a bearer-token verifier (Stripe, HubSpot), given the provider's code and its
    /// secret-free message: 429 is rate limited, 5xx unavailable, 401 an authentication refusal, 403 a
    /// permission refusal, anything else another refusal. A missing code becomes `http_<status>`.
    pub(crate) fn into_verifier_error(
        self,
        provider: CredentialType,
        code: Option<String>,
        message: String,
    ) -> ProviderError {
        let code = code_or_http_status(code, self.status);
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            return ProviderError::RateLimited {
                provider,
                code,
                message,
                retry_after: self.retry_after,
            };
        }
        if self.status.is_server_error() {
            return ProviderError::Unavailable {
                provider,
                reason: format!("HTTP {} ({code})", self.status.as_u16()),
            };
        }
        let reason = match self.status {
            StatusCode::UNAUTHORIZED => RefusalReason::Authentication,
            StatusCode::FORBIDDEN => RefusalReason::PermissionDenied,
            _ => RefusalReason::Other,
        };
        refused_with_status(provider, reason, code, message, self.status)
    }
}

/// `GET url` with a bearer token (safe to retry); the 2xx body, or the error answer to map.
pub(crate) async fn get_with_bearer(
    provider: CredentialType,
    calls: CallPolicy,
    http: &reqwest::Client,
    url: &Url,
    token: &str,
) -> Result<Result<String, ErrorAnswer>, ProviderError> {
    let response = send_with_retry(provider, calls, Idempotency::Safe, || {
        http.get(url.clone()).bearer_auth(token)
    })
    .await?;
    let status = response.status();
    let retry_after = retry_after(&response);
    let body = read_body(provider, Idempotency::Safe, response).await?;
    Ok(if status.is_success() {
        Ok(body)
    } else {
        Err(ErrorAnswer {
            status,
            retry_after,
            body,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_appends_segments_under_the_base_path() {
        let base = Url::parse("http://127.0.0.1:1/calendar/v3/").expect("valid");
        assert_eq!(
            endpoint(&base, &["users", "me", "calendarList"]).as_str(),
            "http://127.0.0.1:1/calendar/v3/users/me/calendarList"
        );
        let bare = Url::parse("https://api.twilio.com").expect("valid");
        assert_eq!(
            endpoint(&bare, &["2010-04-01", "Accounts", "AC1.json"]).as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC1.json"
        );
        assert_eq!(
            endpoint(&base, &["calendars", "team@example.com/x"]).as_str(),
            "http://127.0.0.1:1/calendar/v3/calendars/team@example.com%2Fx"
        );
    }
}
