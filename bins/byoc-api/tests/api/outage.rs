//! A database outage while serving (Postgres behind a TCP proxy the test cuts): cached credentials, member
//! roles and organization settings keep hot-lead SMS going until their TTL, the records of what was sent are
//! written once the database is back, and past the TTL the answer is 503 `database_unavailable`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use byoc_credential_store::CredentialType;
use chrono::Utc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{error_code, spawn_app_behind_proxy_with, TestApp, TestOrg};
use crate::leads::messages_sent;
use crate::sms::{fake_twilio_accounts, send_test, verified_twilio};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TO: &str = "+14155550124";

async fn sent_messages(twilio: &MockServer) -> usize {
    messages_sent(twilio).await.len()
}

/// Waits until the queued provider-call records and audit events are written (30 s at most).
async fn wait_for_queues(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric("byoc_write_behind_pending").await > 0.0
        || app.metric("byoc_audit_queue_pending").await > 0.0
    {
        assert!(
            Instant::now() < deadline,
            "queued records not written within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn hot_lead(app: &TestApp, org: &TestOrg) -> reqwest::Response {
    app.post_json(
        "/api/leads",
        &app.token(org.id, org.member),
        &serde_json::json!({"name": "Ada", "score": 95, "notifyPhone": TO}),
    )
    .await
}

/// Accepts every message with a new SID (`SM` + 32 hex digits counting from 1), as Twilio does.
struct NewSidPerMessage(AtomicUsize);

impl Respond for NewSidPerMessage {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let number = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        ResponseTemplate::new(201)
            .set_body_json(serde_json::json!({"sid": sms_sid(number), "status": "queued"}))
    }
}

fn sms_sid(number: usize) -> String {
    format!("SM{number:032x}")
}

async fn outage_app(
    ttl_secs: u64,
) -> (TestApp, crate::helpers::DatabaseProxy, MockServer, TestOrg) {
    let twilio = fake_twilio_accounts(&[SID]).await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        .respond_with(NewSidPerMessage(AtomicUsize::new(0)))
        .with_priority(1)
        .mount(&twilio)
        .await;
    let (app, proxy) = spawn_app_behind_proxy_with(&[
        ("TWILIO_API_BASE", twilio.uri()),
        ("BYOC_CACHE_TTL_SECS", ttl_secs.to_string()),
    ])
    .await;
    let org = app.create_org("Outage clinic").await;
    verified_twilio(&app, &org, SID).await;
    (app, proxy, twilio, org)
}

#[tokio::test]
async fn cached_credentials_keep_hot_lead_sms_going_through_an_outage_and_nothing_is_lost() {
    let (app, mut proxy, twilio, org) = outage_app(60).await;
    // Warm the caches: the member's role, the organization's threshold and the Twilio credential.
    assert_eq!(send_test(&app, &org, TO).await.status(), 200);
    assert_eq!(hot_lead(&app, &org).await.status(), 201);
    assert_eq!(sent_messages(&twilio).await, 2);
    // Let the warm-up's audit events land first: a write cut off between its commit and the answer is
    // retried, and the test counts events exactly.
    wait_for_queues(&app).await;

    proxy.cut().await;
    // The change listener notices the lost connection (`byoc_database_in_doubt`); from then on a read waits
    // at most OUTAGE_READ_WAIT before the cache answers. (A request racing ahead of it waits for the pool's
    // acquire timeout instead, then gets the cached answer all the same.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.metric("byoc_database_in_doubt").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the lost database went unnoticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let sent = send_test(&app, &org, TO).await;
    assert_eq!(sent.status(), 200, "test SMS from the cached credential");
    let lead = hot_lead(&app, &org).await;
    assert_eq!(lead.status(), 201, "hot lead from the cached organization");
    let lead: serde_json::Value = lead.json().await.expect("json");
    assert_eq!(lead["hot"], true);
    assert!(lead["sms"]["sid"].is_string(), "{lead}");
    // The first read that finds the database gone waits OUTAGE_READ_WAIT (500 ms); for OUTAGE_MEMORY after it
    // the others go straight to the cache. Nothing waits for the pool's 5 s acquire timeout.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "two sends during the outage took {:?}",
        started.elapsed()
    );
    assert_eq!(sent_messages(&twilio).await, 4);
    assert!(app.metric("byoc_outage_cached_answers_total").await >= 4.0);
    assert!(
        app.metric("byoc_write_behind_pending").await >= 1.0,
        "the records of the sends wait for the database"
    );
    // What needs the database itself still says so.
    let listed = app
        .get(
            "/api/organization/credentials",
            &app.token(org.id, org.member),
        )
        .await;
    assert_eq!(listed.status(), 503);
    assert_eq!(error_code(listed).await, "database_unavailable");

    proxy.restore().await;
    wait_for_queues(&app).await;
    let tenant = byoc_credential_store::Tenant::user(org.id, org.owner);
    let usage = app
        .repository
        .usage_for_day(&tenant, Utc::now().date_naive())
        .await
        .expect("usage");
    let twilio_calls: u64 = usage
        .iter()
        .filter(|counter| counter.provider == CredentialType::Twilio)
        .map(|counter| counter.calls)
        .sum();
    // Verification is not counted as a provider call; the four sends are.
    assert_eq!(twilio_calls, 4, "{usage:?}");
    let rows = app.database_text().await;
    for number in 1..=4 {
        assert!(
            rows.contains(&sms_sid(number)),
            "sent SMS {number} is recorded"
        );
    }
    let audit = app
        .get_json(
            "/api/organization/audit?limit=100",
            &app.token(org.id, org.owner),
        )
        .await;
    let reads = audit
        .as_array()
        .expect("array")
        .iter()
        .filter(|event| {
            event["action"] == "read"
                && event["detail"]["purpose"]
                    .as_str()
                    .is_some_and(|purpose| purpose.starts_with("sms:"))
        })
        .count();
    assert_eq!(
        reads, 4,
        "every read of the credential for an SMS is audited: {audit:#}"
    );
}

#[tokio::test]
async fn past_the_cache_ttl_an_outage_answers_503_and_sends_nothing() {
    let (app, mut proxy, twilio, org) = outage_app(1).await;
    assert_eq!(send_test(&app, &org, TO).await.status(), 200);
    proxy.cut().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = send_test(&app, &org, TO).await;
    assert_eq!(sent.status(), 503);
    assert_eq!(error_code(sent).await, "database_unavailable");
    assert_eq!(sent_messages(&twilio).await, 1, "nothing sent past the TTL");
}
