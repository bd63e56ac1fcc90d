//! `POST /api/sms/test`: the organization's own Twilio credential, never another's; not configured, unverified,
//! deactivated; legacy fallback only for listed organizations; Twilio's refusals; rate limit; request shape
//! checked by a Prism mock of Twilio's spec.

use base64::Engine as _;
use byoc_credential_store::{
    CredentialId, CredentialRepository, HotLeadThreshold, OrganizationName, Role, Tenant, UserId,
    VerificationOutcome, VerificationStatus,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    error_code, spawn_app_with, Store, TestApp, TestOrg, TWILIO_AUTH_TOKEN, TWILIO_PHONE,
};

/// Organization A's Twilio account.
pub const SID_A: &str = "AC0aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// Organization B's Twilio account.
pub const SID_B: &str = "AC0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
/// The `BYOC_METRICS_TOKEN` of the tests that read the per-organization series.
pub const METRICS_TOKEN: &str = "metrics-token-for-the-tests-0123456789abcdef";
/// A recipient that libphonenumber accepts.
pub const RECIPIENT: &str = "+14155550199";

/// The message SID the fake Twilio answers for an account: `SM` + the account's 32 hex digits.
pub fn message_sid(account_sid: &str) -> String {
    format!("SM{}", &account_sid[2..])
}

/// A fake Twilio with active accounts `sids` (each owning [`TWILIO_PHONE`], SMS-capable) that accepts
/// messages for them.
pub async fn fake_twilio_accounts(sids: &[&str]) -> MockServer {
    let server = MockServer::start().await;
    for sid in sids {
        Mock::given(method("GET"))
            .and(path(format!(
                "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "incoming_phone_numbers": [{"phone_number": TWILIO_PHONE, "capabilities": {"sms": true}}]
            })))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/2010-04-01/Accounts/{sid}/Messages.json")))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "sid": message_sid(sid), "status": "queued"
            })))
            .mount(&server)
            .await;
    }
    server
}

/// Adds a Twilio credential for `sid` as the org's admin and verifies it through the API.
pub async fn verified_twilio(app: &TestApp, org: &TestOrg, sid: &str) -> CredentialId {
    let token = app.token(org.id, org.admin);
    let row = app.add_twilio(&token, sid, &format!("Twilio {sid}")).await;
    let id = row["id"].as_str().expect("id").to_owned();
    let response = app
        .post_json(
            &format!("/api/organization/credentials/{id}/verify"),
            &token,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(response.status(), 200, "verify");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["verified"], true, "{body}");
    id.parse().expect("uuid")
}

/// An app on SQLite whose Twilio base URL is `twilio`, plus extra settings.
pub async fn app_with_twilio(twilio: &MockServer, extra: &[(&str, String)]) -> TestApp {
    app_with_twilio_on(Store::Sqlite, twilio, extra).await
}

/// An app on `store` whose Twilio base URL is `twilio`, plus extra settings.
pub async fn app_with_twilio_on(
    store: Store,
    twilio: &MockServer,
    extra: &[(&str, String)],
) -> TestApp {
    let mut settings = vec![("TWILIO_API_BASE", twilio.uri())];
    settings.extend(extra.iter().cloned());
    spawn_app_with(store, &settings).await
}

/// Sends a test SMS as the org's member.
pub async fn send_test(app: &TestApp, org: &TestOrg, to: &str) -> reqwest::Response {
    app.post_json(
        "/api/sms/test",
        &app.token(org.id, org.member),
        &serde_json::json!({"to": to}),
    )
    .await
}

