//! Unit tests of the service with the repository mocked.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use mockall::predicate::eq;

use super::*;
use crate::model::CredentialRecord;
use crate::repository::MockCredentialRepository;
use crate::tenant::UserId;
use crate::StoreError;

fn test_keyring() -> Arc<Keyring> {
    let version = byoc_crypto::KeyVersion::FIRST;
    Arc::new(
        Keyring::new(
            vec![(version, byoc_crypto::MasterKey::from_bytes([7; 32]))],
            version,
        )
        .unwrap(),
    )
}

fn fixed_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

fn config(ttl: Duration) -> ServiceConfig {
    let mut config = ServiceConfig::new(ServiceName::parse("unit-test").unwrap());
    config.cache_ttl = ttl;
    config
}

fn tenant(org_id: OrgId) -> Tenant {
    Tenant::service(org_id, ServiceName::parse("lead-scorer").unwrap())
}

fn purpose() -> Purpose {
    Purpose::parse("sms:hot_lead").unwrap()
}

const PAYLOAD: &[u8] = br#"{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":"secret-token","phoneNumber":"+14155550123"}"#;

/// A Twilio record of `org_id` sealed with [`test_keyring`] (under `sealed_for`'s id when given, to make
/// it undecryptable).
fn record(
    org_id: OrgId,
    status: VerificationStatus,
    is_active: bool,
    sealed_for: Option<CredentialId>,
) -> CredentialRecord {
    let id = CredentialId::new_random();
    let envelope = test_keyring()
        .seal(
            PAYLOAD,
            &envelope_context(org_id, CredentialType::Twilio, sealed_for.unwrap_or(id)),
        )
        .unwrap();
    CredentialRecord {
        metadata: CredentialMetadata {
            id,
            org_id,
            credential_type: CredentialType::Twilio,
            display_name: "Main".to_owned(),
            public_hint: None,
            provider_account_id: None,
            is_active,
            verification_status: status,
            last_verified_at: None,
            verification_error: None,
            created_at: fixed_time(),
            updated_at: fixed_time(),
            created_by: Some(UserId::new_random()),
            encryption_key_version: NonZeroU32::MIN,
        },
        encrypted_data: EncryptedEnvelope::new(envelope.into_bytes()).unwrap(),
    }
}

/// Audit events as written: in whose name, and what.
type Written = Arc<Mutex<Vec<(Actor, NewAuditEvent)>>>;

/// Audit writes succeed and land in `written`, each with the actor of the tenant that wrote it.
fn accept_audit(repository: &mut MockCredentialRepository, written: Written) {
    repository
        .expect_append_audit_events()
        .returning(move |tenant, events| {
            written.lock().unwrap().extend(
                events
                    .iter()
                    .map(|event| (tenant.actor.clone(), event.clone())),
            );
            Ok(events.len() as u64)
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_read_and_decrypt_once() {
    let org_id = OrgId::new_random();
    let stored = record(org_id, VerificationStatus::Verified, true, None);
    let reads = Arc::new(AtomicUsize::new(0));
    let mut repository = MockCredentialRepository::new();
    let counter = Arc::clone(&reads);
    repository
        .expect_get_active_credential()
        .with(eq(tenant(org_id)), eq(CredentialType::Twilio))
        .returning(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            // A slow database: every other caller arrives while this read is in flight.
            std::thread::sleep(Duration::from_millis(100));
            Ok(Some(stored.clone()))
        });
    let written = Arc::new(Mutex::new(Vec::new()));
    accept_audit(&mut repository, Arc::clone(&written));
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                service
                    .get_credential(&tenant(org_id), CredentialType::Twilio, &purpose())
                    .await
                    .map(|credential| credential.expose_json().to_vec())
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), PAYLOAD);
    }
    assert_eq!(reads.load(Ordering::SeqCst), 1, "one database read");
    service.shutdown().await.unwrap();
    let written = written.lock().unwrap();
    assert_eq!(written.len(), 16, "every read is audited");
    assert!(written
        .iter()
        .all(|(_, event)| event.action.as_str() == "read"
            && event.detail["purpose"] == "sms:hot_lead"));
}

