//! Provider faults: Twilio and Google answering 5xx, answering too slowly, refusing in 429 storms. Every
//! failure is a clear 424 or 429 (with `Retry-After` when the provider gave one), no SMS is sent twice (a send
//! is repeated only after an answer that says Twilio did not act on it: 429 or 503; a lost or unreadable answer
//! is reported as "may have accepted"), a Google outage never
//! marks the credential failed (only `invalid_grant` does), and one organization's slow provider does not slow
//! another organization's requests.

use std::time::{Duration, Instant};

use byoc_api::startup::config::Config;
use byoc_providers::RetryPolicy;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{spawn_app_tuned, tcp_proxy_to, Store, TestApp, TestOrg, TWILIO_PHONE};
use crate::sms::{message_sid, verified_twilio, RECIPIENT, SID_A, SID_B};

/// The per-attempt timeout of the provider clients in the tests that tune it.
const CALL_TIMEOUT: Duration = Duration::from_millis(2000);
/// How long a fake provider takes when it is "slow": well past [`CALL_TIMEOUT`].
const SLOW: Duration = Duration::from_secs(4);
/// Slack allowed on top of a timeout budget for the service's own work on a shared, busy machine.
const SLACK: Duration = Duration::from_millis(1500);
/// The sends and provider calls budget: high enough that the service's own rate limits stay out of the way.
const NO_LIMITS: [(&str, &str); 2] = [
    ("BYOC_SMS_PER_MINUTE", "10000"),
    ("BYOC_PROVIDER_CALLS_PER_MINUTE", "10000"),
];

/// Short provider timeouts and backoff, so timeout tests stay fast.
fn fast_calls(config: &mut Config) {
    config.providers.timeouts.request = CALL_TIMEOUT;
    fast_retries(config);
}

/// The default timeouts with a short backoff (3 attempts, 0.1 s then 0.2 s, waits of at most 2 s).
fn fast_retries(config: &mut Config) {
    config.providers.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
    };
}

/// Leaves the configuration as the service reads it (default timeouts and retry policy).
fn defaults(_config: &mut Config) {}

/// The environment of an app whose Twilio and Google fakes are `twilio` and `google`.
fn provider_env(twilio: &MockServer, google: Option<&MockServer>) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = NO_LIMITS
        .iter()
        .map(|(key, value)| (*key, (*value).to_owned()))
        .collect();
    env.push(("TWILIO_API_BASE", twilio.uri()));
    if let Some(google) = google {
        env.push(("GOOGLE_OAUTH_TOKEN_URL", format!("{}/token", google.uri())));
        env.push((
            "GOOGLE_CALENDAR_API_BASE",
            format!("{}/calendar/v3/", google.uri()),
        ));
    }
    env
}

/// Mounts an active Twilio account `sid` owning [`TWILIO_PHONE`] whose sends are answered by `send`.
async fn mount_twilio_account(server: &MockServer, sid: &str, send: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!(
            "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "incoming_phone_numbers": [{"phone_number": TWILIO_PHONE, "capabilities": {"sms": true}}]
        })))
        .mount(server)
        .await;
    mount_send(server, sid, send).await;
}

/// Answers every send of account `sid` with `send`.
async fn mount_send(server: &MockServer, sid: &str, send: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{sid}/Messages.json")))
        .respond_with(send)
        .mount(server)
        .await;
}

/// Replaces the send answer of account `sid` (the account and number lookups stay).
async fn replace_send(server: &MockServer, sid: &str, send: ResponseTemplate) {
    server.reset().await;
    mount_twilio_account(server, sid, send).await;
}

/// Twilio's answer to an accepted message of account `sid`.
fn accepted(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(serde_json::json!({
        "sid": message_sid(sid), "status": "queued"
    }))
}

/// A Twilio error answer with its JSON body.
fn twilio_error(status: u16, code: u32, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({
        "code": code, "message": message, "status": status
    }))
}

