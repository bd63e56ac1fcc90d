//! Credential change notifications across two stores (two "replicas") on one Postgres database.

use std::time::Duration;

use byoc_credential_store::test_support::fresh_postgres;
use byoc_credential_store::{
    ChangeListener, CredentialRepository, CredentialType, EnvelopeSwap, ServiceName,
    VerificationOutcome, VerificationStatus,
};
use tokio::time::timeout;

use crate::fixtures::{credential, envelope, org, version};

#[tokio::test]
async fn a_change_through_one_replica_reaches_the_other_within_a_second() {
    let database = fresh_postgres().await;
    let replica_a = database.store();
    let replica_b = database.connect_again().await;
    let mut listener = replica_b.listen_credential_changes().await.unwrap();
    let clinic = org(database.operator(), "Clinic").await;
    let new = credential(CredentialType::Twilio, "Main");

    replica_a
        .insert_credential(&clinic.admin, &new)
        .await
        .unwrap();
    let inserted = timeout(Duration::from_secs(1), listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (inserted.org_id, inserted.credential_id),
        (clinic.id, new.id)
    );
    assert_eq!(inserted.credential_type, CredentialType::Twilio);

    replica_a
        .deactivate_credential(&clinic.admin, new.id)
        .await
        .unwrap();
    let deactivated = timeout(Duration::from_secs(1), listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
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
    let purged = timeout(Duration::from_secs(1), listener.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(purged.credential_id, new.id);
    drop(listener);
    replica_b.close().await;
}