/// The basic-auth users of the message sends the fake Twilio received.
async fn send_auth_users(twilio: &MockServer) -> Vec<String> {
    twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path().ends_with("/Messages.json"))
        .filter_map(|request| {
            let header = request.headers.get("authorization")?.to_str().ok()?;
            let encoded = header.strip_prefix("Basic ")?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            text.split(':').next().map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn each_organization_sends_with_its_own_twilio_account_and_never_anothers() {
    let twilio = fake_twilio_accounts(&[SID_A, SID_B]).await;
    let app = app_with_twilio(&twilio, &[]).await;
    let org_a = app.create_org("Clinic A").await;
    let org_b = app.create_org("Clinic B").await;
    verified_twilio(&app, &org_a, SID_A).await;
    verified_twilio(&app, &org_b, SID_B).await;

    for (org, sid) in [(&org_a, SID_A), (&org_b, SID_B), (&org_a, SID_A)] {
        let response = send_test(&app, org, RECIPIENT).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["sid"], message_sid(sid), "{body}");
        assert_eq!(body["status"], "queued");
    }
    assert_eq!(send_auth_users(&twilio).await, vec![SID_A, SID_B, SID_A]);

    let sends: Vec<String> = twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path().ends_with("/Messages.json"))
        .map(|request| String::from_utf8_lossy(&request.body).into_owned())
        .collect();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(sends[0].as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(
        field("Body").as_deref(),
        Some("🔥 Hot Lead! Test Lead just expressed high interest in booking.")
    );
    assert_eq!(field("To").as_deref(), Some(RECIPIENT));
    assert_eq!(field("From").as_deref(), Some(TWILIO_PHONE));
    assert_eq!(
        field("StatusCallback"),
        Some(format!(
            "{}/api/webhooks/twilio/status?org={}",
            app.address, org_a.id
        ))
    );

    let audit: serde_json::Value = app
        .get("/api/organization/audit", &app.token(org_a.id, org_a.owner))
        .await
        .json()
        .await
        .expect("json");
    let reads = audit
        .as_array()
        .expect("array")
        .iter()
        .filter(|entry| entry["action"] == "read" && entry["detail"]["purpose"] == "sms:test")
        .count();
    assert_eq!(reads, 2, "{audit}");
}

#[tokio::test]
async fn missing_unverified_and_deactivated_credentials_answer_409_at_once() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let app = app_with_twilio(&twilio, &[]).await;
    let org = app.create_org("Clinic").await;

    let response = send_test(&app, &org, RECIPIENT).await;
    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "credential_not_configured");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("Twilio")),
        "{body}"
    );

    let admin = app.token(org.id, org.admin);
    app.add_twilio(&admin, SID_A, "Unverified").await;
    let response = send_test(&app, &org, RECIPIENT).await;
    assert_eq!(error_code(response).await, "credential_not_configured");

    let id = verified_twilio(&app, &org, SID_A).await;
    assert_eq!(send_test(&app, &org, RECIPIENT).await.status(), 200);
    let response = app
        .delete(&format!("/api/organization/credentials/{id}"), &admin)
        .await;
    assert_eq!(response.status(), 200);
    let response = send_test(&app, &org, RECIPIENT).await;
    assert_eq!(error_code(response).await, "credential_not_configured");
    assert_eq!(send_auth_users(&twilio).await.len(), 1);
}

#[tokio::test]
async fn invalid_recipient_is_422_naming_the_field() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let app = app_with_twilio(&twilio, &[]).await;
    let org = app.create_org("Clinic").await;
    verified_twilio(&app, &org, SID_A).await;
    let response = send_test(&app, &org, "0123").await;
    assert_eq!(response.status(), 422);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("to")),
        "{body}"
    );
    assert!(send_auth_users(&twilio).await.is_empty());
}

/// Creates an organization with one user of each role directly in a store.
async fn org_in(repository: &dyn CredentialRepository, name: &str) -> TestOrg {
    let organization = repository
        .operator_create_organization(
            &OrganizationName::parse(name).expect("valid name"),
            HotLeadThreshold::DEFAULT,
        )
        .await
        .expect("create org");
    let mut users = Vec::new();
    for role in [Role::Owner, Role::Admin, Role::Member] {
        let user = UserId::new_random();
        repository
            .operator_add_member(organization.id, user, role)
            .await
            .expect("add member");
        users.push(user);
    }
    TestOrg {
        id: organization.id,
        owner: users[0],
        admin: users[1],
        member: users[2],
    }
}