/// How many sends (POSTs to `Messages.json`) of account `sid` the fake received.
async fn sends_of(server: &MockServer, sid: &str) -> usize {
    let wanted = format!("/2010-04-01/Accounts/{sid}/Messages.json");
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.method.as_str() == "POST" && request.url.path() == wanted)
        .count()
}

/// An answer of the service, read whole, with the time it took.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: serde_json::Value,
    elapsed: Duration,
}

impl Answer {
    async fn read(started: Instant, response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            retry_after,
            body,
            elapsed: started.elapsed(),
        }
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

/// `POST /api/sms/test` as the org's member.
async fn send_test(app: &TestApp, org: &TestOrg) -> Answer {
    let started = Instant::now();
    let response = app
        .post_json(
            "/api/sms/test",
            &app.token(org.id, org.member),
            &serde_json::json!({"to": RECIPIENT}),
        )
        .await;
    Answer::read(started, response).await
}

/// `POST /api/leads` with a hot score as the org's member.
async fn hot_lead(app: &TestApp, org: &TestOrg) -> Answer {
    let started = Instant::now();
    let response = app
        .post_json(
            "/api/leads",
            &app.token(org.id, org.member),
            &serde_json::json!({"name": "Dana", "score": 95, "notifyPhone": RECIPIENT}),
        )
        .await;
    Answer::read(started, response).await
}

/// The verification status of the org's only credential of `credential_type`.
async fn verification_status(app: &TestApp, org: &TestOrg, credential_type: &str) -> String {
    let rows: serde_json::Value = app
        .get(
            "/api/organization/credentials",
            &app.token(org.id, org.member),
        )
        .await
        .json()
        .await
        .expect("json");
    rows.as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|row| row["credential_type"] == credential_type)
        })
        .and_then(|row| row["verification_status"].as_str())
        .expect("the credential is listed")
        .to_owned()
}

/// Asserts a clear 424 for a provider that could not be asked or whose answer was lost.
fn assert_provider_unavailable(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 424, "{what}: {}", answer.body);
    assert_eq!(answer.code(), "provider_unavailable", "{what}");
    assert!(!answer.message().is_empty(), "{what}");
}

#[tokio::test]
async fn twilio_5xx_on_a_send_is_424_and_the_message_is_never_sent_again() {
    let twilio = MockServer::start().await;
    mount_twilio_account(&twilio, SID_A, accepted(SID_A)).await;
    let app = spawn_app_tuned(Store::Sqlite, &provider_env(&twilio, None), defaults).await;
    let org = app.create_org("Clinic").await;
    verified_twilio(&app, &org, SID_A).await;

    for status in [500, 502, 504] {
        replace_send(
            &twilio,
            SID_A,
            twilio_error(status, 20500, "Internal Server Error"),
        )
        .await;
        let answer = send_test(&app, &org).await;
        assert_provider_unavailable(&answer, &format!("test SMS, Twilio {status}"));
        assert!(
            answer.message().contains("may have accepted"),
            "the caller is told not to resend blindly: {}",
            answer.message()
        );
        assert_eq!(
            sends_of(&twilio, SID_A).await,
            1,
            "Twilio {status}: a send that reached Twilio is never repeated"
        );

        let answer = hot_lead(&app, &org).await;
        assert_provider_unavailable(&answer, &format!("hot lead, Twilio {status}"));
        assert_eq!(
            sends_of(&twilio, SID_A).await,
            2,
            "Twilio {status}: one send per API call"
        );
    }

    // A success answer that cannot be read: Twilio accepted something, so the caller is told it may have been
    // sent rather than invited to resend.
    for (what, answer) in [
        (
            "not JSON",
            ResponseTemplate::new(201).set_body_string("<html>upstream proxy</html>"),
        ),
        (
            "no message sid",
            ResponseTemplate::new(201).set_body_json(serde_json::json!({"status": "queued"})),
        ),
    ] {
        replace_send(&twilio, SID_A, answer).await;
        let answer = send_test(&app, &org).await;
        assert_provider_unavailable(&answer, what);
        assert!(
            answer.message().contains("may have accepted"),
            "{what}: {}",
            answer.message()
        );
        assert_eq!(sends_of(&twilio, SID_A).await, 1, "{what}");
    }
    assert_eq!(
        verification_status(&app, &org, "twilio").await,
        "verified",
        "an outage is not the credential's fault"
    );

    replace_send(&twilio, SID_A, accepted(SID_A)).await;
    let answer = send_test(&app, &org).await;
    assert_eq!(
        answer.status, 200,
        "recovers without a restart: {}",
        answer.body
    );
    assert_eq!(answer.body["sid"], message_sid(SID_A));
    assert_eq!(sends_of(&twilio, SID_A).await, 1);
}

