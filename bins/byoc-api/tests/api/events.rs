//! Credential events (`BYOC_EVENTS_URL`): every status change reaches a local receiver that checks each signature
//! with the reference Standard Webhooks package from PyPI (`tests/events/receiver.sh`), with no secret in any
//! event; a receiver that is down gets every event once it is back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::helpers::{
    fake_twilio, spawn_app_with, Store, TestApp, TWILIO_AUTH_TOKEN, TWILIO_BAD_SID, TWILIO_SID,
};

const LIST: &str = "/api/organization/credentials";

/// A fresh `whsec_` secret.
pub(crate) fn secret() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// A free local port (bound once, then released for the receiver).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// The Python receiver on `port`, once it listens; it writes what it accepted to `out`.
pub(crate) async fn start_receiver(port: u16, secret: &str, out: &Path) -> Child {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/events/receiver.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .arg(port.to_string())
        .arg(secret)
        .arg(out)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the receiver starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .expect(
            "the receiver is ready within two minutes (installing standardwebhooks the first time)",
        )
        .expect("reads");
    assert_eq!(ready.as_deref(), Some("ready"));
    child
}

/// The receiver's records until `wanted` events were accepted or `wait` passed.
pub(crate) async fn received(out: &Path, wanted: usize, wait: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + wait;
    loop {
        let records: Vec<serde_json::Value> = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        let accepted = records
            .iter()
            .filter(|record| record.get("id").is_some())
            .count();
        if accepted >= wanted || Instant::now() >= deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The app on Postgres sending events to `port`, with a fake Twilio.
async fn app_sending_to(port: u16, secret: &str) -> (TestApp, wiremock::MockServer) {
    let twilio = fake_twilio().await;
    let app = spawn_app_with(
        Store::Postgres,
        &[
            ("TWILIO_API_BASE", twilio.uri()),
            ("BYOC_REVERIFY_INTERVAL_SECS", "0".to_owned()),
            ("BYOC_EVENTS_URL", format!("http://127.0.0.1:{port}/hooks")),
            ("BYOC_EVENTS_SECRET", secret.to_owned()),
        ],
    )
    .await;
    (app, twilio)
}

/// Verifies one good and one refused Twilio credential, deactivates the first and purges the second: four
/// events. Returns the two ids.
async fn four_changes(app: &TestApp) -> (String, String, crate::helpers::TestOrg) {
    let org = app.create_org("Clinic").await;
    let owner = app.token(org.id, org.owner);
    let good = app.add_twilio(&owner, TWILIO_SID, "Main").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let bad = app.add_twilio(&owner, TWILIO_BAD_SID, "Old").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for id in [&good, &bad] {
        let response = app
            .post_json(
                &format!("{LIST}/{id}/verify"),
                &owner,
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        app.delete(&format!("{LIST}/{good}"), &owner).await.status(),
        200
    );
    assert_eq!(
        app.delete(&format!("{LIST}/{bad}?purge=true"), &owner)
            .await
            .status(),
        200
    );
    (good, bad, org)
}

/// The (type, credential id) of every accepted event, and checks every one's shape.
fn accepted_events(
    records: &[serde_json::Value],
    org: &crate::helpers::TestOrg,
) -> BTreeSet<(String, String)> {
    let mut ids = BTreeSet::new();
    let mut events = BTreeSet::new();
    for record in records {
        assert!(
            record.get("rejected").is_none(),
            "the reference library accepts every signature: {record}"
        );
        let id = record["id"].as_str().expect("webhook-id");
        ids.insert(id.to_owned());
        let payload = &record["payload"];
        assert_eq!(payload["data"]["eventId"], id);
        assert_eq!(payload["data"]["organizationId"], org.id.to_string());
        assert_eq!(payload["data"]["credentialType"], "twilio");
        assert!(payload["timestamp"]
            .as_str()
            .expect("timestamp")
            .ends_with('Z'));
        events.insert((
            payload["type"].as_str().expect("type").to_owned(),
            payload["data"]["credentialId"]
                .as_str()
                .expect("credentialId")
                .to_owned(),
        ));
    }
    assert_eq!(
        ids.len(),
        events.len(),
        "one webhook-id per event: {records:?}"
    );
    events
}

fn expected(good: &str, bad: &str) -> BTreeSet<(String, String)> {
    [
        ("credential.verified", good),
        ("credential.deactivated", good),
        ("credential.verification_failed", bad),
        ("credential.purged", bad),
    ]
    .into_iter()
    .map(|(kind, id)| (kind.to_owned(), id.to_owned()))
    .collect()
}

#[tokio::test]
async fn status_changes_reach_a_receiver_that_checks_signatures_with_the_reference_library() {
    let folder = tempfile::tempdir().expect("temp dir");
    let out = folder.path().join("events.jsonl");
    let secret = secret();
    let port = free_port();
    let _receiver = start_receiver(port, &secret, &out).await;
    let (app, _twilio) = app_sending_to(port, &secret).await;

    let (good, bad, org) = four_changes(&app).await;
    let records = received(&out, 4, Duration::from_secs(20)).await;
    assert_eq!(accepted_events(&records, &org), expected(&good, &bad));
    let text = std::fs::read_to_string(&out).expect("records");
    assert!(!text.contains(TWILIO_AUTH_TOKEN), "no secret in any event");
    let failed = records
        .iter()
        .find(|record| record["payload"]["type"] == "credential.verification_failed")
        .expect("the failure");
    assert_eq!(failed["payload"]["data"]["verificationStatus"], "failed");
    assert!(failed["payload"]["data"]["verificationError"].is_string());

    // The receiver does check: a forged signature is refused by the reference library.
    let forged = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/hooks"))
        .header("webhook-id", "evt_forged")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl")
        .body(r#"{"type":"credential.verified"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(forged.status(), 400);
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_every_event_after_it_comes_back() {
    let folder = tempfile::tempdir().expect("temp dir");
    let out = folder.path().join("events.jsonl");
    let secret = secret();
    let port = free_port();
    let (app, _twilio) = app_sending_to(port, &secret).await;

    let (good, bad, org) = four_changes(&app).await;
    // Nobody listens: the first attempts fail and are retried with backoff.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!out.exists());

    let _receiver = start_receiver(port, &secret, &out).await;
    let records = received(&out, 4, Duration::from_secs(30)).await;
    assert_eq!(accepted_events(&records, &org), expected(&good, &bad));
}