#[tokio::test]
async fn a_zero_ttl_reads_every_time() {
    let org_id = OrgId::new_random();
    let stored = record(org_id, VerificationStatus::Verified, true, None);
    let mut repository = MockCredentialRepository::new();
    repository
        .expect_get_active_credential()
        .times(3)
        .returning(move |_, _| Ok(Some(stored.clone())));
    accept_audit(&mut repository, Arc::default());
    let service =
        CredentialService::new(Arc::new(repository), test_keyring(), config(Duration::ZERO));
    for _ in 0..3 {
        service
            .get_credential(&tenant(org_id), CredentialType::Twilio, &purpose())
            .await
            .unwrap();
    }
    assert_eq!(
        service.cache_stats(),
        CacheStats {
            hits: 0,
            misses: 3,
            outage_answers: 0
        }
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn cache_stats_count_hits_and_misses() {
    let org_id = OrgId::new_random();
    let stored = record(org_id, VerificationStatus::Verified, true, None);
    let mut repository = MockCredentialRepository::new();
    repository
        .expect_get_active_credential()
        .times(1)
        .returning(move |_, _| Ok(Some(stored.clone())));
    accept_audit(&mut repository, Arc::default());
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    assert_eq!(service.cache_stats(), CacheStats::default());
    for _ in 0..3 {
        service
            .get_credential(&tenant(org_id), CredentialType::Twilio, &purpose())
            .await
            .unwrap();
    }
    assert_eq!(
        service.cache_stats(),
        CacheStats {
            hits: 2,
            misses: 1,
            outage_answers: 0
        }
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_an_active_verified_credential_is_served() {
    let org_id = OrgId::new_random();
    for (status, active) in [
        (VerificationStatus::Pending, true),
        (VerificationStatus::Failed, true),
        (VerificationStatus::Verified, false),
    ] {
        let stored = record(org_id, status, active, None);
        let mut repository = MockCredentialRepository::new();
        repository
            .expect_get_active_credential()
            .returning(move |_, _| Ok(Some(stored.clone())));
        let service = CredentialService::new(
            Arc::new(repository),
            test_keyring(),
            config(Duration::from_secs(60)),
        );
        let error = service
            .get_credential(&tenant(org_id), CredentialType::Twilio, &purpose())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                CredentialServiceError::NotConfigured {
                    provider: CredentialType::Twilio
                }
            ),
            "{status:?} {active}: {error:?}"
        );
        assert_eq!(service.pending_audit_events(), 0, "a refusal reads nothing");
    }
}

#[tokio::test]
async fn an_envelope_of_another_credential_does_not_decrypt() {
    let org_id = OrgId::new_random();
    let stored = record(
        org_id,
        VerificationStatus::Verified,
        true,
        Some(CredentialId::new_random()),
    );
    let id = stored.metadata.id;
    let mut repository = MockCredentialRepository::new();
    repository
        .expect_get_active_credential()
        .returning(move |_, _| Ok(Some(stored.clone())));
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    let error = service
        .get_credential(&tenant(org_id), CredentialType::Twilio, &purpose())
        .await
        .unwrap_err();
    assert!(matches!(error, CredentialServiceError::Decrypt { id: failed, .. } if failed == id));
    assert!(!error.to_string().contains("secret-token"));
}

#[tokio::test]
async fn unwritten_audit_events_stay_queued_until_a_write_succeeds() {
    let org_id = OrgId::new_random();
    let stored = record(org_id, VerificationStatus::Verified, true, None);
    let mut repository = MockCredentialRepository::new();
    repository
        .expect_get_active_credential()
        .returning(move |_, _| Ok(Some(stored.clone())));
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    repository
        .expect_append_audit_events()
        .returning(move |_, events| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
            } else {
                Ok(events.len() as u64)
            }
        });
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    service
        .get_credential(&tenant(org_id), CredentialType::Twilio, &purpose())
        .await
        .unwrap();
    let first = service.flush_audit().await.unwrap_err();
    assert!(
        matches!(first, AuditError::WriteFailed { pending: 1, .. }),
        "{first:?}"
    );
    assert_eq!(service.pending_audit_events(), 1);
    service.flush_audit().await.unwrap();
    assert_eq!(service.pending_audit_events(), 0);
    service.shutdown().await.unwrap();
    assert!(matches!(
        service.flush_audit().await,
        Err(AuditError::Stopped)
    ));
}