#[tokio::test]
async fn twilio_503_means_not_acted_on_so_it_is_retried_within_the_budget_and_sends_once() {
    let twilio = MockServer::start().await;
    mount_twilio_account(&twilio, SID_A, accepted(SID_A)).await;
    let app = spawn_app_tuned(Store::Sqlite, &provider_env(&twilio, None), defaults).await;
    let org = app.create_org("Clinic").await;
    verified_twilio(&app, &org, SID_A).await;

    // One 503, then Twilio accepts: the API answers 200 with the one accepted message.
    twilio.reset().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID_A}/Messages.json")))
        .respond_with(twilio_error(503, 20503, "Service Unavailable"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&twilio)
        .await;
    mount_twilio_account(&twilio, SID_A, accepted(SID_A)).await;
    let answer = send_test(&app, &org).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["sid"], message_sid(SID_A));
    assert_eq!(
        sends_of(&twilio, SID_A).await,
        2,
        "the refused attempt and the accepted one"
    );

    // 503 every time: the default policy's 3 attempts (none accepted), then a clear 424.
    replace_send(
        &twilio,
        SID_A,
        twilio_error(503, 20503, "Service Unavailable"),
    )
    .await;
    let answer = send_test(&app, &org).await;
    assert_provider_unavailable(&answer, "Twilio 503 throughout");
    assert_eq!(
        sends_of(&twilio, SID_A).await,
        RetryPolicy::default().max_attempts as usize
    );
    assert!(
        answer.elapsed < Duration::from_millis(1500) + SLACK,
        "the default backoff (0.5 s, 1 s) bounds the wait: {:?}",
        answer.elapsed
    );

    // A 503 asking for a wait longer than the backoff bound is not waited for.
    replace_send(
        &twilio,
        SID_A,
        twilio_error(503, 20503, "Service Unavailable").insert_header("Retry-After", "60"),
    )
    .await;
    let answer = send_test(&app, &org).await;
    assert_provider_unavailable(&answer, "Twilio 503 with Retry-After: 60");
    assert_eq!(sends_of(&twilio, SID_A).await, 1);
    assert!(answer.elapsed < SLACK, "{:?}", answer.elapsed);
}

#[tokio::test]
async fn a_send_that_times_out_is_424_within_the_timeout_and_is_never_sent_again() {
    let twilio = MockServer::start().await;
    mount_twilio_account(&twilio, SID_A, accepted(SID_A).set_delay(SLOW)).await;
    let app = spawn_app_tuned(Store::Sqlite, &provider_env(&twilio, None), fast_calls).await;
    let org = app.create_org("Clinic").await;
    verified_twilio(&app, &org, SID_A).await;

    let answer = send_test(&app, &org).await;
    assert_provider_unavailable(&answer, "test SMS, Twilio slower than the timeout");
    assert!(
        answer.message().contains("may have accepted") && answer.message().contains("timed out"),
        "{}",
        answer.message()
    );
    assert!(
        answer.elapsed >= CALL_TIMEOUT && answer.elapsed < CALL_TIMEOUT + SLACK,
        "answered within the timeout budget: {:?}",
        answer.elapsed
    );
    let answer = hot_lead(&app, &org).await;
    assert_provider_unavailable(&answer, "hot lead, Twilio slower than the timeout");
    assert!(
        answer.elapsed < CALL_TIMEOUT + SLACK,
        "{:?}",
        answer.elapsed
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sends_of(&twilio, SID_A).await,
        2,
        "a send whose answer was lost is not repeated: one POST per API call"
    );

    // Slow but within the timeout: accepted, once.
    replace_send(
        &twilio,
        SID_A,
        accepted(SID_A).set_delay(Duration::from_millis(400)),
    )
    .await;
    let answer = send_test(&app, &org).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(sends_of(&twilio, SID_A).await, 1);
}

