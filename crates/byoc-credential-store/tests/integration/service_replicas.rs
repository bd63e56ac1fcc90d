//! Two replicas on one Postgres database: a deactivation through one stops the other from serving the
//! credential within a second, also after the other's change listener lost its connection; and a rotation
//! killed (SIGKILL) at random points resumes without losing or corrupting a row.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use byoc_credential_store::service::RotationOptions;
use byoc_credential_store::test_support::fresh_postgres;
use byoc_credential_store::{
    CredentialRepository, CredentialService, CredentialServiceError, CredentialType, Role,
    ServiceName, Tenant, VerificationStatus,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{config, keyring, keyring_with_active, name, purpose, twilio};
use crate::fixtures::org;

/// Polls `service` until it refuses the org's Twilio credential; returns how long that took.
async fn refused_after(
    service: &CredentialService,
    tenant: &byoc_credential_store::Tenant,
) -> Duration {
    let started = Instant::now();
    loop {
        match service
            .get_credential(tenant, CredentialType::Twilio, &purpose("sms:hot_lead"))
            .await
        {
            Err(CredentialServiceError::NotConfigured { .. }) => return started.elapsed(),
            Ok(_) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still served after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_deactivation_on_one_replica_stops_the_other_within_a_second() {
    let database = fresh_postgres().await;
    let store_a = database.store().clone();
    let store_b = database.connect_again().await;
    let clinic = org(database.operator(), "Clinic").await;
    // Long TTLs: only the notification can make B let go.
    let replica_a = CredentialService::new(
        Arc::new(store_a),
        keyring(&[1]),
        config(Duration::from_secs(600)),
    );
    let replica_b = CredentialService::new(
        Arc::new(store_b.clone()),
        keyring(&[1]),
        config(Duration::from_secs(600)),
    );
    assert!(replica_b.follow_changes().await.unwrap());

    for round in 0..2 {
        let stored = replica_a
            .store(
                &clinic.admin,
                &twilio("token"),
                name(&format!("Main {round}")),
            )
            .await
            .unwrap();
        replica_a
            .record_verification(&clinic.admin, stored.id, VerificationStatus::Verified, None)
            .await
            .unwrap();
        // B may have cached "not configured" only as an error (never cached); wait until it serves.
        let started = Instant::now();
        while replica_b
            .get_credential(
                &clinic.service,
                CredentialType::Twilio,
                &purpose("sms:hot_lead"),
            )
            .await
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(5));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if round == 1 {
            // Cut B's listening connection: B bypasses its cache until it listens again.
            let owner = database.superuser_pool(1).await;
            let terminated: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
            )
            .fetch_all(&owner)
            .await
            .unwrap();
            assert!(!terminated.is_empty(), "the listener connection was found");
            owner.close().await;
        }
        replica_a
            .deactivate(&clinic.admin, stored.id)
            .await
            .unwrap();
        let took = refused_after(&replica_b, &clinic.service).await;
        assert!(
            took < Duration::from_secs(1),
            "round {round}: B served the old credential for {took:?}"
        );
    }
    replica_a.shutdown().await.unwrap();
    replica_b.shutdown().await.unwrap();
    store_b.close().await;
}

/// Master key hex of the test keyring's version (`keyring` derives key bytes from the version number).
fn key_hex(version: u8) -> String {
    format!("{version:02x}").repeat(32)
}

fn random_below(bound: u128) -> u128 {
    uuid::Uuid::new_v4().as_u128() % bound
}

#[tokio::test]
async fn a_rotation_killed_at_random_points_resumes_and_every_credential_decrypts() {
    const CREDENTIALS: u64 = 2_000;
    let database = fresh_postgres().await;
    // Operator work throughout: the rotation worker, the checks and the seeding use the operator's store.
    let repository: Arc<dyn CredentialRepository> = Arc::new(database.operator().clone());
    let clinic = org(database.operator(), "Clinic").await;
    let old_keys = keyring(&[1]);
    for index in 0..CREDENTIALS {
        let id = byoc_credential_store::CredentialId::new_random();
        let payload = twilio(&format!("token-{index}"));
        let envelope = old_keys
            .seal(
                byoc_credential_types::CredentialPayload::to_json_bytes(&payload).as_bytes(),
                &byoc_credential_store::service::envelope_context(
                    clinic.id,
                    CredentialType::Twilio,
                    id,
                ),
            )
            .unwrap();
        repository
            .operator_import_credential(
                clinic.id,
                &byoc_credential_store::NewCredential {
                    id,
                    credential_type: CredentialType::Twilio,
                    display_name: name(&format!("Twilio {index}")),
                    public_hint: None,
                    provider_account_id: None,
                    encrypted_data: byoc_credential_store::EncryptedEnvelope::new(
                        envelope.into_bytes(),
                    )
                    .unwrap(),
                    encryption_key_version: std::num::NonZeroU32::MIN,
                },
                &ServiceName::parse("byoc-cli").unwrap(),
                &serde_json::json!({"source": "test"}),
            )
            .await
            .unwrap();
    }
    let both = keyring_with_active(&[1, 2], 2);
    let checker = CredentialService::new(
        Arc::clone(&repository),
        Arc::clone(&both),
        config(Duration::ZERO),
    );
    let mut kills = 0;
    let mut finished = false;
    while !finished {
        let mut child = Command::new(env!("CARGO_BIN_EXE_byoc-rotation-worker"))
            .arg("25")
            .env("DATABASE_URL", database.operator_url())
            .env(
                "BYOC_MASTER_KEYS",
                format!("1:{},2:{}", key_hex(1), key_hex(2)),
            )
            .env("BYOC_ACTIVE_KEY_VERSION", "2")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        if kills < 6 {
            // Kill after a random number of progress lines, then a random few milliseconds more.
            let batches = 1 + random_below(12);
            for _ in 0..batches {
                if lines.next_line().await.unwrap().is_none() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(random_below(15) as u64)).await;
            if child.try_wait().unwrap().is_none() {
                child.kill().await.unwrap();
                kills += 1;
            }
            // Between kills, every row decrypts (old or new version, never half-written).
            let check = checker.check_all().await.unwrap();
            assert_eq!((check.ok, check.failures.len()), (CREDENTIALS, 0));
            continue;
        }
        let mut last = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            last = line;
        }
        assert!(child.wait().await.unwrap().success());
        assert!(last.starts_with("done "), "{last}");
        finished = true;
    }
    assert!(
        kills >= 3,
        "the worker was killed mid-rotation {kills} times"
    );
    let counts = repository.credentials_per_key_version().await.unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(
        (counts[0].key_version.get(), counts[0].credentials),
        (2, CREDENTIALS)
    );
    let new_only = CredentialService::new(
        Arc::clone(&repository),
        keyring_with_active(&[2], 2),
        config(Duration::ZERO),
    );
    let check = new_only.check_all().await.unwrap();
    assert_eq!((check.ok, check.failures.len()), (CREDENTIALS, 0));
    // Rotation options are what the worker used; a final run in-process finds nothing left.
    let report = checker
        .rotate(&RotationOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.rewrapped, 0);
    checker.shutdown().await.unwrap();
    new_only.shutdown().await.unwrap();
}

/// Polls `service` until `tenant`'s role is `expected`; returns how long that took.
async fn role_became(
    service: &CredentialService,
    tenant: &Tenant,
    expected: Option<Role>,
) -> Duration {
    let started = Instant::now();
    while service.member_role(tenant).await.unwrap() != expected {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still not {expected:?} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_member_demoted_or_removed_loses_the_access_on_every_replica_within_a_second() {
    let database = fresh_postgres().await;
    let clinic = org(database.operator(), "Clinic").await;
    // Long TTLs: only the notification can make a replica let go of a cached role.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = database.connect_again().await;
        let service = CredentialService::new(
            Arc::new(store),
            keyring(&[1]),
            config(Duration::from_secs(600)),
        );
        assert!(service.follow_changes().await.unwrap());
        assert_eq!(
            service.member_role(&clinic.admin).await.unwrap(),
            Some(Role::Admin)
        );
        assert_eq!(
            service.organization(&clinic.admin).await.unwrap().name,
            "Clinic"
        );
        replicas.push(service);
    }
    let admin = clinic.admin.actor.user_id().unwrap();
    // The SaaS writes organization_members itself; the database notifies whoever wrote.
    let writer = database.superuser_pool(1).await;
    sqlx::query(
        "UPDATE organization_members SET role = 'member' WHERE org_id = $1 AND user_id = $2",
    )
    .bind(clinic.id.as_uuid())
    .bind(admin.as_uuid())
    .execute(&writer)
    .await
    .unwrap();
    for replica in &replicas {
        let took = role_became(replica, &clinic.admin, Some(Role::Member)).await;
        assert!(took < Duration::from_secs(1), "demoted after {took:?}");
    }
    sqlx::query("DELETE FROM organization_members WHERE org_id = $1 AND user_id = $2")
        .bind(clinic.id.as_uuid())
        .bind(admin.as_uuid())
        .execute(&writer)
        .await
        .unwrap();
    for replica in &replicas {
        let took = role_became(replica, &clinic.admin, None).await;
        assert!(took < Duration::from_secs(1), "removed after {took:?}");
        assert!(
            replica.organization(&clinic.admin).await.is_err(),
            "a removed member no longer reads the organization"
        );
    }
    sqlx::query("UPDATE organizations SET name = 'Renamed' WHERE id = $1")
        .bind(clinic.id.as_uuid())
        .execute(&writer)
        .await
        .unwrap();
    for replica in &replicas {
        let started = Instant::now();
        while replica.organization(&clinic.member).await.unwrap().name != "Renamed" {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "still the old name"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for replica in replicas {
        replica.shutdown().await.unwrap();
    }
}
