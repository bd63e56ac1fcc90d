//! `byoc audit verify`: one line per organization on intact chains, and a non-zero exit naming the first broken
//! link when the database's owner changed an event behind the chain's back.

use byoc_credential_store::{AuditAction, NewAuditEvent, Tenant, UserId};
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