#[tokio::test]
async fn a_change_invalidates_the_cached_credential() {
    let org_id = OrgId::new_random();
    let stored = record(org_id, VerificationStatus::Verified, true, None);
    let id = stored.metadata.id;
    let mut deactivated = stored.metadata.clone();
    deactivated.is_active = false;
    let mut repository = MockCredentialRepository::new();
    let mut sequence = mockall::Sequence::new();
    repository
        .expect_get_active_credential()
        .times(1)
        .in_sequence(&mut sequence)
        .returning(move |_, _| Ok(Some(stored.clone())));
    repository
        .expect_deactivate_credential()
        .times(1)
        .in_sequence(&mut sequence)
        .returning(move |_, _| Ok(deactivated.clone()));
    repository
        .expect_get_active_credential()
        .times(1)
        .in_sequence(&mut sequence)
        .returning(|_, _| Ok(None));
    let written = Arc::new(Mutex::new(Vec::new()));
    accept_audit(&mut repository, Arc::clone(&written));
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    let admin = Tenant::user(org_id, UserId::new_random());
    service
        .get_credential(&tenant(org_id), CredentialType::Twilio, &purpose())
        .await
        .unwrap();
    service.deactivate(&admin, id).await.unwrap();
    assert!(service
        .get_credential(&tenant(org_id), CredentialType::Twilio, &purpose())
        .await
        .is_err());
    service.shutdown().await.unwrap();
    let actions: Vec<_> = written
        .lock()
        .unwrap()
        .iter()
        .map(|(actor, event)| (event.action.as_str().to_owned(), actor.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("read".to_owned(), tenant(org_id).actor),
            ("deactivated".to_owned(), admin.actor)
        ]
    );
}

#[test]
fn not_configured_names_the_provider() {
    let error = CredentialServiceError::NotConfigured {
        provider: CredentialType::GoogleCalendar,
    };
    assert_eq!(
        error.to_string(),
        "no usable Google Calendar credential: add and verify a Google Calendar credential for this organization"
    );
}

const GOOGLE_CLIENT: &str = "clinic-client.apps.googleusercontent.com";

fn google_json(refresh_token: &str) -> String {
    serde_json::json!({
        "clientId": GOOGLE_CLIENT,
        "clientSecret": "clinic-client-secret",
        "refreshToken": refresh_token,
        "calendarId": "frontdesk@group.calendar.google.com",
    })
    .to_string()
}

fn google(refresh_token: &str) -> GoogleCalendarCredential {
    GoogleCalendarCredential::from_json_bytes(google_json(refresh_token).as_bytes()).unwrap()
}

/// A Google Calendar record of `org_id` holding `refresh_token`, sealed with [`test_keyring`].
fn google_record(
    org_id: OrgId,
    status: VerificationStatus,
    is_active: bool,
    refresh_token: &str,
) -> CredentialRecord {
    let mut stored = record(org_id, status, is_active, None);
    stored.metadata.credential_type = CredentialType::GoogleCalendar;
    let envelope = test_keyring()
        .seal(
            google_json(refresh_token).as_bytes(),
            &envelope_context(org_id, CredentialType::GoogleCalendar, stored.metadata.id),
        )
        .unwrap();
    stored.encrypted_data = EncryptedEnvelope::new(envelope.into_bytes()).unwrap();
    stored
}

/// Decrypts an envelope of a Google Calendar credential with [`test_keyring`].
fn open_google(org_id: OrgId, id: CredentialId, envelope: &EncryptedEnvelope) -> String {
    let plaintext = test_keyring()
        .open(
            envelope.as_bytes(),
            &envelope_context(org_id, CredentialType::GoogleCalendar, id),
        )
        .unwrap();
    String::from_utf8(plaintext.expose_secret().to_vec()).unwrap()
}

fn member(org_id: OrgId) -> Tenant {
    Tenant::user(org_id, UserId::new_random())
}

