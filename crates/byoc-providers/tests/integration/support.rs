//! Shared helpers: configurations pointing at local servers, test credentials, secret-leak assertions,
//! request counts.

use std::time::Duration;

use byoc_credential_types::{CredentialPayload, TwilioCredential};
use byoc_providers::{build_http_client, ProviderConfig, RetryPolicy, TwilioClient};
use url::Url;
use wiremock::MockServer;

pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_AUTH_TOKEN: &str = "authtoken-secret-0123456789abcdef";
pub const TWILIO_FROM: &str = "+14155552345";

/// A configuration with every base URL at `base`, a public URL, and fast retries.
pub fn config_for(base: &str) -> ProviderConfig {
    let url = Url::parse(base).expect("test base URL parses");
    ProviderConfig {
        twilio_api_base: url.clone(),
        google_oauth_token_url: url.join("/token").expect("joins"),
        google_calendar_api_base: url.join("/calendar/v3/").expect("joins"),
        stripe_api_base: url.clone(),
        hubspot_api_base: url,
        public_url: Some(Url::parse("https://byoc.example.com").expect("parses")),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        },
        ..ProviderConfig::default()
    }
}

pub fn twilio_client(config: &ProviderConfig) -> TwilioClient {
    TwilioClient::new(
        config,
        build_http_client(config.timeouts).expect("http client builds"),
    )
}

/// A Twilio client whose every base URL is `server`.
pub fn twilio_client_for(server: &MockServer) -> TwilioClient {
    twilio_client(&config_for(&server.uri()))
}

pub fn twilio_payload(from: &str) -> Vec<u8> {
    serde_json::json!({
        "accountSid": TWILIO_SID,
        "authToken": TWILIO_AUTH_TOKEN,
        "phoneNumber": from,
    })
    .to_string()
    .into_bytes()
}

pub fn twilio_credential(from: &str) -> TwilioCredential {
    TwilioCredential::from_json_bytes(&twilio_payload(from)).expect("valid test credential")
}

/// Asserts that neither the Display nor the Debug form of `value` contains any of `secrets`.
pub fn assert_no_secret<T: std::fmt::Debug + std::fmt::Display>(value: &T, secrets: &[&str]) {
    let shown = format!("{value} | {value:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "secret leaked into: {shown}");
    }
}

/// How many requests `server` has received (`None` when request recording is off).
pub async fn request_count(server: &MockServer) -> Option<usize> {
    server
        .received_requests()
        .await
        .map(|requests| requests.len())
}
