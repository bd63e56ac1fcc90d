//! Twilio error paths and the retry policy against wiremock fakes answering Twilio's documented error
//! bodies `{code, message, more_info, status}`.

use std::net::SocketAddr;
use std::time::Duration;

use byoc_credential_types::E164Phone;
use byoc_providers::{
    Acceptance, OutboundSms, ProviderError, RefusalReason, SentSms, SmsSender, TwilioClient,
    Verifier,
};
use wiremock::matchers::{basic_auth, body_string_contains, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    assert_no_secret, config_for, request_count, twilio_client, twilio_client_for,
    twilio_credential, twilio_payload, TWILIO_AUTH_TOKEN, TWILIO_FROM, TWILIO_SID,
};

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
}

fn twilio_error(code: u32, message: &str, status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

fn created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(serde_json::json!({
        "sid": "SM0123456789abcdef0123456789abcdef",
        "status": "queued",
        "account_sid": TWILIO_SID,
    }))
}

/// Mounts `response` on the Messages endpoint, expected to be asked `times` times.
async fn mount_send(server: &MockServer, response: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(response)
        .expect(times)
        .mount(server)
        .await;
}

/// Sends "Hot lead" to +14155550123 with the test credential.
async fn send_hot_lead(client: &TwilioClient) -> Result<SentSms, ProviderError> {
    let message = OutboundSms::new(
        E164Phone::parse("to", "+14155550123").expect("valid"),
        "Hot lead",
    )
    .expect("valid message");
    client
        .send_sms(&twilio_credential(TWILIO_FROM), &message)
        .await
}

/// A local address nothing listens on (bound, then released).
fn unused_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    listener.local_addr().expect("address")
}

/// A server answering the account's incoming-number list, filtered to the sending number, with `numbers`,
/// and expecting exactly one such request (a verification asks Twilio once).
async fn numbers_server(numbers: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/2010-04-01/Accounts/{TWILIO_SID}/IncomingPhoneNumbers.json"
        )))
        .and(query_param("PhoneNumber", TWILIO_FROM))
        .respond_with(numbers)
        .expect(1)
        .mount(&server)
        .await;
    server
}

/// An incoming-number list holding the sending number, SMS-capable or not.
fn numbers(sms: bool) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "incoming_phone_numbers": [{"phone_number": TWILIO_FROM, "capabilities": {"sms": sms, "voice": true}}]
    }))
}

/// Verifies the test payload against `server`.
async fn verify_on(server: &MockServer) -> Result<Acceptance, ProviderError> {
    twilio_client_for(server)
        .verify(&twilio_payload(TWILIO_FROM))
        .await
}

#[tokio::test]
async fn send_posts_the_form_with_the_orgs_basic_auth_and_status_callback() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(basic_auth(TWILIO_SID, TWILIO_AUTH_TOKEN))
        .and(body_string_contains("To=%2B14155550123"))
        .and(body_string_contains("From=%2B14155552345"))
        .and(body_string_contains("Body=Hot+lead"))
        .and(body_string_contains(
            "StatusCallback=https%3A%2F%2Fbyoc.example.com%2Fapi%2Fwebhooks%2Ftwilio%2Fstatus",
        ))
        .respond_with(created())
        .expect(1)
        .mount(&server)
        .await;
    let sent = send_hot_lead(&twilio_client_for(&server))
        .await
        .expect("sent");
    assert_eq!(sent.status, "queued");
}

#[tokio::test]
async fn documented_send_errors_are_typed_and_carry_twilios_code_without_secrets() {
    let cases = [
        (20003, 401, "Authenticate", RefusalReason::Authentication),
        (
            21211,
            400,
            "The 'To' number +1999 is not a valid phone number.",
            RefusalReason::InvalidRecipient,
        ),
        (
            21608,
            400,
            "The number is unverified. Trial accounts cannot send messages to unverified numbers",
            RefusalReason::UnverifiedRecipient,
        ),
        (
            21610,
            400,
            "Attempt to send to unsubscribed recipient",
            RefusalReason::RecipientUnsubscribed,
        ),
        (
            21614,
            400,
            "'To' number is not a valid mobile number",
            RefusalReason::RecipientUnreachable,
        ),
        (
            21612,
            400,
            "The 'To' phone number is not currently reachable via SMS",
            RefusalReason::RecipientUnreachable,
        ),
    ];
    for (code, status, text, reason) in cases {
        let server = MockServer::start().await;
        mount_send(&server, twilio_error(code, text, status), 1).await;
        let error = send_hot_lead(&twilio_client_for(&server))
            .await
            .expect_err("Twilio refused");
        let refusal = error.refusal().unwrap_or_else(|| panic!("{code}: {error}"));
        assert_eq!(refusal.reason, reason, "code {code}");
        assert_eq!(refusal.code, code.to_string());
        assert_eq!(refusal.message, text);
        assert_eq!(refusal.http_status, Some(status));
        assert_no_secret(&error, &[TWILIO_AUTH_TOKEN]);
    }
}