#[tokio::test]
async fn an_unreachable_twilio_is_424_after_bounded_connection_retries() {
    let twilio = MockServer::start().await;
    mount_twilio_account(&twilio, SID_A, accepted(SID_A)).await;
    let (mut proxy, port) = tcp_proxy_to(&twilio.address().to_string()).await;
    let mut env = provider_env(&twilio, None);
    env.push(("TWILIO_API_BASE", format!("http://127.0.0.1:{port}")));
    let app = spawn_app_tuned(Store::Sqlite, &env, fast_retries).await;
    let org = app.create_org("Clinic").await;
    verified_twilio(&app, &org, SID_A).await;
    assert_eq!(send_test(&app, &org).await.status, 200);
    proxy.cut().await;

    let answer = send_test(&app, &org).await;
    assert_provider_unavailable(&answer, "Twilio refuses connections");
    assert!(
        answer.message().contains("could not connect"),
        "{}",
        answer.message()
    );
    assert!(
        answer.elapsed < Duration::from_millis(300) + SLACK,
        "connection retries are bounded by the backoff (0.1 s, 0.2 s): {:?}",
        answer.elapsed
    );
    assert_eq!(
        sends_of(&twilio, SID_A).await,
        1,
        "only the send made before the cut reached Twilio"
    );
    assert_eq!(verification_status(&app, &org, "twilio").await, "verified");
}

#[tokio::test]
async fn twilio_429_storms_answer_429_with_twilios_retry_after_and_send_nothing_twice() {
    let twilio = MockServer::start().await;
    mount_twilio_account(&twilio, SID_A, accepted(SID_A)).await;
    let app = spawn_app_tuned(Store::Sqlite, &provider_env(&twilio, None), fast_retries).await;
    let org = app.create_org("Clinic").await;
    verified_twilio(&app, &org, SID_A).await;

    // A storm of 40 concurrent sends while Twilio asks for two minutes' rest: each API call makes one POST
    // (the wait is past the backoff bound) and answers 429 carrying Twilio's Retry-After.
    replace_send(
        &twilio,
        SID_A,
        twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "120"),
    )
    .await;
    let storm: Vec<_> = (0..40)
        .map(|index| {
            let app = &app;
            let org = &org;
            async move {
                if index % 2 == 0 {
                    send_test(app, org).await
                } else {
                    hot_lead(app, org).await
                }
            }
        })
        .collect();
    let answers = futures::future::join_all(storm).await;
    for answer in &answers {
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert_eq!(answer.code(), "rate_limited");
        assert_eq!(answer.retry_after.as_deref(), Some("120"));
    }
    assert_eq!(sends_of(&twilio, SID_A).await, 40, "one POST per API call");

    // A short Retry-After is honoured inside the call: 3 attempts in total, then 429 with Twilio's value.
    replace_send(
        &twilio,
        SID_A,
        twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "1"),
    )
    .await;
    let answer = send_test(&app, &org).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert_eq!(sends_of(&twilio, SID_A).await, 3);
    assert!(
        answer.elapsed >= Duration::from_secs(2) && answer.elapsed < Duration::from_secs(2) + SLACK,
        "two waits of Retry-After: {:?}",
        answer.elapsed
    );

    // No Retry-After at all: the backoff, then 429 with a Retry-After of at least one second.
    replace_send(&twilio, SID_A, ResponseTemplate::new(429)).await;
    let answer = hot_lead(&app, &org).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    assert_eq!(sends_of(&twilio, SID_A).await, 3);

    // The storm passes: the next call sends exactly one message.
    replace_send(&twilio, SID_A, accepted(SID_A)).await;
    let answer = send_test(&app, &org).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(sends_of(&twilio, SID_A).await, 1);
    assert_eq!(verification_status(&app, &org, "twilio").await, "verified");
}

