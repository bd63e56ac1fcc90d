//! The audit hash chain: intact under concurrent writers, and broken by any edit or deletion made behind its
//! back (on Postgres by a superuser, on SQLite by someone with the file).

use byoc_credential_store::test_support::{fresh_postgres, fresh_sqlite, TestPostgres};
use byoc_credential_store::{AuditAction, AuditChainStatus, CredentialRepository, NewAuditEvent};
use futures::future::join_all;
use sqlx::{Executor, PgPool};

use crate::fixtures::{org, OrgFixture};

fn event(number: usize) -> NewAuditEvent {
    NewAuditEvent {
        action: AuditAction::parse("read").unwrap(),
        credential_id: None,
        credential_type: None,
        detail: serde_json::json!({ "purpose": "sms:test", "number": number }),
    }
}

async fn five_events(
    repo: &impl CredentialRepository,
    operator: &impl CredentialRepository,
) -> OrgFixture {
    let a = org(operator, "Clinic A").await;
    let events: Vec<_> = (1..=5).map(event).collect();
    repo.append_audit_events(&a.service, &events).await.unwrap();
    assert_eq!(
        repo.verify_audit_chain(&a.owner).await.unwrap().status,
        AuditChainStatus::Intact { events: 5 }
    );
    a
}

fn broken_at(status: AuditChainStatus) -> (i64, String) {
    match status {
        AuditChainStatus::Broken {
            first_broken_seq,
            problem,
            ..
        } => (first_broken_seq, problem),
        AuditChainStatus::Intact { events } => {
            panic!("the chain of {events} events should be broken")
        }
    }
}

#[tokio::test]
async fn postgres_chain_stays_intact_under_concurrent_writers() {
    let database = fresh_postgres().await;
    let store = database.store();
    let a = org(database.operator(), "Clinic A").await;
    let b = org(database.operator(), "Clinic B").await;
    let writers = (0..8).map(|writer| {
        let tenant = if writer % 2 == 0 {
            a.member.clone()
        } else {
            b.service.clone()
        };
        async move {
            for number in 0..20 {
                store
                    .append_audit_event(&tenant, &event(number))
                    .await
                    .unwrap();
            }
            store
                .append_audit_events(&tenant, &[event(98), event(99)])
                .await
                .unwrap();
        }
    });
    join_all(writers).await;
    assert_eq!(
        store.verify_audit_chain(&a.owner).await.unwrap().status,
        AuditChainStatus::Intact { events: 88 }
    );
    assert_eq!(
        store.verify_audit_chain(&b.owner).await.unwrap().status,
        AuditChainStatus::Intact { events: 88 }
    );
}

#[tokio::test]
async fn postgres_batches_and_the_row_trigger_extend_one_chain() {
    // Batches are chained by byoc_append_audit_events; rows inserted without their links (rotation's
    // `rotated` events, an insert by hand) by the row trigger. Both must link onto the same chain with the same hashes.
    let database = fresh_postgres().await;
    let store = database.store();
    let a = five_events(store, database.operator()).await;
    let owner = database.superuser_pool(1).await;
    sqlx::query(
        "INSERT INTO credential_audit_log (org_id, actor, action, detail) \
         VALUES ($1, 'operator:rotation', 'rotated', '{\"rewrapped\": 1}')",
    )
    .bind(a.id.as_uuid())
    .execute(&owner)
    .await
    .unwrap();
    store
        .append_audit_events(&a.service, &[event(6), event(7)])
        .await
        .unwrap();
    store
        .append_audit_event(&a.member, &event(8))
        .await
        .unwrap();
    assert_eq!(
        store.verify_audit_chain(&a.owner).await.unwrap().status,
        AuditChainStatus::Intact { events: 9 }
    );
    let (intact, events): (bool, i64) =
        sqlx::query_as("SELECT intact, events FROM byoc_audit_chain_check($1)")
            .bind(a.id.as_uuid())
            .fetch_one(&owner)
            .await
            .unwrap();
    assert_eq!((intact, events), (true, 9));
    owner.close().await;
}

#[tokio::test]
async fn postgres_audit_rows_always_belong_to_an_existing_organization() {
    // credential_audit_log.org_id has no foreign key of its own: every row is written under
    // its organization's chain head, which references organizations. Both directions must still hold.
    let database = fresh_postgres().await;
    let a = five_events(database.store(), database.operator()).await;
    let owner = database.superuser_pool(1).await;
    let sqlstate = |result: Result<_, sqlx::Error>| match result {
        Err(sqlx::Error::Database(error)) => error.code().map(|code| code.into_owned()),
        other => panic!("expected a database error, got {other:?}"),
    };
    assert_eq!(
        sqlstate(
            sqlx::query("DELETE FROM organizations WHERE id = $1")
                .bind(a.id.as_uuid())
                .execute(&owner)
                .await
        ),
        Some("23503".to_owned()),
        "an organization with audit events cannot be deleted"
    );
    assert_eq!(
        sqlstate(
            sqlx::query(
                "INSERT INTO credential_audit_log (org_id, actor, action) \
                 VALUES (gen_random_uuid(), 'operator:test', 'rotated')",
            )
            .execute(&owner)
            .await
        ),
        Some("23503".to_owned()),
        "no audit event for an organization that does not exist"
    );
    owner.close().await;
}