#[tokio::test]
async fn a_rotated_refresh_token_replaces_the_envelope_in_place() {
    let org_id = OrgId::new_random();
    let stored = google_record(org_id, VerificationStatus::Verified, true, "1//original");
    let id = stored.metadata.id;
    let read_envelope = stored.encrypted_data.clone();
    let mut repository = MockCredentialRepository::new();
    let active = stored.clone();
    repository
        .expect_get_active_credential()
        .times(2)
        .returning(move |_, _| Ok(Some(active.clone())));
    let by_id = stored.clone();
    repository
        .expect_get_credential()
        .withf(move |_, asked| *asked == id)
        .returning(move |_, _| Ok(by_id.clone()));
    let metadata = stored.metadata.clone();
    let replacements = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&replacements);
    repository
        .expect_replace_rotated_envelope()
        .times(1)
        .returning(move |_, replaced, expected, replacement, version| {
            assert_eq!(replaced, id);
            assert_eq!(
                expected, &read_envelope,
                "a compare-and-swap on the envelope read"
            );
            assert_eq!(version, NonZeroU32::MIN, "the active key version");
            seen.lock().unwrap().push(replacement.clone());
            Ok(Some(metadata.clone()))
        });
    let written = Arc::new(Mutex::new(Vec::new()));
    accept_audit(&mut repository, Arc::clone(&written));
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    let calendar = Purpose::parse("calendar:availability").unwrap();
    let caller = member(org_id);
    service
        .get_credential(&caller, CredentialType::GoogleCalendar, &calendar)
        .await
        .unwrap();

    // Whatever else the provider's copy says, only its refresh token is taken.
    let mut rotated = google("1//rotated");
    rotated.client_id = "someone-else.apps.googleusercontent.com".to_owned();
    let updated = service
        .store_rotated_refresh_token(&caller, id, &rotated, &calendar)
        .await
        .unwrap();
    assert_eq!(updated.map(|metadata| metadata.id), Some(id));
    let replacement = replacements.lock().unwrap().pop().unwrap();
    assert_ne!(replacement, stored.encrypted_data);
    let payload: serde_json::Value =
        serde_json::from_str(&open_google(org_id, id, &replacement)).unwrap();
    assert_eq!(
        payload["refreshToken"], "1//rotated",
        "sealed for the same id"
    );
    assert_eq!(
        payload["clientId"], GOOGLE_CLIENT,
        "only the refresh token changes"
    );
    assert_eq!(payload["calendarId"], "frontdesk@group.calendar.google.com");

    // The cached copy was dropped: the next use reads the store again.
    service
        .get_credential(&caller, CredentialType::GoogleCalendar, &calendar)
        .await
        .unwrap();
    service.shutdown().await.unwrap();
    let written = written.lock().unwrap();
    let (actor, update) = written
        .iter()
        .find(|(_, event)| event.action.as_str() == "updated")
        .expect("the rotation is audited");
    assert_eq!(*actor, caller.actor);
    assert_eq!(update.credential_id, Some(id));
    assert_eq!(update.detail["reason"], "refresh token rotated by Google");
    assert_eq!(update.detail["purpose"], "calendar:availability");
    assert!(!update.detail.to_string().contains("1//rotated"));
}

#[tokio::test]
async fn an_unchanged_token_or_a_lost_swap_writes_and_audits_nothing() {
    let org_id = OrgId::new_random();
    let stored = google_record(org_id, VerificationStatus::Verified, true, "1//current");
    let id = stored.metadata.id;
    let mut repository = MockCredentialRepository::new();
    repository
        .expect_get_credential()
        .returning(move |_, _| Ok(stored.clone()));
    repository
        .expect_replace_rotated_envelope()
        .times(1)
        .returning(|_, _, _, _, _| Ok(None));
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    let calendar = Purpose::parse("calendar:availability").unwrap();
    let caller = member(org_id);
    let unchanged = service
        .store_rotated_refresh_token(&caller, id, &google("1//current"), &calendar)
        .await
        .unwrap();
    assert!(unchanged.is_none(), "the stored token is already this one");
    let lost = service
        .store_rotated_refresh_token(&caller, id, &google("1//newer"), &calendar)
        .await
        .unwrap();
    assert!(
        lost.is_none(),
        "another request replaced the envelope first"
    );
    assert_eq!(service.pending_audit_events(), 0);
}