const AVAILABILITY: &str =
    "/api/calendar/availability?date=2026-12-01&duration=60&timeZone=America/New_York";

/// The access token the fake Google issues to the OAuth client `client_id`.
fn access_token_of(client_id: &str) -> String {
    format!("ya29.{client_id}")
}

/// A token endpoint answer issuing `client_id`'s access token. It expires within the client's refresh margin
/// (60 s), so it is never reused from the cache and every availability check goes to the token endpoint.
fn token_grant(client_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "access_token": access_token_of(client_id), "expires_in": 60, "token_type": "Bearer"
    }))
}

/// A free/busy answer with one busy hour.
fn free_busy() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({
        "kind": "calendar#freeBusy",
        "calendars": {"primary": {"busy": [
            {"start": "2026-12-01T15:00:00Z", "end": "2026-12-01T16:00:00Z"}
        ]}}
    }))
}

/// Mounts Google for the OAuth client `client_id`: its token endpoint answer, its calendar list, and its
/// free/busy answer (told apart by the client id in the token request and by the access token).
async fn mount_google_client(
    server: &MockServer,
    client_id: &str,
    token: ResponseTemplate,
    free_busy: ResponseTemplate,
) {
    let bearer = format!("Bearer {}", access_token_of(client_id));
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains(format!("client_id={client_id}")))
        .respond_with(token)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/users/me/calendarList"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [{"id": "clinic@example.com", "primary": true, "timeZone": "America/New_York"}]
        })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(free_busy)
        .mount(server)
        .await;
}