#[tokio::test]
async fn the_legacy_fallback_serves_only_listed_organizations_without_their_own_credential() {
    const LEGACY_SID: &str = "AC0ccccccccccccccccccccccccccccccc";
    let twilio = fake_twilio_accounts(&[LEGACY_SID, SID_A]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}", dir.path().join("legacy.db").display());
    let repository = byoc_credential_store::connect(&database_url)
        .await
        .expect("store");
    let listed = org_in(repository.as_ref(), "Listed").await;
    let unlisted = org_in(repository.as_ref(), "Unlisted").await;
    drop(repository);
    let app = app_with_twilio(
        &twilio,
        &[
            ("DATABASE_URL", database_url),
            ("TWILIO_ACCOUNT_SID", LEGACY_SID.to_owned()),
            ("TWILIO_AUTH_TOKEN", "legacy-token-123".to_owned()),
            ("TWILIO_PHONE_NUMBER", TWILIO_PHONE.to_owned()),
            ("BYOC_LEGACY_FALLBACK_ORGS", listed.id.to_string()),
        ],
    )
    .await;

    let response = send_test(&app, &unlisted, RECIPIENT).await;
    assert_eq!(error_code(response).await, "credential_not_configured");
    assert!(send_auth_users(&twilio).await.is_empty());

    let response = send_test(&app, &listed, RECIPIENT).await;
    assert_eq!(response.status(), 200);
    assert_eq!(send_auth_users(&twilio).await, vec![LEGACY_SID]);
    let audit: serde_json::Value = app
        .get(
            "/api/organization/audit",
            &app.token(listed.id, listed.owner),
        )
        .await
        .json()
        .await
        .expect("json");
    assert!(
        audit
            .as_array()
            .expect("array")
            .iter()
            .any(|entry| entry["action"] == "legacy_fallback_used"),
        "{audit}"
    );

    verified_twilio(&app, &listed, SID_A).await;
    assert_eq!(send_test(&app, &listed, RECIPIENT).await.status(), 200);
    assert_eq!(send_auth_users(&twilio).await, vec![LEGACY_SID, SID_A]);
}

#[tokio::test]
async fn twilio_refusals_answer_424_and_an_auth_failure_marks_the_credential_failed() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let app = app_with_twilio(&twilio, &[]).await;
    let org = app.create_org("Clinic").await;
    let id = verified_twilio(&app, &org, SID_A).await;
    twilio.reset().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID_A}/Messages.json")))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400
        })))
        .up_to_n_times(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID_A}/Messages.json")))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "code": 20003, "message": "Authenticate", "status": 401
        })))
        .mount(&twilio)
        .await;

    let response = send_test(&app, &org, RECIPIENT).await;
    assert_eq!(response.status(), 424);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "provider_refused");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("21610"), "{message}");
    assert!(!message.contains(TWILIO_AUTH_TOKEN));

    let response = send_test(&app, &org, RECIPIENT).await;
    assert_eq!(response.status(), 424);
    let rows: serde_json::Value = app
        .get(
            "/api/organization/credentials",
            &app.token(org.id, org.member),
        )
        .await
        .json()
        .await
        .expect("json");
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["id"] == id.to_string()))
        .expect("the credential is listed");
    assert_eq!(row["verification_status"], "failed", "{row}");
    let response = send_test(&app, &org, RECIPIENT).await;
    assert_eq!(error_code(response).await, "credential_not_configured");
}

#[tokio::test]
async fn the_sms_rate_limit_answers_429_with_retry_after() {
    let twilio = fake_twilio_accounts(&[SID_A, SID_B]).await;
    let app = app_with_twilio(
        &twilio,
        &[
            ("BYOC_SMS_PER_MINUTE", "2".to_owned()),
            ("BYOC_METRICS_TOKEN", METRICS_TOKEN.to_owned()),
        ],
    )
    .await;
    let org = app.create_org("Clinic").await;
    let other = app.create_org("Other clinic").await;
    verified_twilio(&app, &org, SID_A).await;
    verified_twilio(&app, &other, SID_B).await;
    assert_eq!(send_test(&app, &org, RECIPIENT).await.status(), 200);
    assert_eq!(send_test(&app, &org, RECIPIENT).await.status(), 200);
    let limited = send_test(&app, &org, RECIPIENT).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(limited).await, "rate_limited");
    assert_eq!(
        send_test(&app, &other, RECIPIENT).await.status(),
        200,
        "another organization has its own budget"
    );
    assert_eq!(send_auth_users(&twilio).await.len(), 3);

    let metrics = app.metrics_text_with(METRICS_TOKEN).await;
    assert!(
        metrics.contains(&format!(
            "byoc_provider_calls_total{{org_id=\"{}\",provider=\"twilio\"}} 2",
            org.id
        )),
        "{metrics}"
    );
    // The refusal is counted for the organization and the limit, and only a scrape with the token sees it.
    assert!(
        metrics.contains(&format!(
            "byoc_rate_limit_refusals_total{{limit=\"sms\",org_id=\"{}\"}} 1",
            org.id
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&format!(
            "byoc_rate_limit_refusals_total{{limit=\"sms\",org_id=\"{}\"}}",
            other.id
        )),
        "{metrics}"
    );
    assert!(!app
        .metrics_text()
        .await
        .contains("byoc_rate_limit_refusals_total{"));
}