#[tokio::test]
async fn only_an_active_google_credential_takes_a_rotated_token() {
    let org_id = OrgId::new_random();
    let inactive = google_record(org_id, VerificationStatus::Verified, false, "1//current");
    let inactive_id = inactive.metadata.id;
    let twilio = record(org_id, VerificationStatus::Verified, true, None);
    let twilio_id = twilio.metadata.id;
    let mut repository = MockCredentialRepository::new();
    repository
        .expect_get_credential()
        .returning(move |_, asked| {
            Ok(if asked == inactive_id {
                inactive.clone()
            } else {
                twilio.clone()
            })
        });
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    let calendar = Purpose::parse("calendar:availability").unwrap();
    let caller = member(org_id);
    let error = service
        .store_rotated_refresh_token(&caller, inactive_id, &google("1//new"), &calendar)
        .await
        .unwrap_err();
    assert!(
        matches!(error, CredentialServiceError::Inactive { id } if id == inactive_id),
        "{error:?}"
    );
    let error = service
        .store_rotated_refresh_token(&caller, twilio_id, &google("1//new"), &calendar)
        .await
        .unwrap_err();
    assert!(
        matches!(error.store_error(), Some(StoreError::NotFound { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn any_status_reads_are_for_owners_and_admins_and_audited() {
    let org_id = OrgId::new_random();
    let failed = google_record(org_id, VerificationStatus::Failed, true, "1//revoked");
    let failed_id = failed.metadata.id;
    let admin = Tenant::user(org_id, UserId::new_random());
    let plain_member = Tenant::user(org_id, UserId::new_random());
    let mut repository = MockCredentialRepository::new();
    let admin_user = admin.actor.user_id();
    repository.expect_member_role().returning(move |tenant| {
        Ok(if tenant.actor.user_id() == admin_user {
            Some(crate::model::Role::Admin)
        } else if tenant.actor.user_id().is_some() {
            Some(crate::model::Role::Member)
        } else {
            None
        })
    });
    let listed = failed.metadata.clone();
    repository
        .expect_list_credentials()
        .times(1)
        .returning(move |_| Ok(vec![listed.clone()]));
    repository
        .expect_get_credential()
        .times(1)
        .returning(move |_, _| Ok(failed.clone()));
    let written = Arc::new(Mutex::new(Vec::new()));
    accept_audit(&mut repository, Arc::clone(&written));
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    let reconnect = Purpose::parse("oauth:reconnect").unwrap();
    for refused in [plain_member, tenant(org_id)] {
        let error = service
            .get_payload_any_status::<GoogleCalendarCredential>(
                &refused,
                CredentialSelector::NewestActive,
                &reconnect,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error.store_error(), Some(StoreError::Forbidden { .. })),
            "{error:?}"
        );
    }
    let usable = service
        .get_payload_any_status::<GoogleCalendarCredential>(
            &admin,
            CredentialSelector::NewestActive,
            &reconnect,
        )
        .await
        .unwrap();
    assert_eq!(usable.credential_id, Some(failed_id));
    assert_eq!(usable.payload.client_id, GOOGLE_CLIENT);
    service.shutdown().await.unwrap();
    let written = written.lock().unwrap();
    assert_eq!(written.len(), 1, "one read, by the admin");
    let (actor, read) = &written[0];
    assert_eq!(read.action.as_str(), "read");
    assert_eq!(*actor, admin.actor);
    assert_eq!(read.detail["purpose"], "oauth:reconnect");
    assert_eq!(read.detail["verification_status"], "failed");
}

#[tokio::test]
async fn an_unavailable_database_gets_the_last_read_role_and_organization_within_the_ttl() {
    let org_id = OrgId::new_random();
    let member = Tenant::user(org_id, UserId::new_random());
    let stranger = Tenant::user(org_id, UserId::new_random());
    let organization = Organization {
        id: org_id,
        name: "Clinic".to_owned(),
        hot_lead_threshold: crate::model::HotLeadThreshold::DEFAULT,
        created_at: fixed_time(),
        updated_at: fixed_time(),
    };
    let mut repository = MockCredentialRepository::new();
    let role_reads = Arc::new(AtomicUsize::new(0));
    let reads = Arc::clone(&role_reads);
    let member_id = member.actor.clone();
    repository.expect_member_role().returning(move |tenant| {
        if reads.fetch_add(1, Ordering::Relaxed) >= 2 {
            Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
        } else if tenant.actor == member_id {
            Ok(Some(Role::Member))
        } else {
            Ok(None)
        }
    });
    let organization_reads = Arc::new(AtomicUsize::new(0));
    let reads = Arc::clone(&organization_reads);
    let answer = organization.clone();
    repository.expect_get_organization().returning(move |_| {
        if reads.fetch_add(1, Ordering::Relaxed) >= 1 {
            Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
        } else {
            Ok(answer.clone())
        }
    });
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(60)),
    );
    // While the database answers, its answer counts (a non-member stays one).
    assert_eq!(
        service.member_role(&member).await.unwrap(),
        Some(Role::Member)
    );
    assert_eq!(service.member_role(&stranger).await.unwrap(), None);
    assert_eq!(service.organization(&member).await.unwrap(), organization);
    // Then it goes away: what was last read is answered, and only that.
    assert_eq!(
        service.member_role(&member).await.unwrap(),
        Some(Role::Member)
    );
    assert!(service
        .member_role(&stranger)
        .await
        .unwrap_err()
        .is_database_unavailable());
    assert_eq!(service.organization(&member).await.unwrap(), organization);
    assert_eq!(service.cache_stats().outage_answers, 2);
    assert_eq!(
        role_reads.load(Ordering::Relaxed),
        4,
        "every call asks the store first"
    );
    service.shutdown().await.unwrap();

    // Without a cache nothing is kept for an outage.
    let mut repository = MockCredentialRepository::new();
    repository
        .expect_member_role()
        .times(1)
        .returning(|_| Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)));
    let service =
        CredentialService::new(Arc::new(repository), test_keyring(), config(Duration::ZERO));
    assert!(service
        .member_role(&member)
        .await
        .unwrap_err()
        .is_database_unavailable());
    service.shutdown().await.unwrap();
}

