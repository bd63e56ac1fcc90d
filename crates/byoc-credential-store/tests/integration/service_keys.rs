//! The start-up key check, rotation and `keys check` through the credential service, on Postgres and
//! SQLite.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use byoc_credential_store::service::{
    check_keyring, KeyringMismatch, RotationOptions, RotationProgress,
};
use byoc_credential_store::test_support::{fresh_postgres, fresh_sqlite};
use byoc_credential_store::{
    AuditPage, CredentialRepository, CredentialService, CredentialType, KeyVersionCount,
    ServiceConfig, ServiceName, VerificationStatus,
};
use byoc_crypto::{CryptoError, KeyVersion, Keyring, MasterKey};

use super::{config, keyring, keyring_with_active, name, purpose, token_of, twilio};
use crate::fixtures::{org, OrgFixture};

fn version(number: u32) -> NonZeroU32 {
    NonZeroU32::new(number).unwrap()
}

/// Stores `count` verified Twilio credentials in each organization with the given keyring.
async fn seed(
    repository: &Arc<dyn CredentialRepository>,
    keyring: Arc<Keyring>,
    clinics: &[&OrgFixture],
    count: usize,
) {
    let service = CredentialService::new(Arc::clone(repository), keyring, config(Duration::ZERO));
    for clinic in clinics {
        for index in 0..count {
            let stored = service
                .store(
                    &clinic.admin,
                    &twilio(&format!("token-{index}")),
                    name(&format!("Twilio {index}")),
                )
                .await
                .unwrap();
            service
                .record_verification(&clinic.admin, stored.id, VerificationStatus::Verified, None)
                .await
                .unwrap();
        }
    }
    service.shutdown().await.unwrap();
}

