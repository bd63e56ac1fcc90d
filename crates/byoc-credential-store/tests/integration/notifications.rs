//! Credential change notifications across two stores (two "replicas") on one Postgres database.

use std::time::Duration;

use byoc_credential_store::test_support::fresh_postgres;
use byoc_credential_store::{
    ChangeListener, CredentialChange, CredentialRepository, CredentialType, EnvelopeSwap, Role,
    ServiceName, StoreChange, UserId, VerificationOutcome, VerificationStatus,
};
use tokio::time::timeout;

use crate::fixtures::{credential, envelope, org, version};

/// The credential change a notification reports.
fn credential_change(change: Option<StoreChange>) -> CredentialChange {
    match change {
        Some(StoreChange::Credential(change)) => change,
        other => panic!("not a credential change: {other:?}"),
    }
}

#[tokio::test]
async fn a_change_through_one_replica_reaches_the_other_within_a_second() {
    let database = fresh_postgres().await;
    let replica_a = database.store();
    let replica_b = database.connect_again().await;
    let clinic = org(database.operator(), "Clinic").await;
    let mut listener = replica_b.listen_credential_changes().await.unwrap();
    let new = credential(CredentialType::Twilio, "Main");

    replica_a
        .insert_credential(&clinic.admin, &new)
        .await
        .unwrap();
    let inserted = credential_change(
        timeout(Duration::from_secs(1), listener.recv())
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(
        (inserted.org_id, inserted.credential_id),
        (clinic.id, new.id)
    );
    assert_eq!(inserted.credential_type, CredentialType::Twilio);

    replica_a
        .deactivate_credential(&clinic.admin, new.id)
        .await
        .unwrap();
    let deactivated = credential_change(
        timeout(Duration::from_secs(1), listener.recv())
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(deactivated.credential_id, new.id);

    let failed = VerificationOutcome {
        status: VerificationStatus::Failed,
        error: None,
    };
    replica_a
        .record_verification(&clinic.service, new.id, &failed)
        .await
        .unwrap();
    assert!(timeout(Duration::from_secs(1), listener.recv())
        .await
        .unwrap()
        .unwrap()
        .is_some());

    // Rotation re-wraps without changing a secret: no notification.
    let stored = replica_a
        .get_credential(&clinic.owner, new.id)
        .await
        .unwrap();
    let swap = EnvelopeSwap {
        id: new.id,
        expected: stored.encrypted_data,
        expected_key_version: stored.metadata.encryption_key_version,
        replacement: envelope(b"rewrapped"),
        replacement_key_version: version(2),
    };
    assert_eq!(
        database
            .operator()
            .operator_swap_envelopes(&[swap], &ServiceName::parse("key-rotation").unwrap())
            .await
            .unwrap(),
        vec![new.id]
    );
    assert!(
        timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "rotation stays quiet"
    );

    replica_a
        .purge_credential(&clinic.owner, new.id)
        .await
        .unwrap();
    let purged = credential_change(
        timeout(Duration::from_secs(1), listener.recv())
            .await
            .unwrap()
            .unwrap(),
    );
    assert_eq!(purged.credential_id, new.id);
    drop(listener);
    replica_b.close().await;
}

/// Members and organizations notify too, whoever writes them (here the superuser, as a SaaS writing
/// `organization_members` directly would).
#[tokio::test]
async fn member_and_organization_changes_are_notified() {
    let database = fresh_postgres().await;
    let store = database.connect_again().await;
    let mut listener = store.listen_credential_changes().await.unwrap();
    let clinic = org(database.operator(), "Clinic").await;
    // The fixture added three members.
    for _ in 0..3 {
        assert!(
            matches!(next(&mut listener).await, StoreChange::Member { org_id, .. } if org_id == clinic.id)
        );
    }
    let admin = clinic.admin.actor.user_id().unwrap();
    let superuser = database.superuser_pool(1).await;
    sqlx::query(
        "UPDATE organization_members SET role = 'member' WHERE org_id = $1 AND user_id = $2",
    )
    .bind(clinic.id.as_uuid())
    .bind(admin.as_uuid())
    .execute(&superuser)
    .await
    .unwrap();
    assert_eq!(
        next(&mut listener).await,
        StoreChange::Member {
            org_id: clinic.id,
            user_id: admin
        }
    );
    database
        .operator()
        .operator_add_member(clinic.id, UserId::new_random(), Role::Member)
        .await
        .unwrap();
    assert!(matches!(
        next(&mut listener).await,
        StoreChange::Member { .. }
    ));
    sqlx::query("UPDATE organizations SET name = 'Renamed' WHERE id = $1")
        .bind(clinic.id.as_uuid())
        .execute(&superuser)
        .await
        .unwrap();
    assert_eq!(
        next(&mut listener).await,
        StoreChange::Organization { org_id: clinic.id }
    );
    drop(listener);
    store.close().await;
}

/// The next notification, within a second.
async fn next(listener: &mut impl ChangeListener) -> StoreChange {
    timeout(Duration::from_secs(1), listener.recv())
        .await
        .expect("notified within a second")
        .unwrap()
        .unwrap()
}