/// A change listener fed by the test.
struct ChannelListener(tokio::sync::mpsc::UnboundedReceiver<StoreChange>);

#[async_trait::async_trait]
impl ChangeListener for ChannelListener {
    async fn recv(&mut self) -> crate::StoreResult<Option<StoreChange>> {
        match self.0.recv().await {
            Some(change) => Ok(Some(change)),
            None => std::future::pending().await,
        }
    }
}

#[tokio::test]
async fn while_changes_are_followed_a_role_is_read_once_until_its_member_changes() {
    let org_id = OrgId::new_random();
    let member = Tenant::user(org_id, UserId::new_random());
    let user_id = member.actor.user_id().unwrap();
    let organization = Organization {
        id: org_id,
        name: "Clinic".to_owned(),
        hot_lead_threshold: crate::model::HotLeadThreshold::DEFAULT,
        created_at: fixed_time(),
        updated_at: fixed_time(),
    };
    let (changes, receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut repository = MockCredentialRepository::new();
    repository.expect_listen_for_changes().return_once(move || {
        Ok(Some(
            Box::new(ChannelListener(receiver)) as Box<dyn ChangeListener>
        ))
    });
    let role_reads = Arc::new(AtomicUsize::new(0));
    let reads = Arc::clone(&role_reads);
    repository.expect_member_role().returning(move |_| {
        // Admin at first; demoted once the change is in.
        Ok(Some(if reads.fetch_add(1, Ordering::Relaxed) == 0 {
            Role::Admin
        } else {
            Role::Member
        }))
    });
    let organization_reads = Arc::new(AtomicUsize::new(0));
    let reads = Arc::clone(&organization_reads);
    let answer = organization.clone();
    repository.expect_get_organization().returning(move |_| {
        reads.fetch_add(1, Ordering::Relaxed);
        Ok(answer.clone())
    });
    let service = CredentialService::new(
        Arc::new(repository),
        test_keyring(),
        config(Duration::from_secs(600)),
    );
    assert!(service.follow_changes().await.unwrap());

    for _ in 0..5 {
        assert_eq!(
            service.member_role(&member).await.unwrap(),
            Some(Role::Admin)
        );
        assert_eq!(service.organization(&member).await.unwrap(), organization);
    }
    assert_eq!(
        role_reads.load(Ordering::Relaxed),
        1,
        "one read, then the cache"
    );
    assert_eq!(organization_reads.load(Ordering::Relaxed), 1);

    changes
        .send(StoreChange::Member { org_id, user_id })
        .unwrap();
    for _ in 0..100 {
        if service.member_role(&member).await.unwrap() == Some(Role::Member) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        service.member_role(&member).await.unwrap(),
        Some(Role::Member)
    );
    assert_eq!(
        role_reads.load(Ordering::Relaxed),
        2,
        "read again once, after the change"
    );

    // The organization is dropped; a later call reads it again.
    changes.send(StoreChange::Organization { org_id }).unwrap();
    for _ in 0..100 {
        service.organization(&member).await.unwrap();
        if organization_reads.load(Ordering::Relaxed) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(organization_reads.load(Ordering::Relaxed), 2);
    service.shutdown().await.unwrap();
}
