//! Periodic re-verification (`BYOC_REVERIFY_INTERVAL_SECS`): a credential the provider stops accepting between
//! two rounds is marked failed within one interval, audited as `service:reverify`; two replicas on one database
//! verify each credential once per round; the `byoc_credentials` gauge counts credentials by type and status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{
    fake_twilio, spawn_app_with, Store, TestApp, STORES, TWILIO_AUTH_TOKEN, TWILIO_PHONE,
    TWILIO_SID,
};

const LIST: &str = "/api/organization/credentials";

/// The credential `id`'s row as `token` sees it.
async fn credential_row(app: &TestApp, token: &str, id: &str) -> serde_json::Value {
    let rows = app.get_json(LIST, token).await;
    rows.as_array()
        .expect("an array")
        .iter()
        .find(|row| row["id"] == id)
        .cloned()
        .expect("the credential is listed")
}

/// How many verification requests the fake Twilio received for `sid`.
async fn verifications_of(twilio: &MockServer, sid: &str) -> usize {
    let wanted = format!("/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json");
    twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path() == wanted)
        .count()
}

#[tokio::test]
async fn a_twilio_account_suspended_between_two_rounds_shows_failed_within_one_interval() {
    for store in STORES {
        suspended_between_rounds(store).await;
    }
}

async fn suspended_between_rounds(store: Store) {
    let interval = Duration::from_secs(3);
    let twilio = fake_twilio().await;
    let app = spawn_app_with(
        store,
        &[
            ("TWILIO_API_BASE", twilio.uri()),
            (
                "BYOC_REVERIFY_INTERVAL_SECS",
                interval.as_secs().to_string(),
            ),
        ],
    )
    .await;
    let org = app.create_org("Clinic").await;
    let admin = app.token(org.id, org.admin);
    let id = app.add_twilio(&admin, TWILIO_SID, "Main").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let verified = app
        .post_json(
            &format!("{LIST}/{id}/verify"),
            &admin,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(verified.status(), 200);

    // A round passes with the account active: verified again, still verified.
    let deadline = Instant::now() + interval * 2;
    while verifications_of(&twilio, TWILIO_SID).await < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        verifications_of(&twilio, TWILIO_SID).await >= 2,
        "{store:?}: re-verified within an interval"
    );
    assert_eq!(
        credential_row(&app, &admin, &id).await["verification_status"],
        "verified"
    );

    // Twilio suspends the account.
    twilio.reset().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/2010-04-01/Accounts/{TWILIO_SID}/IncomingPhoneNumbers.json"
        )))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "code": 20005, "message": "Account not active", "status": 401
        })))
        .mount(&twilio)
        .await;
    let suspended = Instant::now();
    // One interval, plus the task's tick (a twentieth of the interval, at least a second) and slack.
    let deadline = suspended + interval + Duration::from_secs(2);
    let mut row = credential_row(&app, &admin, &id).await;
    while row["verification_status"] != "failed" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        row = credential_row(&app, &admin, &id).await;
    }
    assert_eq!(
        row["verification_status"], "failed",
        "{store:?}: failed within one interval: {row}"
    );
    assert!(row["is_active"].as_bool().expect("is_active"));

    let audit = app
        .get_json("/api/organization/audit?actor=service:reverify", &admin)
        .await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["action"].as_str().expect("action"))
        .collect();
    assert!(
        actions.contains(&"verification_failed"),
        "{store:?}: audited as service:reverify: {audit}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let wanted = r#"byoc_credentials{status="failed",type="twilio"} 1"#;
    let mut metrics = app.metrics_text().await;
    while !metrics.contains(wanted) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        metrics = app.metrics_text().await;
    }
    assert!(metrics.contains(wanted), "{store:?}: {metrics}");
    assert!(metrics.contains(r#"byoc_credentials{status="verified",type="twilio"} 0"#));
    assert!(metrics.contains(r#"byoc_credentials{status="deactivated",type="hubspot"} 0"#));
    assert!(
        !metrics.contains(&org.id.to_string()),
        "no organization ids"
    );
}

/// A fake Twilio account answer that notes when each account was verified.
#[derive(Clone, Default)]
struct Clock {
    seen: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
}

impl Respond for Clock {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if let Ok(mut seen) = self.seen.lock() {
            seen.entry(request.url.path().to_owned())
                .or_default()
                .push(Instant::now());
        }
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "incoming_phone_numbers": [{"phone_number": TWILIO_PHONE, "capabilities": {"sms": true}}]
        }))
    }
}

#[tokio::test]
async fn two_replicas_verify_each_credential_once_per_round() {
    let interval = Duration::from_secs(2);
    let twilio = MockServer::start().await;
    let clock = Clock::default();
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/2010-04-01/Accounts/AC[0-9a-f]{32}/IncomingPhoneNumbers\.json$",
        ))
        .respond_with(clock.clone())
        .mount(&twilio)
        .await;
    let first = spawn_app_with(
        Store::Postgres,
        &[
            ("TWILIO_API_BASE", twilio.uri()),
            (
                "BYOC_REVERIFY_INTERVAL_SECS",
                interval.as_secs().to_string(),
            ),
        ],
    )
    .await;
    let second = first.spawn_replica().await;
    let accounts = 6;
    for number in 0..accounts {
        let org = first.create_org(&format!("Clinic {number}")).await;
        let admin = first.token(org.id, org.admin);
        let response = first
            .post_json(
                &format!("{LIST}/twilio"),
                &admin,
                &serde_json::json!({
                    "accountSid": format!("AC{number:032x}"),
                    "authToken": TWILIO_AUTH_TOKEN,
                    "phoneNumber": TWILIO_PHONE,
                    "displayName": "Main",
                }),
            )
            .await;
        assert_eq!(response.status(), 201);
    }

    // Three and a half rounds with both replicas running.
    tokio::time::sleep(interval * 7 / 2).await;
    let seen = clock.seen.lock().expect("clock").clone();
    assert_eq!(
        seen.len(),
        accounts,
        "every credential was verified: {seen:?}"
    );
    for (account, mut times) in seen {
        times.sort();
        assert!(
            (2..=4).contains(&times.len()),
            "{account}: once per round, {} times in 3.5 rounds",
            times.len()
        );
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            // A round is the interval; a claim may run up to one tick (1 s) late, never twice in a round.
            assert!(
                gap >= interval / 2,
                "{account}: verified twice in one round ({gap:?} apart)"
            );
        }
    }
    drop(second);
}
