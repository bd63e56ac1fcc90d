//! Signed audit digests: two replicas on one database sign each organization's moved chain head once per
//! interval, file each digest once in `BYOC_AUDIT_DIGEST_DIR` and deliver it as an `audit.digest` event; an
//! independent Ed25519 implementation (Python's `cryptography`, `tests/audit/check_digests.sh`) checks every
//! signature with the key `GET /api/audit/signing-key` serves. Without a key, digests are off and said so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::events::{free_port, received, secret, start_receiver};
use crate::helpers::{captured_logs, error_code, spawn_app_with, Store, TestApp};

/// RFC 8032's first test vector (never a real key) and its public key.
const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// The digest files of `org` under `dir`, in name (position) order.
fn digest_files(dir: &Path, org: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(org))
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| {
                    path.extension()
                        .is_some_and(|extension| extension == "json")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Waits until a digest of `org` signs `head_seq`; returns its file.
async fn digest_at(dir: &Path, org: &str, head_seq: i64) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(30);
    let wanted = dir.join(org).join(format!("{head_seq:012}.json"));
    while !wanted.exists() {
        assert!(
            Instant::now() < deadline,
            "no digest at {head_seq} within 30 s: {:?}",
            digest_files(dir, org)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wanted
}

/// Runs the independent checker on `files`; its JSON lines.
fn check_independently(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/audit/check_digests.sh");
    let output = std::process::Command::new("bash")
        .arg(script)
        .arg(PUBLIC_KEY)
        .args(files)
        .output()
        .expect("the checker runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

async fn head(app: &TestApp, token: &str) -> (i64, String) {
    let report = app.get_json("/api/organization/audit/verify", token).await;
    assert_eq!(report["intact"], true, "{report}");
    (
        report["headSeq"].as_i64().expect("headSeq"),
        report["headHash"].as_str().expect("headHash").to_owned(),
    )
}

#[tokio::test]
async fn two_replicas_sign_each_moved_head_once_file_it_and_deliver_it() {
    let port = free_port();
    let events_secret = secret();
    let out = tempfile::tempdir().expect("receiver folder");
    let records = out.path().join("events.jsonl");
    let _receiver = start_receiver(port, &events_secret, &records).await;
    let digests = tempfile::tempdir().expect("digest folder");
    let app = spawn_app_with(
        Store::Postgres,
        &[
            ("BYOC_AUDIT_SIGNING_KEY", SEED.to_owned()),
            ("BYOC_AUDIT_DIGEST_INTERVAL_SECS", "1".to_owned()),
            (
                "BYOC_AUDIT_DIGEST_DIR",
                digests.path().display().to_string(),
            ),
            ("BYOC_EVENTS_URL", format!("http://127.0.0.1:{port}/hooks")),
            ("BYOC_EVENTS_SECRET", events_secret.clone()),
            ("BYOC_REVERIFY_INTERVAL_SECS", "0".to_owned()),
        ],
    )
    .await;
    let replica = app.spawn_replica().await;
    for server in [&app, &replica] {
        let key = reqwest::get(server.url("/api/audit/signing-key"))
            .await
            .expect("served without a token");
        assert_eq!(key.status(), 200);
        let key: serde_json::Value = key.json().await.expect("JSON");
        assert_eq!(
            key,
            serde_json::json!({"algorithm": "Ed25519", "publicKey": PUBLIC_KEY})
        );
    }

    let org = app.create_org("Clinic").await;
    let org_id = org.id.to_string();
    let owner = app.token(org.id, org.owner);
    app.add_twilio(&owner, crate::helpers::TWILIO_SID, "Main")
        .await;
    let (first_seq, first_hash) = head(&app, &owner).await;
    let first = digest_at(digests.path(), &org_id, first_seq).await;

    // The chain moves on the replica; the next digest signs the new head and names the previous digest.
    let replica_owner = replica.token(org.id, org.owner);
    replica
        .add_twilio(
            &replica_owner,
            "AC1123456789abcdef0123456789abcdef",
            "Backup",
        )
        .await;
    let (second_seq, second_hash) = head(&replica, &replica_owner).await;
    assert!(second_seq > first_seq);
    let second = digest_at(digests.path(), &org_id, second_seq).await;

    // Let both replicas run a few more rounds with nothing new to sign.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let files = digest_files(digests.path(), &org_id);
    assert_eq!(
        files,
        vec![first.clone(), second.clone()],
        "one digest per moved head"
    );
    let issued = app
        .metric("byoc_audit_digests_total{outcome=\"issued\"}")
        .await
        + replica
            .metric("byoc_audit_digests_total{outcome=\"issued\"}")
            .await;
    assert_eq!(issued, 2.0, "of two replicas, one issued each digest");

    let checked = check_independently(&files);
    assert!(
        checked.iter().all(|record| record["valid"] == true),
        "{checked:?}"
    );
    let payloads: Vec<&serde_json::Value> =
        checked.iter().map(|record| &record["payload"]).collect();
    assert_eq!(payloads[0]["orgId"], org_id);
    assert_eq!(payloads[0]["headSeq"], first_seq);
    assert_eq!(payloads[0]["headHash"], first_hash);
    assert_eq!(payloads[0]["previousDigestHash"], serde_json::Value::Null);
    assert_eq!(payloads[1]["headSeq"], second_seq);
    assert_eq!(payloads[1]["headHash"], second_hash);
    let first_text: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&first).expect("digest")).expect("JSON");
    let previous = hex_sha256(first_text["payload"].as_str().expect("payload"));
    assert_eq!(payloads[1]["previousDigestHash"], previous);

    // Each digest also went out as an event the reference Standard Webhooks library accepts.
    let records = received(&records, 2, Duration::from_secs(30)).await;
    let delivered: Vec<&serde_json::Value> = records
        .iter()
        .inspect(|record| assert!(record.get("rejected").is_none(), "{record}"))
        .map(|record| &record["payload"])
        .filter(|payload| payload["type"] == "audit.digest")
        .collect();
    assert_eq!(delivered.len(), 2, "{records:?}");
    for (payload, file) in delivered.iter().zip([&first, &second]) {
        let filed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).expect("digest")).expect("JSON");
        assert_eq!(payload["data"]["organizationId"], org_id);
        assert_eq!(payload["data"]["digest"], filed);
    }
}

fn hex_sha256(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test]
async fn without_a_key_digests_are_off_and_the_service_says_so() {
    let app = spawn_app_with(Store::Sqlite, &[]).await;
    let response = reqwest::get(app.url("/api/audit/signing-key"))
        .await
        .expect("answered");
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
    assert!(
        captured_logs().contains("audit digests are off: set BYOC_AUDIT_SIGNING_KEY"),
        "said at start"
    );
}