/// Adds a Google Calendar credential of OAuth client `client_id` as the org's admin and verifies it.
async fn verified_google(app: &TestApp, org: &TestOrg, client_id: &str) {
    let token = app.token(org.id, org.admin);
    let response = app
        .post_json(
            "/api/organization/credentials/google_calendar",
            &token,
            &serde_json::json!({
                "clientId": client_id,
                "clientSecret": "clinic-client-secret",
                "refreshToken": format!("1//refresh-{client_id}"),
                "displayName": "Clinic calendar"
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let row: serde_json::Value = response.json().await.expect("json");
    let id = row["id"].as_str().expect("id").to_owned();
    let response = app
        .post_json(
            &format!("/api/organization/credentials/{id}/verify"),
            &token,
            &serde_json::json!({}),
        )
        .await;
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["verified"], true, "{body}");
}

/// `GET /api/calendar/availability` as the org's member.
async fn availability(app: &TestApp, org: &TestOrg) -> Answer {
    let started = Instant::now();
    let response = app.get(AVAILABILITY, &app.token(org.id, org.member)).await;
    Answer::read(started, response).await
}

/// How many token requests the fake Google received.
async fn token_requests(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == "/token")
        .count()
}

#[tokio::test]
async fn google_outages_and_429s_are_clear_and_never_mark_the_credential_failed() {
    const CLIENT: &str = "clinic.apps.googleusercontent.com";
    let twilio = MockServer::start().await;
    let google = MockServer::start().await;
    mount_google_client(&google, CLIENT, token_grant(CLIENT), free_busy()).await;
    let app = spawn_app_tuned(
        Store::Sqlite,
        &provider_env(&twilio, Some(&google)),
        fast_calls,
    )
    .await;
    let org = app.create_org("Clinic").await;
    verified_google(&app, &org, CLIENT).await;
    let answer = availability(&app, &org).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let before = token_requests(&google).await;
    let answer = availability(&app, &org).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        token_requests(&google).await,
        before + 1,
        "each check refreshes, so token faults are exercised"
    );

    let google_error = |status: u16, reason: &str| {
        ResponseTemplate::new(status).set_body_json(serde_json::json!({
            "error": {"code": status, "message": reason, "errors": [{"reason": reason}]}
        }))
    };
    let cases: Vec<(&str, ResponseTemplate, ResponseTemplate, u16, Option<&str>)> = vec![
        (
            "token endpoint 500",
            ResponseTemplate::new(500)
                .set_body_json(serde_json::json!({"error": "internal_failure"})),
            free_busy(),
            424,
            None,
        ),
        (
            "token endpoint 503 throughout",
            ResponseTemplate::new(503),
            free_busy(),
            424,
            None,
        ),
        (
            "token endpoint slower than the timeout",
            token_grant(CLIENT).set_delay(SLOW),
            free_busy(),
            424,
            None,
        ),
        (
            "token endpoint 429",
            ResponseTemplate::new(429).insert_header("Retry-After", "30"),
            free_busy(),
            429,
            Some("30"),
        ),
        (
            "free/busy 500",
            token_grant(CLIENT),
            google_error(500, "backendError"),
            424,
            None,
        ),
        (
            "free/busy slower than the timeout",
            token_grant(CLIENT),
            free_busy().set_delay(SLOW),
            424,
            None,
        ),
        (
            "free/busy 429 with Retry-After",
            token_grant(CLIENT),
            google_error(429, "rateLimitExceeded").insert_header("Retry-After", "30"),
            429,
            Some("30"),
        ),
        (
            "free/busy 403 rateLimitExceeded",
            token_grant(CLIENT),
            google_error(403, "rateLimitExceeded"),
            429,
            Some("1"),
        ),
    ];
    for (what, token, busy, status, retry_after) in cases {
        google.reset().await;
        mount_google_client(&google, CLIENT, token, busy).await;
        let answer = availability(&app, &org).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        if status == 424 {
            assert_provider_unavailable(&answer, what);
        } else {
            assert_eq!(answer.code(), "rate_limited", "{what}");
        }
        assert_eq!(answer.retry_after.as_deref(), retry_after, "{what}");
        assert!(
            answer.elapsed < CALL_TIMEOUT + SLACK,
            "{what}: answered within one timeout plus slack: {:?}",
            answer.elapsed
        );
        assert_eq!(
            verification_status(&app, &org, "google_calendar").await,
            "verified",
            "{what}: a transient failure does not mark the credential failed"
        );
    }

    // A storm of 20 concurrent checks while Google asks for 30 s of rest: one free/busy call each (the wait is
    // past the backoff bound), every answer 429 with Google's Retry-After.
    google.reset().await;
    mount_google_client(
        &google,
        CLIENT,
        token_grant(CLIENT),
        google_error(429, "rateLimitExceeded").insert_header("Retry-After", "30"),
    )
    .await;
    let answers = futures::future::join_all((0..20).map(|_| availability(&app, &org))).await;
    for answer in &answers {
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert_eq!(answer.retry_after.as_deref(), Some("30"));
    }
    let free_busy_calls = google
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == "/calendar/v3/freeBusy")
        .count();
    assert_eq!(free_busy_calls, 20, "one free/busy call per API call");
    assert_eq!(
        verification_status(&app, &org, "google_calendar").await,
        "verified"
    );

    google.reset().await;
    mount_google_client(&google, CLIENT, token_grant(CLIENT), free_busy()).await;
    let answer = availability(&app, &org).await;
    assert_eq!(
        answer.status, 200,
        "recovers without a restart: {}",
        answer.body
    );

    // Only Google's invalid_grant says the credential itself is unusable.
    google.reset().await;
    mount_google_client(
        &google,
        CLIENT,
        ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant", "error_description": "Token has been expired or revoked."
        })),
        free_busy(),
    )
    .await;
    let answer = availability(&app, &org).await;
    assert_eq!(answer.status, 424, "{}", answer.body);
    assert_eq!(answer.code(), "provider_refused");
    assert_eq!(
        verification_status(&app, &org, "google_calendar").await,
        "failed"
    );
}