/// A fresh Postgres whose organization got five events, then `tamper` (the organization's id bound as `$1`)
/// run as the table owner; verification must find the chain broken first at `seq`, with `symptom` in the
/// problem. The database, organization and owner pool are handed back for further checks.
async fn postgres_tampered(
    tamper: &str,
    seq: i64,
    symptom: &str,
) -> (TestPostgres, OrgFixture, PgPool) {
    let database = fresh_postgres().await;
    let a = five_events(database.store(), database.operator()).await;
    let owner = database.superuser_pool(1).await;
    sqlx::query(tamper)
        .bind(a.id.as_uuid())
        .execute(&owner)
        .await
        .unwrap();
    let (first_broken, problem) = broken_at(
        database
            .store()
            .verify_audit_chain(&a.member)
            .await
            .unwrap()
            .status,
    );
    assert_eq!(first_broken, seq);
    assert!(problem.contains(symptom), "{problem}");
    (database, a, owner)
}

#[tokio::test]
async fn postgres_edit_behind_the_chain_is_detected() {
    let (database, a, owner) = postgres_tampered(
        "UPDATE credential_audit_log SET detail = '{\"purpose\": \"nothing to see\"}' WHERE org_id = $1 AND seq = 3",
        3,
        "changed",
    )
    .await;
    // The operator's check of every organization finds it too, and reports the head as stored; the runtime
    // role's store may not run it.
    let checked = database
        .operator()
        .operator_verify_audit_chains(None)
        .await
        .unwrap();
    assert_eq!(checked.len(), 1);
    assert_eq!(checked[0].org_id, a.id);
    assert_eq!(broken_at(checked[0].report.status.clone()).0, 3);
    assert_eq!(checked[0].report.head.map(|head| head.seq), Some(5));
    assert!(database
        .store()
        .operator_verify_audit_chains(None)
        .await
        .is_err());
    // The operator's any-org check agrees.
    let intact: bool = sqlx::query_scalar("SELECT intact FROM byoc_audit_chain_check($1)")
        .bind(a.id.as_uuid())
        .fetch_one(&owner)
        .await
        .unwrap();
    assert!(!intact);
    owner.close().await;
}

#[tokio::test]
async fn postgres_deleting_an_event_is_detected() {
    let (_database, _a, owner) = postgres_tampered(
        "DELETE FROM credential_audit_log WHERE org_id = $1 AND seq = 2",
        2,
        "missing",
    )
    .await;
    owner.close().await;
}

#[tokio::test]
async fn postgres_deleting_the_newest_events_is_detected() {
    let (_database, _a, owner) = postgres_tampered(
        "DELETE FROM credential_audit_log WHERE org_id = $1 AND seq >= 4",
        4,
        "newest",
    )
    .await;
    owner.close().await;
}

#[tokio::test]
async fn sqlite_refuses_audit_changes_and_detects_them_behind_its_back() {
    let database = fresh_sqlite().await;
    let store = database.store();
    let a = five_events(store, database.operator()).await;
    let pool = store.pool();
    assert!(pool
        .execute("UPDATE credential_audit_log SET action = 'nothing'")
        .await
        .is_err());
    assert!(pool
        .execute("DELETE FROM credential_audit_log")
        .await
        .is_err());

    // Someone with the file drops the guards and edits an event.
    pool.execute("DROP TRIGGER credential_audit_log_no_update")
        .await
        .unwrap();
    pool.execute("DROP TRIGGER credential_audit_log_no_delete")
        .await
        .unwrap();
    sqlx::query(
        "UPDATE credential_audit_log SET actor = 'service:nobody' WHERE org_id = ? AND seq = 3",
    )
    .bind(a.id.to_string())
    .execute(pool)
    .await
    .unwrap();
    let (seq, problem) = broken_at(store.verify_audit_chain(&a.member).await.unwrap().status);
    assert_eq!(seq, 3);
    assert!(problem.contains("changed"), "{problem}");

    // Deleting events is detected too: a gap, or missing newest events.
    let b = five_events(store, database.operator()).await;
    sqlx::query("DELETE FROM credential_audit_log WHERE org_id = ? AND seq = 2")
        .bind(b.id.to_string())
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        broken_at(store.verify_audit_chain(&b.owner).await.unwrap().status).0,
        2
    );
    let c = five_events(store, database.operator()).await;
    sqlx::query("DELETE FROM credential_audit_log WHERE org_id = ? AND seq = 5")
        .bind(c.id.to_string())
        .execute(pool)
        .await
        .unwrap();
    let (seq, problem) = broken_at(store.verify_audit_chain(&c.owner).await.unwrap().status);
    assert_eq!(seq, 5);
    assert!(problem.contains("newest"), "{problem}");
}
