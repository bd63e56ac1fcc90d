//! `byoc audit verify`: one line per organization on intact chains, and a non-zero exit naming the first broken
//! link when the database's owner changed an event behind the chain's back.

use byoc_credential_store::{AuditAction, NewAuditEvent, Tenant, UserId};
use byoc_runtime::audit_digest::{file_digest, AuditSigningKey};
use sqlx::Executor;

use crate::helpers::{spawn_app, spawn_app_postgres, CliApp};

/// Creates an organization with a member through the CLI and appends `events` audit events in the member's
/// name through the service's store; returns the organization's id.
async fn org_with_events(app: &CliApp, name: &str, events: usize) -> String {
    let org = app.run(&["org", "create", "--name", name]).ok();
    let user = UserId::new_random();
    app.run(&[
        "member",
        "add",
        "--org",
        &org,
        "--user",
        &user.to_string(),
        "--role",
        "member",
    ])
    .ok();
    let batch: Vec<NewAuditEvent> = (0..events)
        .map(|number| NewAuditEvent {
            action: AuditAction::parse("read").expect("action"),
            credential_id: None,
            credential_type: None,
            detail: serde_json::json!({ "purpose": "sms:test", "number": number }),
        })
        .collect();
    app.service_store()
        .await
        .append_audit_events(&Tenant::user(org.parse().expect("org id"), user), &batch)
        .await
        .expect("events appended");
    org
}

/// The output line about `org`.
fn line_of<'a>(output: &'a str, org: &str) -> &'a str {
    output
        .lines()
        .find(|line| line.starts_with(org))
        .unwrap_or_else(|| panic!("no line for {org} in:\n{output}"))
}

#[tokio::test]
async fn intact_chains_verify_one_line_per_organization() {
    for app in [spawn_app().await, spawn_app_postgres().await] {
        app.run(&["migrate"]).ok();
        let a = org_with_events(&app, "Clinic A", 3).await;
        let b = org_with_events(&app, "Clinic B", 0).await;

        let output = app.run(&["audit", "verify"]).ok();
        assert_eq!(output.lines().count(), 3, "{output}");
        let line = line_of(&output, &a);
        assert!(line.contains("intact: 3 event(s), head 3 "), "{line}");
        let hash = line.rsplit(' ').next().expect("hash");
        assert!(
            hash.len() == 64 && hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{line}"
        );
        assert!(
            line_of(&output, &b).contains("intact: 0 event(s), no head"),
            "{output}"
        );
        assert!(output.ends_with("2 audit chain(s) intact"), "{output}");

        let one = app.run(&["audit", "verify", "--org", &a]).ok();
        assert_eq!(one.lines().count(), 2, "{one}");
        assert!(one.starts_with(&a), "{one}");

        let unknown = UserId::new_random().to_string();
        let line = app
            .run(&["audit", "verify", "--org", &unknown])
            .one_line_failure();
        assert!(
            line.contains("no organization") && line.contains(&unknown),
            "{line}"
        );
        let line = app
            .run(&["audit", "verify", "--org", "nope"])
            .one_line_failure();
        assert!(line.contains("--org"), "{line}");
    }
}

#[tokio::test]
async fn a_row_changed_by_the_owner_fails_naming_the_organization_and_seq() {
    let app = spawn_app_postgres().await;
    app.run(&["migrate"]).ok();
    let a = org_with_events(&app, "Clinic A", 5).await;
    let b = org_with_events(&app, "Clinic B", 2).await;
    app.run(&["audit", "verify"]).ok();

    // The owner of the tables lifts the forced row-level security it is otherwise held to and rewrites one
    // event's detail.
    let owner = app.owner_pool().await;
    owner
        .execute("ALTER TABLE credential_audit_log NO FORCE ROW LEVEL SECURITY")
        .await
        .expect("the owner may alter its table");
    let changed = sqlx::query(
        "UPDATE credential_audit_log SET detail = '{\"purpose\": \"nothing to see\"}' \
         WHERE org_id = $1::uuid AND seq = 2",
    )
    .bind(&a)
    .execute(&owner)
    .await
    .expect("the owner may update its table");
    assert_eq!(changed.rows_affected(), 1);
    owner.close().await;

    let run = app.run(&["audit", "verify"]);
    let stdout = run.stdout.clone();
    let line = run.one_line_failure();
    assert!(
        line.contains(&format!("organization {a} at seq 2")) && line.contains("changed"),
        "{line}"
    );
    assert!(line_of(&stdout, &a).contains("BROKEN at seq 2"), "{stdout}");
    assert!(
        line_of(&stdout, &b).contains("intact: 2 event(s)"),
        "{stdout}"
    );
    app.run(&["audit", "verify", "--org", &b]).ok();
    let line = app
        .run(&["audit", "verify", "--org", &a])
        .one_line_failure();
    assert!(
        line.contains(&format!("organization {a} at seq 2")),
        "{line}"
    );
}