/// p50 and max of `latencies`.
fn p50_and_max(latencies: &mut [Duration]) -> (Duration, Duration) {
    latencies.sort();
    (
        latencies[latencies.len() / 2],
        latencies.last().copied().unwrap_or_default(),
    )
}

/// Organization B's requests, one after another (a test SMS, then an availability check), for `rounds` rounds
/// or until `until`, whichever comes first.
async fn measure_b(
    app: &TestApp,
    org: &TestOrg,
    rounds: usize,
    until: Option<Instant>,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(rounds * 2);
    for _ in 0..rounds {
        if until.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        let answer = send_test(app, org).await;
        assert_eq!(answer.status, 200, "B's SMS: {}", answer.body);
        latencies.push(answer.elapsed);
        let answer = availability(app, org).await;
        assert_eq!(answer.status, 200, "B's availability: {}", answer.body);
        latencies.push(answer.elapsed);
    }
    latencies
}

/// How many of organization A's provider calls (sends of [`SID_A`], free/busy queries with A's token) have
/// reached the fakes.
async fn a_calls_arrived(twilio: &MockServer, google: &MockServer, client_a: &str) -> usize {
    let bearer = format!("Bearer {}", access_token_of(client_a));
    let free_busy_calls = google
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| {
            request.url.path() == "/calendar/v3/freeBusy"
                && request
                    .headers
                    .get("authorization")
                    .and_then(|value| value.to_str().ok())
                    == Some(bearer.as_str())
        })
        .count();
    sends_of(twilio, SID_A).await + free_busy_calls
}

#[tokio::test]
async fn a_slow_provider_of_one_organization_does_not_slow_another_organization_on_postgres() {
    slow_provider_of_one_organization_does_not_slow_another(Store::Postgres).await;
}

#[tokio::test]
async fn a_slow_provider_of_one_organization_does_not_slow_another_organization_on_sqlite() {
    slow_provider_of_one_organization_does_not_slow_another(Store::Sqlite).await;
}