#[tokio::test]
async fn rate_limit_then_success_sends_exactly_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .respond_with(twilio_error(20429, "Too Many Requests", 429))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    mount_send(&server, created(), 1).await;
    let sent = send_hot_lead(&twilio_client_for(&server))
        .await
        .expect("second attempt succeeds");
    assert_eq!(sent.sid, "SM0123456789abcdef0123456789abcdef");
    assert_eq!(request_count(&server).await, Some(2));
}

#[tokio::test]
async fn service_unavailable_is_retried_within_the_bound_then_reported() {
    let server = MockServer::start().await;
    mount_send(&server, ResponseTemplate::new(503), 3).await;
    let error = send_hot_lead(&twilio_client_for(&server))
        .await
        .expect_err("still unavailable");
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_long_retry_after_is_returned_not_waited_for() {
    let server = MockServer::start().await;
    mount_send(
        &server,
        twilio_error(20429, "Too Many Requests", 429).insert_header("Retry-After", "120"),
        1,
    )
    .await;
    let error = send_hot_lead(&twilio_client_for(&server))
        .await
        .expect_err("rate limited");
    assert!(
        matches!(error, ProviderError::RateLimited { .. }),
        "{error}"
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(error.provider_code(), Some("20429"));
}

#[tokio::test]
async fn a_server_error_after_the_send_is_never_retried() {
    let server = MockServer::start().await;
    mount_send(
        &server,
        ResponseTemplate::new(500).set_body_string("internal error"),
        1,
    )
    .await;
    let error = send_hot_lead(&twilio_client_for(&server))
        .await
        .expect_err("500");
    assert!(
        matches!(error, ProviderError::OutcomeUnknown { .. }),
        "{error}"
    );
    assert_eq!(request_count(&server).await, Some(1));
}

#[tokio::test]
async fn a_timeout_after_the_send_is_never_retried() {
    let server = MockServer::start().await;
    mount_send(&server, created().set_delay(Duration::from_secs(2)), 1).await;
    let mut config = config_for(&server.uri());
    config.timeouts.request = Duration::from_millis(300);
    let error = send_hot_lead(&twilio_client(&config))
        .await
        .expect_err("timed out");
    assert!(
        matches!(error, ProviderError::OutcomeUnknown { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn connection_failures_before_sending_are_retried() {
    let address = unused_address();
    let mut config = config_for(&format!("http://{address}"));
    config.retry.max_attempts = 20;
    config.retry.max_backoff = Duration::from_millis(50);
    let client = twilio_client(&config);

    let server_task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let listener = std::net::TcpListener::bind(address).expect("rebind the port");
        let server = MockServer::builder().listener(listener).start().await;
        mount_send(&server, created(), 1).await;
        server
    });
    let sent = send_hot_lead(&client)
        .await
        .expect("sent once the server is up");
    assert_eq!(sent.status, "queued");
    let server = server_task.await.expect("server task");
    assert_eq!(request_count(&server).await, Some(1));
}

#[tokio::test]
async fn an_unreachable_twilio_is_unavailable_after_the_bound() {
    let client = twilio_client(&config_for(&format!("http://{}", unused_address())));
    let error = send_hot_lead(&client).await.expect_err("nothing listens");
    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn verify_asks_once_and_maps_authentication_inactive_accounts_and_foreign_numbers() {
    let server = numbers_server(twilio_error(20003, "Authenticate", 401)).await;
    let error = verify_on(&server).await.expect_err("401");
    assert_eq!(
        error.refusal().map(|r| r.reason),
        Some(RefusalReason::Authentication)
    );
    assert!(error.is_credential_failure());
    assert_no_secret(&error, &[TWILIO_AUTH_TOKEN]);

    let server = numbers_server(twilio_error(20005, "Account not active", 401)).await;
    let error = verify_on(&server).await.expect_err("suspended");
    let refusal = error.refusal().expect("refusal");
    assert_eq!(refusal.reason, RefusalReason::AccountInactive);
    assert_eq!(refusal.code, "20005");
    assert!(error.is_credential_failure());

    let server = numbers_server(
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"incoming_phone_numbers": []})),
    )
    .await;
    let error = verify_on(&server).await.expect_err("not on the account");
    assert_eq!(
        error.refusal().map(|r| r.reason),
        Some(RefusalReason::PhoneNumberNotOnAccount)
    );

    let server = numbers_server(numbers(false)).await;
    let error = verify_on(&server).await.expect_err("no SMS");
    assert_eq!(
        error.refusal().map(|r| r.reason),
        Some(RefusalReason::PhoneNumberCannotSendSms)
    );

    let server = numbers_server(numbers(true)).await;
    let outcome = verify_on(&server).await.expect("verified");
    assert!(outcome.updated_payload.is_none());
    assert_eq!(
        outcome.details.to_string(),
        "the Twilio account can send SMS from +14155552345"
    );
    server.verify().await;
}

#[tokio::test]
async fn an_invalid_payload_fails_before_any_request() {
    let server = MockServer::start().await;
    let error = twilio_client_for(&server)
        .verify(&twilio_payload("555-0100"))
        .await
        .expect_err("not E.164");
    match &error {
        ProviderError::InvalidInput(field) => assert_eq!(field.field, "phoneNumber"),
        other => panic!("unexpected {other}"),
    }
    assert_no_secret(&error, &[TWILIO_AUTH_TOKEN]);
    assert_eq!(request_count(&server).await, Some(0));
}