#[tokio::test]
async fn sends_conform_to_twilios_openapi_spec() {
    let prism =
        crate::prism::PrismServer::start(crate::prism::testdata("twilio/twilio_api_v2010.json"))
            .await;
    let app = spawn_app_with(
        Store::Sqlite,
        &[("TWILIO_API_BASE", prism.base_url.clone())],
    )
    .await;
    let org = app.create_org("Clinic").await;
    let row = app
        .add_twilio(&app.token(org.id, org.admin), SID_A, "Prism")
        .await;
    let id: CredentialId = row["id"].as_str().expect("id").parse().expect("uuid");
    app.repository
        .record_verification(
            &Tenant::user(org.id, org.admin),
            id,
            &VerificationOutcome {
                status: VerificationStatus::Verified,
                error: None,
            },
        )
        .await
        .expect("mark verified");
    let response = send_test(&app, &org, RECIPIENT).await;
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{body}\n{}", prism.log());
    assert!(
        body["sid"]
            .as_str()
            .is_some_and(|sid| sid.starts_with("SM")),
        "{body}"
    );
}

#[tokio::test]
async fn the_daily_warning_is_logged_once_when_the_threshold_is_reached() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let app = app_with_twilio(&twilio, &[("BYOC_PROVIDER_DAILY_WARNING", "2".to_owned())]).await;
    let org = app.create_org("Busy clinic").await;
    verified_twilio(&app, &org, SID_A).await;
    for _ in 0..4 {
        assert_eq!(send_test(&app, &org, RECIPIENT).await.status(), 200);
    }
    let org_id = org.id.to_string();
    let warnings = crate::helpers::captured_logs()
        .lines()
        .filter(|line| {
            line.contains("daily provider call warning threshold reached") && line.contains(&org_id)
        })
        .count();
    assert_eq!(warnings, 1);
}

/// `byoc_provider_calls_total` counts the calls each replica made, so the sum over replicas is the day's
/// total the store keeps, with nothing counted twice.
#[tokio::test]
async fn provider_call_counters_add_up_across_replicas() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let first = app_with_twilio_on(
        Store::Postgres,
        &twilio,
        &[("BYOC_METRICS_TOKEN", METRICS_TOKEN.to_owned())],
    )
    .await;
    let second = first.spawn_replica().await;
    let org = first.create_org("Clinic").await;
    verified_twilio(&first, &org, SID_A).await;
    for app in [&first, &first, &second] {
        assert_eq!(send_test(app, &org, RECIPIENT).await.status(), 200);
    }
    let series = |count: u32| {
        format!(
            "byoc_provider_calls_total{{org_id=\"{}\",provider=\"twilio\"}} {count}",
            org.id
        )
    };
    let tenant = Tenant::user(org.id, org.owner);
    let mut stored = 0;
    for _ in 0..50 {
        let today = chrono::Utc::now().date_naive();
        stored = first
            .repository
            .usage_for_day(&tenant, today)
            .await
            .expect("usage")
            .iter()
            .map(|counter| counter.calls)
            .sum::<u64>();
        if stored == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stored, 3, "the store's daily counter");
    let first_metrics = first.metrics_text_with(METRICS_TOKEN).await;
    assert!(first_metrics.contains(&series(2)), "{first_metrics}");
    let second_metrics = second.metrics_text_with(METRICS_TOKEN).await;
    assert!(second_metrics.contains(&series(1)), "{second_metrics}");
}