/// Organization A's Twilio and Google answer after [`STORM_DELAY`] while A has a storm of concurrent requests
/// waiting on them (more than the store's connection pool holds, so a request that kept a connection while
/// waiting on its provider would block everyone else); organization B's requests, against its own healthy
/// providers, are measured while every one of A's calls is parked at A's providers and keep their latency.
async fn slow_provider_of_one_organization_does_not_slow_another(store: Store) {
    const CLIENT_A: &str = "clinic-a.apps.googleusercontent.com";
    const CLIENT_B: &str = "clinic-b.apps.googleusercontent.com";
    const STORM: usize = 60;
    const ROUNDS: usize = 10;
    const STORM_DELAY: Duration = Duration::from_secs(6);
    let twilio = MockServer::start().await;
    mount_twilio_account(&twilio, SID_A, accepted(SID_A)).await;
    mount_twilio_account(&twilio, SID_B, accepted(SID_B)).await;
    let google = MockServer::start().await;
    mount_google_client(&google, CLIENT_A, token_grant(CLIENT_A), free_busy()).await;
    mount_google_client(&google, CLIENT_B, token_grant(CLIENT_B), free_busy()).await;
    let app = spawn_app_tuned(store, &provider_env(&twilio, Some(&google)), defaults).await;
    let org_a = app.create_org("Clinic A").await;
    let org_b = app.create_org("Clinic B").await;
    verified_twilio(&app, &org_a, SID_A).await;
    verified_twilio(&app, &org_b, SID_B).await;
    verified_google(&app, &org_a, CLIENT_A).await;
    verified_google(&app, &org_b, CLIENT_B).await;

    measure_b(&app, &org_b, 2, None).await;
    let mut quiet = measure_b(&app, &org_b, ROUNDS, None).await;
    let (quiet_p50, quiet_max) = p50_and_max(&mut quiet);

    // A's Twilio and Google now take STORM_DELAY per answer (within the default 15 s timeout).
    twilio.reset().await;
    mount_twilio_account(&twilio, SID_A, accepted(SID_A).set_delay(STORM_DELAY)).await;
    mount_twilio_account(&twilio, SID_B, accepted(SID_B)).await;
    google.reset().await;
    mount_google_client(
        &google,
        CLIENT_A,
        token_grant(CLIENT_A),
        free_busy().set_delay(STORM_DELAY),
    )
    .await;
    mount_google_client(&google, CLIENT_B, token_grant(CLIENT_B), free_busy()).await;

    let storm_started = Instant::now();
    let storm: Vec<_> = (0..STORM)
        .map(|index| {
            let client = app.client.clone();
            let token = app.token(org_a.id, org_a.member);
            let request = if index % 2 == 0 {
                client
                    .post(app.url("/api/sms/test"))
                    .json(&serde_json::json!({"to": RECIPIENT}))
            } else {
                client.get(app.url(AVAILABILITY))
            };
            tokio::spawn(async move {
                let started = Instant::now();
                let response = request.bearer_auth(token).send().await.expect("sent");
                (response.status().as_u16(), started.elapsed())
            })
        })
        .collect();
    // Wait until every one of A's calls is parked at A's slow providers; none can answer before
    // storm_started + STORM_DELAY, so B is measured while all of them wait.
    while a_calls_arrived(&twilio, &google, CLIENT_A).await < STORM {
        assert!(
            storm_started.elapsed() < STORM_DELAY,
            "A's requests did not all reach their providers within {STORM_DELAY:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let parked = storm_started.elapsed();
    let window_end = storm_started + STORM_DELAY - Duration::from_millis(500);
    let mut stormy = measure_b(&app, &org_b, ROUNDS, Some(window_end)).await;
    let b_done = storm_started.elapsed();
    assert!(
        stormy.len() >= 4 && b_done < STORM_DELAY,
        "B was measured while all of A's requests waited ({} requests, {parked:?} to {b_done:?})",
        stormy.len()
    );
    let b_requests = stormy.len();
    let (stormy_p50, stormy_max) = p50_and_max(&mut stormy);

    let mut a_latencies = Vec::with_capacity(STORM);
    for task in storm {
        let (status, elapsed) = task.await.expect("A's request task");
        assert_eq!(status, 200, "A's slow requests still succeed");
        a_latencies.push(elapsed);
    }
    let (a_p50, a_max) = p50_and_max(&mut a_latencies);
    println!(
        "{store:?}: B quiet: p50 {quiet_p50:?} max {quiet_max:?}; B while A's {STORM} requests wait on providers taking {STORM_DELAY:?}: {b_requests} requests, p50 {stormy_p50:?} max {stormy_max:?} (A parked after {parked:?}, B done after {b_done:?}); A: p50 {a_p50:?} max {a_max:?}"
    );
    assert!(
        a_p50 >= STORM_DELAY,
        "A's requests really waited on the slow providers ({a_p50:?})"
    );
    // One second, or twice B's quiet worst case when the machine is so loaded that B is slow even alone.
    let limit = Duration::from_secs(1).max(quiet_max * 2);
    assert!(
        stormy_max < limit,
        "B keeps its latency while A's providers are slow: max {stormy_max:?} (limit {limit:?})"
    );
    assert!(
        stormy_p50 < quiet_p50 * 2 + Duration::from_millis(100),
        "B's median stays close to its quiet median: {stormy_p50:?} vs {quiet_p50:?}"
    );
    assert_eq!(
        sends_of(&twilio, SID_A).await,
        STORM / 2,
        "one send per A request"
    );
}