/// The test's digest key (RFC 8032's first test vector; never a real key).
const SIGNING_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

/// The public half of [`SIGNING_SEED`], as `--public-key` takes it.
fn signing_public_key() -> String {
    AuditSigningKey::parse(SIGNING_SEED)
        .expect("seed")
        .public_key()
        .to_hex()
}

/// Issues and files a digest for every organization whose chain moved, as byoc-api's digest task does.
async fn issue_digests(app: &CliApp, dir: &std::path::Path) {
    let key = AuditSigningKey::parse(SIGNING_SEED).expect("seed");
    let store = app.service_store().await;
    for due in store
        .audit_digests_due(std::time::Duration::from_secs(1), 100)
        .await
        .expect("due")
    {
        assert!(store
            .record_audit_digest(&key.sign(&due))
            .await
            .expect("recorded"));
    }
    for digest in store.unfiled_audit_digests(100).await.expect("unfiled") {
        file_digest(dir, &digest).expect("filed");
        store
            .mark_audit_digest_filed(digest.org_id, digest.digest_seq)
            .await
            .expect("marked");
    }
}

/// Lifts the forced row-level security the owner is otherwise held to on the chain's tables, and runs `sql`.
async fn as_owner(app: &CliApp, sql: &str) {
    let owner = app.owner_pool().await;
    for table in ["credential_audit_log", "credential_audit_chain_heads"] {
        owner
            .execute(format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY").as_str())
            .await
            .expect("the owner may alter its table");
    }
    owner
        .execute(sql)
        .await
        .expect("the owner may rewrite its tables");
    owner.close().await;
}

#[tokio::test]
async fn rewrites_that_pass_verify_fail_against_a_digest_issued_before_them() {
    let app = spawn_app_postgres().await;
    app.run(&["migrate"]).ok();
    let a = org_with_events(&app, "Clinic A", 5).await;
    let b = org_with_events(&app, "Clinic B", 3).await;
    let c = org_with_events(&app, "Clinic C", 2).await;
    let digests = tempfile::tempdir().expect("digest folder");
    issue_digests(&app, digests.path()).await;
    let public_key = signing_public_key();
    let dir = digests.path().to_str().expect("UTF-8 path");
    let check = [
        "audit",
        "verify",
        "--digests",
        dir,
        "--public-key",
        &public_key,
    ];
    let output = app.run(&check).ok();
    for (org, seq) in [(&a, 5), (&b, 3), (&c, 2)] {
        assert!(
            output.contains(&format!(
                "{org} digests hold: 1 digest(s), newest at seq {seq}"
            )),
            "{output}"
        );
    }
    // The key can come from BYOC_AUDIT_SIGNING_KEY too.
    app.run_with(
        &["audit", "verify", "--digests", dir],
        &[("BYOC_AUDIT_SIGNING_KEY", SIGNING_SEED)],
    )
    .ok();

    // A: the newest two events deleted and the head moved back to the third, consistently.
    as_owner(
        &app,
        &format!(
            "DELETE FROM credential_audit_log WHERE org_id = '{a}' AND seq > 3; \
             UPDATE credential_audit_chain_heads h SET last_seq = 3, last_hash = l.hash \
             FROM credential_audit_log l WHERE l.org_id = h.org_id AND l.seq = 3 AND h.org_id = '{a}'"
        ),
    )
    .await;
    // B: the second event's detail rewritten and every link after it computed again, head included.
    as_owner(
        &app,
        &format!(
            "DO $$ DECLARE r record; previous bytea; BEGIN \
               UPDATE credential_audit_log SET detail = '{{\"purpose\": \"nothing to see\"}}' \
                 WHERE org_id = '{b}' AND seq = 2; \
               FOR r IN SELECT * FROM credential_audit_log WHERE org_id = '{b}' ORDER BY seq LOOP \
                 IF r.seq = 1 THEN previous := r.prev_hash; END IF; \
                 UPDATE credential_audit_log SET prev_hash = previous, \
                   hash = byoc_audit_hash(previous, r.seq, r.org_id, r.at, r.actor, r.action, r.credential_id, \
                                          r.credential_type, r.detail) \
                   WHERE id = r.id RETURNING hash INTO previous; \
               END LOOP; \
               UPDATE credential_audit_chain_heads SET last_hash = previous WHERE org_id = '{b}'; \
             END $$"
        ),
    )
    .await;

    // Both rewrites pass the chain check on its own...
    let output = app.run(&["audit", "verify"]).ok();
    assert!(
        line_of(&output, &a).contains("intact: 3 event(s), head 3 "),
        "{output}"
    );
    assert!(
        line_of(&output, &b).contains("intact: 3 event(s), head 3 "),
        "{output}"
    );

    // ...and both fail against the digests issued before them; C, untouched, still holds.
    let run = app.run(&check);
    let stdout = run.stdout.clone();
    let line = run.one_line_failure();
    assert!(
        stdout.contains(&format!(
            "{a} DIGESTS FAIL: the chain no longer has event 5"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{b} DIGESTS FAIL: event 3 is not the one"))
            && stdout.contains("(the chain was rewritten)"),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{c} digests hold")), "{stdout}");
    let first = if a < b { &a } else { &b };
    assert!(
        line.contains(&format!("organization {first} does not match its digests")),
        "{line}"
    );
}

#[tokio::test]
async fn forged_missing_and_foreign_digests_are_refused() {
    let app = spawn_app_postgres().await;
    app.run(&["migrate"]).ok();
    let a = org_with_events(&app, "Clinic A", 1).await;
    let digests = tempfile::tempdir().expect("digest folder");
    let store = app.service_store().await;
    let service = Tenant::service(a.parse().expect("org id"), "test".parse().expect("name"));
    // Three digests: at seq 1, 2 and 3.
    for round in 0..3 {
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            store
                .append_audit_events(
                    &service,
                    &[NewAuditEvent {
                        action: AuditAction::parse("read").expect("action"),
                        credential_id: None,
                        credential_type: None,
                        detail: serde_json::json!({}),
                    }],
                )
                .await
                .expect("appended");
        }
        issue_digests(&app, digests.path()).await;
    }
    let dir = digests.path().to_str().expect("UTF-8 path");
    let public_key = signing_public_key();
    let check = [
        "audit",
        "verify",
        "--digests",
        dir,
        "--public-key",
        &public_key,
    ];
    let output = app.run(&check).ok();
    assert!(
        output.contains(&format!("{a} digests hold: 3 digest(s), newest at seq 3")),
        "{output}"
    );

    // Another key's public half refuses every file.
    let other = AuditSigningKey::generate()
        .expect("key")
        .public_key()
        .to_hex();
    let line = app
        .run(&["audit", "verify", "--digests", dir, "--public-key", &other])
        .one_line_failure();
    assert!(
        line.contains("3 digest file(s) refused") && line.contains("signature does not hold"),
        "{line}"
    );

    // A digest removed from the middle breaks the digests' links.
    let path = |seq: i64| digests.path().join(&a).join(format!("{seq:012}.json"));
    let middle = std::fs::read_to_string(path(2)).expect("the middle digest");
    std::fs::remove_file(path(2)).expect("removed");
    let run = app.run(&check);
    let stdout = run.stdout.clone();
    let line = run.one_line_failure();
    assert!(
        stdout.contains("does not follow") && line.contains(&a),
        "{stdout}\n{line}"
    );

    // A payload edited after signing is refused.
    let forged = middle.replace("\\\"headSeq\\\":2", "\\\"headSeq\\\":1");
    assert_ne!(forged, middle);
    std::fs::write(path(2), forged).expect("forged");
    let line = app.run(&check).one_line_failure();
    assert!(
        line.contains("1 digest file(s) refused") && line.contains("signature does not hold"),
        "{line}"
    );
    std::fs::write(path(2), middle).expect("restored");
    app.run(&check).ok();

    // Bad input: no such folder, a malformed key, --public-key without --digests.
    let line = app
        .run(&[
            "audit",
            "verify",
            "--digests",
            "/nonexistent/digests",
            "--public-key",
            &public_key,
        ])
        .one_line_failure();
    assert!(
        line.contains("--digests") && line.contains("/nonexistent/digests"),
        "{line}"
    );
    let line = app
        .run(&["audit", "verify", "--digests", dir, "--public-key", "xyz"])
        .one_line_failure();
    assert!(line.contains("--public-key:"), "{line}");
    let run = app.run(&["audit", "verify", "--public-key", &public_key]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}