async fn key_check<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&operator, "Clinic").await;

    let first = check_keyring(repository.as_ref(), &keyring(&[1]))
        .await
        .unwrap();
    assert!(first.recorded_active);
    assert_eq!(first.matched, [KeyVersion::new(1).unwrap()]);
    seed(&repository, keyring(&[1]), &[&clinic], 2).await;
    let again = check_keyring(repository.as_ref(), &keyring(&[1]))
        .await
        .unwrap();
    assert!(!again.recorded_active);
    assert!(again.missing.is_empty());

    // A different key under version 1 (with a new active version 2): refused before anything is written.
    let wrong = Arc::new(
        Keyring::new(
            vec![
                (KeyVersion::new(1).unwrap(), MasterKey::from_bytes([9; 32])),
                (KeyVersion::new(2).unwrap(), MasterKey::from_bytes([2; 32])),
            ],
            KeyVersion::new(2).unwrap(),
        )
        .unwrap(),
    );
    let refused = CredentialService::start(
        Arc::clone(&repository),
        Arc::clone(&wrong),
        config(Duration::ZERO),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, KeyringMismatch::WrongKey(v) if v.get() == 1),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        "BYOC_MASTER_KEYS: the key for version 1 is not the key this database's data was written with"
    );
    let stored_versions: Vec<u32> = repository
        .key_check_values()
        .await
        .unwrap()
        .iter()
        .map(|value| value.key_version.get())
        .collect();
    assert_eq!(stored_versions, [1], "nothing written for version 2");

    // Version 1 wraps data but is missing from a keyring of version 2 only: reported.
    let (service, report) = CredentialService::start(
        Arc::clone(&repository),
        keyring(&[2]),
        config(Duration::ZERO),
    )
    .await
    .unwrap();
    assert!(report.recorded_active);
    assert_eq!(
        report.missing,
        [KeyVersionCount {
            key_version: version(1),
            credentials: 2
        }]
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn key_check_on_postgres() {
    let database = fresh_postgres().await;
    key_check(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn key_check_on_sqlite() {
    let database = fresh_sqlite().await;
    key_check(database.store().clone(), database.operator().clone()).await;
}

/// Rotation moves every row to the active version while the service keeps serving; progress counts down;
/// the `rotated` events of each organization count its rows once; `check` then decrypts everything, and
/// lists what a keyring without the old version cannot.
async fn rotation<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let first = org(&operator, "First").await;
    let second = org(&operator, "Second").await;
    seed(&repository, keyring(&[1]), &[&first, &second], 15).await;

    let rotated_keyring = keyring_with_active(&[1, 2], 2);
    let service = CredentialService::new(
        Arc::clone(&repository),
        Arc::clone(&rotated_keyring),
        config(Duration::from_secs(60)),
    );
    // The operator rotates and checks (the CLI, with the operator's store) while the service serves.
    let operator_repository: Arc<dyn CredentialRepository> = Arc::new(operator.clone());
    let rotator = CredentialService::new(
        Arc::clone(&operator_repository),
        Arc::clone(&rotated_keyring),
        config(Duration::ZERO),
    );
    let before = service
        .get_payload::<byoc_credential_types::TwilioCredential>(
            &first.service,
            &purpose("sms:test"),
        )
        .await
        .unwrap();
    let mut seen: Vec<RotationProgress> = Vec::new();
    let options = RotationOptions {
        batch_size: 4,
        swaps_in_flight: 3,
        ..RotationOptions::default()
    };
    let report = rotator
        .rotate(&options, |progress| seen.push(progress.clone()))
        .await
        .unwrap();
    assert_eq!(report.rewrapped, 30);
    assert_eq!(report.active_version, version(2));
    assert!(report.failures.is_empty());
    assert_eq!(
        report.remaining,
        [KeyVersionCount {
            key_version: version(2),
            credentials: 30
        }]
    );
    assert_eq!(seen.first().unwrap().remaining[0].credentials, 30);
    assert_eq!(seen.last().unwrap().rewrapped, 30);
    assert_eq!(seen.last().unwrap().remaining[0].credentials, 0);
    assert!(seen
        .windows(2)
        .all(|pair| pair[0].rewrapped <= pair[1].rewrapped));

    let after = service
        .get_payload::<byoc_credential_types::TwilioCredential>(
            &first.service,
            &purpose("sms:test"),
        )
        .await
        .unwrap();
    assert_eq!(token_of(&after.payload), token_of(&before.payload));
    let check = rotator.check_all().await.unwrap();
    assert_eq!((check.ok, check.failures.len()), (30, 0));

    // A second run finds nothing to do.
    let again = rotator.rotate(&options, |_| {}).await.unwrap();
    assert_eq!(again.rewrapped, 0);

    for clinic in [&first, &second] {
        let rotated: Vec<_> = service
            .audit_events(
                &clinic.member,
                AuditPage {
                    limit: 100,
                    before: None,
                },
            )
            .await
            .unwrap()
            .into_iter()
            .filter(|event| event.action.as_str() == "rotated")
            .collect();
        // One event per swapped batch that held rows of this organization, together counting each of its
        // 15 rows once.
        assert!(!rotated.is_empty());
        assert!(rotated
            .iter()
            .all(|event| event.detail["from_key_version"] == 1
                && event.detail["key_version"] == 2
                && event.actor.to_string() == "service:key-rotation"));
        let counted: u64 = rotated
            .iter()
            .map(|event| event.detail["rewrapped"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, 15);
    }
    service.shutdown().await.unwrap();
    rotator.shutdown().await.unwrap();

    // Everything is on version 2 now: a keyring with only version 1 fails every row.
    let stale = CredentialService::new(
        Arc::clone(&operator_repository),
        keyring(&[1]),
        config(Duration::ZERO),
    );
    let check = stale.check_all().await.unwrap();
    assert_eq!(check.ok, 0);
    assert_eq!(check.failures.len(), 30);
    let orgs: HashMap<_, usize> =
        check
            .failures
            .iter()
            .fold(HashMap::new(), |mut orgs, failure| {
                *orgs.entry(failure.org_id).or_default() += 1;
                orgs
            });
    assert_eq!(orgs.len(), 2);
    assert!(check.failures.iter().all(|failure| failure.error
        == CryptoError::UnknownKeyVersion(KeyVersion::new(2).unwrap())
        && failure.key_version == version(2)));
    stale.shutdown().await.unwrap();
}

#[tokio::test]
async fn rotation_on_postgres() {
    let database = fresh_postgres().await;
    rotation(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn rotation_on_sqlite() {
    let database = fresh_sqlite().await;
    rotation(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn rows_that_cannot_be_rewrapped_are_reported_and_the_rest_rotated() {
    let database = fresh_sqlite().await;
    let repository: Arc<dyn CredentialRepository> = Arc::new(database.store().clone());
    let clinic = org(database.operator(), "Clinic").await;
    seed(&repository, keyring(&[1]), &[&clinic], 3).await;
    let other = org(database.operator(), "Other").await;
    seed(&repository, keyring_with_active(&[2], 2), &[&other], 2).await;
    // Version 1 is missing: its rows are reported; nothing else needs moving to version 3.
    let service = CredentialService::new(
        Arc::clone(&repository),
        keyring_with_active(&[2, 3], 3),
        ServiceConfig::new(ServiceName::parse("byoc-cli").unwrap()),
    );
    let report = service
        .rotate(&RotationOptions::default(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.rewrapped, 2);
    assert_eq!(report.failures.len(), 3);
    assert!(report.failures.iter().all(
        |failure| failure.error == CryptoError::UnknownKeyVersion(KeyVersion::new(1).unwrap())
    ));
    let by_version: Vec<(u32, u64)> = report
        .remaining
        .iter()
        .map(|count| (count.key_version.get(), count.credentials))
        .collect();
    assert_eq!(by_version, [(1, 3), (3, 2)]);
    assert!(service
        .get_credential(&other.service, CredentialType::Twilio, &purpose("sms:test"))
        .await
        .is_ok());
    service.shutdown().await.unwrap();
}

/// Inserts `count` Twilio credentials sealed under `keys` straight through the operator path.
async fn insert_sealed(
    repository: &Arc<dyn CredentialRepository>,
    keys: &Keyring,
    org_id: byoc_credential_store::OrgId,
    count: usize,
) {
    for index in 0..count {
        let id = byoc_credential_store::CredentialId::new_random();
        let payload = twilio(&format!("token-{index}"));
        let envelope = keys
            .seal(
                byoc_credential_types::CredentialPayload::to_json_bytes(&payload).as_bytes(),
                &byoc_credential_store::service::envelope_context(
                    org_id,
                    CredentialType::Twilio,
                    id,
                ),
            )
            .unwrap();
        repository
            .operator_import_credential(
                org_id,
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
                    encryption_key_version: version(1),
                },
                &ServiceName::parse("byoc-cli").unwrap(),
                &serde_json::json!({"source": "test"}),
            )
            .await
            .unwrap();
    }
}

/// The `rotated` events of an organization: (rows re-wrapped, from version, to version) each.
async fn rotated_events(
    repository: &Arc<dyn CredentialRepository>,
    clinic: &OrgFixture,
) -> Vec<(u64, u64, u64)> {
    let events = repository
        .list_audit_events(
            &clinic.owner,
            AuditPage {
                limit: 1000,
                before: None,
            },
        )
        .await
        .unwrap();
    assert!(events.len() < 1000, "one page holds every event");
    events
        .into_iter()
        .filter(|event| event.action.as_str() == "rotated")
        .map(|event| {
            assert_eq!(event.actor.to_string(), "service:key-rotation");
            let number = |field: &str| event.detail[field].as_u64().unwrap();
            (
                number("rewrapped"),
                number("from_key_version"),
                number("key_version"),
            )
        })
        .collect()
}

/// A rotation SIGKILLed at random points (the `byoc-rotation-worker` child process) and resumed: after every
/// kill the `rotated` audit events count exactly the rows already on the new version (each swap commits its
/// audit with it), and at the end every organization's events count each of its rows exactly once, all from
/// version 1 to 2, with its audit hash chain intact.
#[tokio::test]
async fn a_killed_rotation_leaves_exactly_the_audit_of_the_rows_it_rewrapped() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    const PER_ORG: usize = 400;
    let database = fresh_postgres().await;
    let repository: Arc<dyn CredentialRepository> = Arc::new(database.store().clone());
    let operator: Arc<dyn CredentialRepository> = Arc::new(database.operator().clone());
    let clinics = [
        org(database.operator(), "First").await,
        org(database.operator(), "Second").await,
        org(database.operator(), "Third").await,
    ];
    let old_keys = keyring(&[1]);
    for clinic in &clinics {
        insert_sealed(&operator, &old_keys, clinic.id, PER_ORG).await;
    }
    let total = (PER_ORG * clinics.len()) as u64;
    let superuser = database.superuser_pool(1).await;
    let keys = |version: u8| format!("{version:02x}").repeat(32);
    let mut kills = 0;
    loop {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_byoc-rotation-worker"))
            .arg("20")
            .env("DATABASE_URL", database.operator_url())
            .env("BYOC_MASTER_KEYS", format!("1:{},2:{}", keys(1), keys(2)))
            .env("BYOC_ACTIVE_KEY_VERSION", "2")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        if kills < 5 {
            // SIGKILL after a random number of progress lines and a random few milliseconds more.
            let random = uuid::Uuid::new_v4().as_u128();
            for _ in 0..1 + random % 10 {
                if lines.next_line().await.unwrap().is_none() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis((random >> 64) as u64 % 10)).await;
            if child.try_wait().unwrap().is_none() {
                child.kill().await.unwrap();
                kills += 1;
            }
        } else {
            while lines.next_line().await.unwrap().is_some() {}
            assert!(child.wait().await.unwrap().success());
        }
        // Swaps the killed worker had sent may still commit meanwhile: count rows and audit in one snapshot
        // (as a superuser, who sees every organization).
        let mut snapshot = superuser.begin().await.unwrap();
        let (on_new, audited): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM organization_api_credentials WHERE encryption_key_version = 2), \
                    (SELECT coalesce(sum((detail->>'rewrapped')::bigint), 0)::bigint \
                     FROM credential_audit_log WHERE action = 'rotated')",
        )
        .fetch_one(&mut *snapshot)
        .await
        .unwrap();
        snapshot.commit().await.unwrap();
        assert_eq!(
            audited, on_new,
            "after {kills} kills the audit counts exactly the rows re-wrapped"
        );
        let on_new = on_new as u64;
        if on_new == total {
            break;
        }
    }
    assert!(
        kills >= 3,
        "the worker was killed mid-rotation {kills} times"
    );
    for clinic in &clinics {
        let events = rotated_events(&repository, clinic).await;
        assert!(events.iter().all(|(_, from, to)| (*from, *to) == (1, 2)));
        assert_eq!(
            events.iter().map(|(rows, _, _)| rows).sum::<u64>(),
            PER_ORG as u64
        );
        assert!(matches!(
            repository
                .verify_audit_chain(&clinic.owner)
                .await
                .unwrap()
                .status,
            byoc_credential_store::AuditChainStatus::Intact { .. }
        ));
    }
    let check = CredentialService::new(
        Arc::clone(&operator),
        keyring_with_active(&[2], 2),
        config(Duration::ZERO),
    );
    let report = check.check_all().await.unwrap();
    assert_eq!((report.ok, report.failures.len()), (total, 0));
    check.shutdown().await.unwrap();
    superuser.close().await;
}
