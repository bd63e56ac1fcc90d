//! The Postgres pool's bound: when every connection is busy, a call waits at most the acquire timeout and then
//! reports the database unavailable (the API answers 503), never hangs; and the tenant reads that take many rows
//! (credentials list, audit page) keep their checks in their one statement.

use std::time::{Duration, Instant};

use byoc_credential_store::postgres::{DatabaseRole, PostgresConnectOptions};
use byoc_credential_store::test_support::fresh_postgres;
use byoc_credential_store::{
    AuditAction, AuditPage, CredentialRepository, NewAuditEvent, PostgresStore, StoreError,
};

use crate::fixtures::{credential, org};
use byoc_credential_store::CredentialType;

#[tokio::test]
async fn an_exhausted_pool_reports_the_database_unavailable_within_the_acquire_timeout() {
    let db = fresh_postgres().await;
    let fixture = org(db.operator(), "Pool").await;
    let mut options = PostgresConnectOptions::from_url(&db.app_url(), DatabaseRole::App).unwrap();
    options.max_connections = 1;
    let store = PostgresStore::connect_with_options(options).await.unwrap();

    // The pool's one connection waits on a lock the superuser holds.
    let superuser = db.superuser_pool(1).await;
    let mut lock = superuser.begin().await.unwrap();
    sqlx::query("LOCK TABLE public.organization_api_credentials IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let store = store.clone();
        let member = fixture.member.clone();
        async move { store.list_credentials(&member).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let error = store
        .get_organization(&fixture.member)
        .await
        .expect_err("no connection is free");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "waited {:?}",
        started.elapsed()
    );

    lock.rollback().await.unwrap();
    let listed = waiting.await.unwrap().expect("the waiting read completes");
    assert!(listed.is_empty());
    store
        .get_organization(&fixture.member)
        .await
        .expect("the pool serves again");
}

#[tokio::test]
async fn many_row_tenant_reads_check_membership_in_their_statement() {
    let db = fresh_postgres().await;
    let fixture = org(db.operator(), "Lists").await;
    let store = db.store();
    for name in ["First", "Second", "Third"] {
        let new = credential(CredentialType::Twilio, name);
        store.insert_credential(&fixture.admin, &new).await.unwrap();
        store
            .append_audit_event(
                &fixture.admin,
                &NewAuditEvent {
                    action: AuditAction::parse("created").unwrap(),
                    credential_id: Some(new.id),
                    credential_type: Some(CredentialType::Twilio),
                    detail: serde_json::json!({}),
                },
            )
            .await
            .unwrap();
    }
    let listed = store.list_credentials(&fixture.member).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|row| row.display_name.as_str()).collect();
    assert_eq!(names, ["Third", "Second", "First"], "newest first");
    let page = store
        .list_audit_events(
            &fixture.member,
            AuditPage {
                before: None,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0].id.0 > page[1].id.0, "newest first");
    let rest = store
        .list_audit_events(
            &fixture.member,
            AuditPage {
                before: Some(page[1].id),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert!(rest.iter().all(|event| event.id.0 < page[1].id.0));

    let empty = org(db.operator(), "Empty").await;
    assert!(store
        .list_credentials(&empty.member)
        .await
        .unwrap()
        .is_empty());
    for refused in [
        store.list_credentials(&fixture.outsider).await.map(|_| ()),
        store
            .list_audit_events(
                &fixture.outsider,
                AuditPage {
                    before: None,
                    limit: 10,
                },
            )
            .await
            .map(|_| ()),
        store.list_credentials(&empty.outsider).await.map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(StoreError::Forbidden { .. })),
            "{refused:?}"
        );
    }
}
