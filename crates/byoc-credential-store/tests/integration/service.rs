//! The credential service on real databases: storing, using, recording verifications, retiring, auditing, the legacy
//! fallback, the start-up key check, rotation and `keys check`, on Postgres and SQLite; cross-replica
//! invalidation and a rotation killed at random points on Postgres.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use byoc_credential_store::service::{CredentialSelector, LegacyTwilioFallback};
use byoc_credential_store::test_support::{fresh_postgres, fresh_sqlite, OPERATOR_LOGIN};
use byoc_credential_store::{
    AuditPage, CredentialRepository, CredentialService, CredentialServiceError, CredentialType,
    DisplayName, Imported, Purpose, ServiceConfig, ServiceName, VerificationStatus,
};
use byoc_credential_types::{CredentialPayload, GoogleCalendarCredential, TwilioCredential};
use byoc_crypto::{KeyVersion, Keyring, MasterKey};

use crate::fixtures::{org, OrgFixture};

#[path = "service_keys.rs"]
mod keys;
#[path = "service_replicas.rs"]
mod replicas;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

pub fn twilio(token: &str) -> TwilioCredential {
    let json = serde_json::json!({
        "accountSid": ACCOUNT_SID,
        "authToken": token,
        "phoneNumber": "+14155550123",
    });
    TwilioCredential::from_json_bytes(json.to_string().as_bytes()).unwrap()
}

pub fn token_of(credential: &TwilioCredential) -> String {
    use secrecy::ExposeSecret;
    credential.auth_token.expose_secret().to_owned()
}

/// A keyring with the given versions (key bytes derived from the version) and the highest active.
pub fn keyring(versions: &[u32]) -> Arc<Keyring> {
    keyring_with_active(versions, *versions.iter().max().unwrap())
}

pub fn keyring_with_active(versions: &[u32], active: u32) -> Arc<Keyring> {
    let keys = versions
        .iter()
        .map(|&version| {
            (
                KeyVersion::new(version).unwrap(),
                MasterKey::from_bytes([u8::try_from(version).unwrap(); 32]),
            )
        })
        .collect();
    Arc::new(Keyring::new(keys, KeyVersion::new(active).unwrap()).unwrap())
}

pub fn config(ttl: Duration) -> ServiceConfig {
    let mut config = ServiceConfig::new(ServiceName::parse("byoc-api").unwrap());
    config.cache_ttl = ttl;
    config
}

pub fn purpose(text: &str) -> Purpose {
    Purpose::parse(text).unwrap()
}

pub fn name(text: &str) -> DisplayName {
    DisplayName::parse(text).unwrap()
}

async fn actions(service: &CredentialService, clinic: &OrgFixture) -> Vec<String> {
    let mut events = service
        .audit_events(
            &clinic.member,
            AuditPage {
                limit: 1000,
                before: None,
            },
        )
        .await
        .unwrap();
    events.reverse();
    events
        .into_iter()
        .map(|event| event.action.as_str().to_owned())
        .collect()
}

/// Store, use, deactivate: only an active, verified credential is served; every step is audited.
async fn lifecycle<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&operator, "Clinic").await;
    let service =
        CredentialService::new(repository, keyring(&[1]), config(Duration::from_secs(60)));
    let stored = service
        .store(&clinic.admin, &twilio("token-one"), name("Main"))
        .await
        .unwrap();
    assert_eq!(stored.verification_status, VerificationStatus::Pending);
    assert_eq!(stored.created_by, clinic.admin.actor.user_id());
    let listed = service.list(&clinic.member).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, stored.id);

    let pending = service
        .get_credential(
            &clinic.service,
            CredentialType::Twilio,
            &purpose("sms:hot_lead"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            pending,
            CredentialServiceError::NotConfigured {
                provider: CredentialType::Twilio
            }
        ),
        "{pending:?}"
    );
    assert_eq!(
        pending.to_string(),
        "no usable Twilio credential: add and verify a Twilio credential for this organization"
    );

    service
        .record_verification(&clinic.admin, stored.id, VerificationStatus::Verified, None)
        .await
        .unwrap();
    let usable = service
        .get_payload::<TwilioCredential>(&clinic.service, &purpose("sms:hot_lead"))
        .await
        .unwrap();
    assert_eq!(usable.credential_id, Some(stored.id));
    assert!(!usable.legacy_fallback);
    assert_eq!(token_of(&usable.payload), "token-one");
    let raw = service
        .get_credential(
            &clinic.service,
            CredentialType::Twilio,
            &purpose("sms:test"),
        )
        .await
        .unwrap();
    assert!(!format!("{raw:?}").contains("token-one"));
    assert!(std::str::from_utf8(raw.expose_json())
        .unwrap()
        .contains("token-one"));

    service.deactivate(&clinic.admin, stored.id).await.unwrap();
    let refused = service
        .get_credential(
            &clinic.service,
            CredentialType::Twilio,
            &purpose("sms:hot_lead"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        CredentialServiceError::NotConfigured { .. }
    ));

    assert_eq!(
        actions(&service, &clinic).await,
        ["created", "verified", "read", "read", "deactivated"]
    );
    let events = service
        .audit_events(
            &clinic.member,
            AuditPage {
                limit: 10,
                before: None,
            },
        )
        .await
        .unwrap();
    let read = events
        .iter()
        .find(|event| event.action.as_str() == "read")
        .unwrap();
    assert_eq!(read.detail["purpose"], "sms:test");
    assert_eq!(read.actor, clinic.service.actor);
    assert_eq!(read.credential_id, Some(stored.id));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    let database = fresh_postgres().await;
    lifecycle(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    let database = fresh_sqlite().await;
    lifecycle(database.store().clone(), database.operator().clone()).await;
}

/// Purge: the row and its ciphertext are gone, the audit entries stay.
async fn purge<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&operator, "Clinic").await;
    let service = CredentialService::new(
        Arc::clone(&repository),
        keyring(&[1]),
        config(Duration::ZERO),
    );
    let stored = service
        .store(&clinic.owner, &twilio("token"), name("Main"))
        .await
        .unwrap();
    let admin_refused = service.purge(&clinic.admin, stored.id).await.unwrap_err();
    assert!(admin_refused.store_error().is_some(), "{admin_refused:?}");
    service.purge(&clinic.owner, stored.id).await.unwrap();
    assert!(service.list(&clinic.owner).await.unwrap().is_empty());
    assert!(repository
        .get_credential(&clinic.owner, stored.id)
        .await
        .is_err());
    let checker = CredentialService::new(Arc::new(operator), keyring(&[1]), config(Duration::ZERO));
    let check = checker.check_all().await.unwrap();
    assert_eq!((check.ok, check.failures.len()), (0, 0));
    checker.shutdown().await.unwrap();
    assert_eq!(actions(&service, &clinic).await, ["created", "purged"]);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn purge_on_postgres() {
    let database = fresh_postgres().await;
    purge(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn purge_on_sqlite() {
    let database = fresh_sqlite().await;
    purge(database.store().clone(), database.operator().clone()).await;
}

/// What verifying needs from the service (the provider's part is the API's use case): the credential
/// decrypted for owners, admins and services only, active only and unaudited; a changed payload stored and
/// audited; the outcome recorded.
async fn verification_steps<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&operator, "Clinic").await;
    let service = CredentialService::new(repository, keyring(&[1]), config(Duration::ZERO));
    let stored = service
        .store(&clinic.admin, &twilio("token"), name("Main"))
        .await
        .unwrap();
    for tenant in [&clinic.admin, &clinic.owner, &clinic.service] {
        let credential = service
            .credential_to_verify(tenant, stored.id)
            .await
            .unwrap();
        assert_eq!(credential.credential_type(), CredentialType::Twilio);
        assert!(std::str::from_utf8(credential.expose_json())
            .unwrap()
            .contains("\"authToken\":\"token\""));
    }
    let refused = service
        .credential_to_verify(&clinic.member, stored.id)
        .await
        .unwrap_err();
    assert!(refused.store_error().is_some(), "{refused:?}");

    let replaced = service
        .replace_payload(
            &clinic.admin,
            stored.id,
            &twilio("rotated").to_json_bytes(),
            "provider rotated the credential",
        )
        .await
        .unwrap();
    assert_eq!(replaced.id, stored.id);
    service
        .record_verification(&clinic.admin, stored.id, VerificationStatus::Verified, None)
        .await
        .unwrap();
    let used = service
        .get_payload::<TwilioCredential>(&clinic.member, &purpose("sms:test"))
        .await
        .unwrap();
    assert_eq!(token_of(&used.payload), "rotated");

    service.deactivate(&clinic.admin, stored.id).await.unwrap();
    let inactive = service
        .credential_to_verify(&clinic.admin, stored.id)
        .await
        .unwrap_err();
    assert!(matches!(inactive, CredentialServiceError::Inactive { id } if id == stored.id));
    assert_eq!(
        actions(&service, &clinic).await,
        ["created", "updated", "verified", "read", "deactivated"]
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn verification_steps_on_postgres() {
    let database = fresh_postgres().await;
    verification_steps(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn verification_steps_on_sqlite() {
    let database = fresh_sqlite().await;
    verification_steps(database.store().clone(), database.operator().clone()).await;
}

async fn legacy_fallback<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let listed = org(&operator, "Listed").await;
    let other = org(&operator, "Other").await;
    let mut config = config(Duration::from_secs(60));
    config.legacy_fallback = Some(LegacyTwilioFallback {
        credential: twilio("legacy-token"),
        orgs: HashSet::from([listed.id]),
    });
    let service = CredentialService::new(repository, keyring(&[1]), config);
    let legacy = service
        .get_payload::<TwilioCredential>(&listed.service, &purpose("sms:hot_lead"))
        .await
        .unwrap();
    assert!(legacy.legacy_fallback);
    assert_eq!(legacy.credential_id, None);
    assert_eq!(token_of(&legacy.payload), "legacy-token");
    assert_eq!(service.legacy_fallback_uses(), 1);
    let refused = service
        .get_credential(
            &other.service,
            CredentialType::Twilio,
            &purpose("sms:hot_lead"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        CredentialServiceError::NotConfigured { .. }
    ));
    let google = service
        .get_credential(
            &listed.service,
            CredentialType::GoogleCalendar,
            &purpose("calendar:availability"),
        )
        .await
        .unwrap_err();
    assert!(matches!(
        google,
        CredentialServiceError::NotConfigured {
            provider: CredentialType::GoogleCalendar
        }
    ));
    assert_eq!(service.legacy_fallback_uses(), 1);

    // Once the org has its own verified credential, that one wins.
    let own = service
        .store(&listed.admin, &twilio("own-token"), name("Own"))
        .await
        .unwrap();
    service
        .record_verification(&listed.admin, own.id, VerificationStatus::Verified, None)
        .await
        .unwrap();
    let usable = service
        .get_payload::<TwilioCredential>(&listed.service, &purpose("sms:hot_lead"))
        .await
        .unwrap();
    assert_eq!(token_of(&usable.payload), "own-token");
    assert_eq!(
        actions(&service, &listed).await,
        ["legacy_fallback_used", "created", "verified", "read"]
    );
    assert!(actions(&service, &other).await.is_empty());
    service.shutdown().await.unwrap();
}

/// A use that only authenticates a request (Twilio's status callback) is audited only when the request
/// authenticates, and the account id is known before anything is decrypted.
async fn authenticating_uses<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&operator, "Clinic").await;
    let listed = org(&operator, "Listed").await;
    let mut config = config(Duration::from_secs(60));
    config.legacy_fallback = Some(LegacyTwilioFallback {
        credential: twilio("legacy-token"),
        orgs: HashSet::from([listed.id]),
    });
    let service = CredentialService::new(repository, keyring(&[1]), config);
    assert!(matches!(
        service
            .provider_account_id(&clinic.service, CredentialType::Twilio)
            .await,
        Err(CredentialServiceError::NotConfigured { .. })
    ));
    let stored = service
        .store(&clinic.admin, &twilio("own-token"), name("Own"))
        .await
        .unwrap();
    assert_eq!(stored.provider_account_id.as_deref(), Some(ACCOUNT_SID));
    service
        .record_verification(&clinic.admin, stored.id, VerificationStatus::Verified, None)
        .await
        .unwrap();
    let before = service.cache_stats();
    for _ in 0..2 {
        assert_eq!(
            service
                .provider_account_id(&clinic.service, CredentialType::Twilio)
                .await
                .unwrap()
                .as_deref(),
            Some(ACCOUNT_SID)
        );
    }
    assert_eq!(
        service.cache_stats(),
        before,
        "the account id is read without a credential lookup"
    );
    assert_eq!(
        service
            .provider_account_id(&listed.service, CredentialType::Twilio)
            .await
            .unwrap()
            .as_deref(),
        Some(ACCOUNT_SID),
        "the legacy fallback's account"
    );

    let webhook = purpose("webhook:twilio_status");
    let refused = service
        .get_payload_if::<TwilioCredential>(&clinic.service, &webhook, |payload| {
            token_of(payload) == "a forger's guess"
        })
        .await
        .unwrap();
    assert!(refused.is_none());
    let accepted = service
        .get_payload_if::<TwilioCredential>(&clinic.service, &webhook, |payload| {
            token_of(payload) == "own-token"
        })
        .await
        .unwrap()
        .expect("authenticated");
    assert_eq!(accepted.credential_id, Some(stored.id));
    assert_eq!(
        actions(&service, &clinic).await,
        ["created", "verified", "read"],
        "only the authenticated use is audited"
    );
    assert!(service
        .get_payload_if::<TwilioCredential>(&listed.service, &webhook, |_| false)
        .await
        .unwrap()
        .is_none());
    assert_eq!(service.legacy_fallback_uses(), 0);
    assert!(actions(&service, &listed).await.is_empty());
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn authenticating_uses_on_postgres() {
    let database = fresh_postgres().await;
    authenticating_uses(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn authenticating_uses_on_sqlite() {
    let database = fresh_sqlite().await;
    authenticating_uses(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn legacy_fallback_on_postgres() {
    let database = fresh_postgres().await;
    legacy_fallback(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn legacy_fallback_on_sqlite() {
    let database = fresh_sqlite().await;
    legacy_fallback(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn import_env_stores_a_normal_credential_on_postgres() {
    let database = fresh_postgres().await;
    let clinic = org(database.operator(), "Clinic").await;
    // The operator imports (the CLI, on the operator's store); the service reads the audit.
    let importer = CredentialService::new(
        Arc::new(database.operator().clone()),
        keyring(&[1]),
        config(Duration::ZERO),
    );
    let service = CredentialService::new(
        Arc::new(database.store().clone()),
        keyring(&[1]),
        config(Duration::from_secs(60)),
    );
    let Imported::Created(imported) = importer
        .import(
            clinic.id,
            ServiceName::parse("byoc-cli").unwrap(),
            "alice",
            &twilio("env-token"),
            name("Imported from env"),
        )
        .await
        .unwrap()
    else {
        panic!("the first import stores the credential");
    };
    assert_eq!(imported.created_by, None);
    assert_eq!(imported.verification_status, VerificationStatus::Pending);
    // Run again (by someone else, under another name): the account is there already, nothing is written.
    let again = importer
        .import(
            clinic.id,
            ServiceName::parse("byoc-cli").unwrap(),
            "bob",
            &twilio("env-token"),
            name("Imported again"),
        )
        .await
        .unwrap();
    assert_eq!(again, Imported::AlreadyPresent(imported.clone()));
    let events = service
        .audit_events(
            &clinic.member,
            AuditPage {
                limit: 10,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action.as_str(), "created");
    assert_eq!(events[0].actor.to_string(), "service:byoc-cli");
    assert_eq!(
        events[0].detail,
        serde_json::json!({
            "display_name": "Imported from env",
            "source": "import-env",
            "os_user": "alice",
            "session_user": OPERATOR_LOGIN,
        })
    );
    importer.shutdown().await.unwrap();
    service.shutdown().await.unwrap();
}

/// Thousands of queued read events, then a graceful shutdown: every one is written.
async fn audit_is_lossless_on_shutdown<R: CredentialRepository + Clone + 'static>(
    store: R,
    operator: R,
) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinics = [
        org(&operator, "First").await,
        org(&operator, "Second").await,
    ];
    let service = CredentialService::new(
        Arc::clone(&repository),
        keyring(&[1]),
        config(Duration::from_secs(60)),
    );
    for clinic in &clinics {
        let stored = service
            .store(&clinic.admin, &twilio("token"), name("Main"))
            .await
            .unwrap();
        service
            .record_verification(&clinic.admin, stored.id, VerificationStatus::Verified, None)
            .await
            .unwrap();
    }
    const READS: usize = 2_500;
    let mut tasks = Vec::new();
    for clinic in &clinics {
        let service = service.clone();
        let tenant = clinic.service.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..READS {
                service
                    .get_credential(&tenant, CredentialType::Twilio, &purpose("sms:hot_lead"))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    service.shutdown().await.unwrap();
    assert_eq!(service.pending_audit_events(), 0);
    for clinic in &clinics {
        let mut reads = 0;
        let mut before = None;
        loop {
            let page = repository
                .list_audit_events(
                    &clinic.member,
                    AuditPage {
                        limit: 1000,
                        before,
                    },
                )
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            before = Some(last.id);
            reads += page
                .iter()
                .filter(|event| event.action.as_str() == "read")
                .count();
        }
        assert_eq!(reads, READS);
        assert!(matches!(
            repository
                .verify_audit_chain(&clinic.member)
                .await
                .unwrap()
                .status,
            byoc_credential_store::AuditChainStatus::Intact { .. }
        ));
    }
}

#[tokio::test]
async fn audit_is_lossless_on_shutdown_on_postgres() {
    let database = fresh_postgres().await;
    audit_is_lossless_on_shutdown(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn audit_is_lossless_on_shutdown_on_sqlite() {
    let database = fresh_sqlite().await;
    audit_is_lossless_on_shutdown(database.store().clone(), database.operator().clone()).await;
}

// Google Calendar: reading the OAuth client whatever the status, and storing a rotated refresh token.

const GOOGLE_CLIENT_ID: &str = "clinic-client.apps.googleusercontent.com";

fn google(refresh_token: &str) -> GoogleCalendarCredential {
    let json = serde_json::json!({
        "clientId": GOOGLE_CLIENT_ID,
        "clientSecret": "clinic-client-secret",
        "refreshToken": refresh_token,
    });
    GoogleCalendarCredential::from_json_bytes(json.to_string().as_bytes()).unwrap()
}

fn refresh_of(credential: &GoogleCalendarCredential) -> String {
    use secrecy::ExposeSecret;
    credential.refresh_token.expose_secret().to_owned()
}

/// A member's availability check stores the rotated token: same id, active key version, cache dropped,
/// audited; members still cannot write envelopes otherwise.
async fn rotated_refresh_token<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&operator, "Clinic").await;
    let first = CredentialService::new(
        Arc::clone(&repository),
        keyring(&[1]),
        config(Duration::ZERO),
    );
    let stored = first
        .store(&clinic.admin, &google("1//original"), name("Calendar"))
        .await
        .unwrap();
    first
        .record_verification(&clinic.admin, stored.id, VerificationStatus::Verified, None)
        .await
        .unwrap();
    first.shutdown().await.unwrap();

    // Key version 2 is active by now: the rotated token is sealed under it.
    let service = CredentialService::new(
        Arc::clone(&repository),
        keyring(&[1, 2]),
        config(Duration::from_secs(60)),
    );
    let calendar = purpose("calendar:availability");
    let cached = service
        .get_payload::<GoogleCalendarCredential>(&clinic.member, &calendar)
        .await
        .unwrap();
    assert_eq!(refresh_of(&cached.payload), "1//original");

    let updated = service
        .store_rotated_refresh_token(&clinic.member, stored.id, &google("1//rotated"), &calendar)
        .await
        .unwrap()
        .expect("replaced");
    assert_eq!(updated.id, stored.id);
    assert!(updated.is_active);
    assert_eq!(updated.verification_status, VerificationStatus::Verified);
    assert_eq!(updated.encryption_key_version.get(), 2);
    let served = service
        .get_payload::<GoogleCalendarCredential>(&clinic.member, &calendar)
        .await
        .unwrap();
    assert_eq!(served.credential_id, Some(stored.id));
    assert_eq!(
        refresh_of(&served.payload),
        "1//rotated",
        "the cached copy was dropped"
    );
    assert_eq!(served.payload.client_id, GOOGLE_CLIENT_ID);

    let again = service
        .store_rotated_refresh_token(&clinic.member, stored.id, &google("1//rotated"), &calendar)
        .await
        .unwrap();
    assert!(again.is_none(), "already stored: nothing written");
    service
        .store_rotated_refresh_token(
            &clinic.service,
            stored.id,
            &google("1//rotated-2"),
            &calendar,
        )
        .await
        .unwrap()
        .expect("a calling service may store a rotation too");

    let outsider = service
        .store_rotated_refresh_token(&clinic.outsider, stored.id, &google("1//x"), &calendar)
        .await
        .unwrap_err();
    assert!(
        matches!(
            outsider.store_error(),
            Some(byoc_credential_store::StoreError::Forbidden { .. })
        ),
        "{outsider:?}"
    );
    let sms = service
        .store(&clinic.admin, &twilio("token"), name("Front desk"))
        .await
        .unwrap();
    let not_google = service
        .store_rotated_refresh_token(&clinic.member, sms.id, &google("1//x"), &calendar)
        .await
        .unwrap_err();
    assert!(
        matches!(
            not_google.store_error(),
            Some(byoc_credential_store::StoreError::NotFound { .. })
        ),
        "{not_google:?}"
    );
    let record = repository
        .get_credential(&clinic.member, stored.id)
        .await
        .unwrap();
    let refused = repository
        .update_envelope(
            &clinic.member,
            stored.id,
            &record.encrypted_data,
            record.metadata.encryption_key_version,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, byoc_credential_store::StoreError::Forbidden { .. }),
        "members may not write envelopes in general: {refused:?}"
    );
    service.deactivate(&clinic.admin, stored.id).await.unwrap();
    let inactive = service
        .store_rotated_refresh_token(&clinic.member, stored.id, &google("1//x"), &calendar)
        .await
        .unwrap_err();
    assert!(matches!(inactive, CredentialServiceError::Inactive { id } if id == stored.id));

    let events = service
        .audit_events(
            &clinic.member,
            AuditPage {
                limit: 100,
                before: None,
            },
        )
        .await
        .unwrap();
    let rotations: Vec<_> = events
        .iter()
        .filter(|event| event.action.as_str() == "updated")
        .collect();
    assert_eq!(rotations.len(), 2, "one event per rotation stored");
    assert!(rotations
        .iter()
        .all(|event| event.credential_id == Some(stored.id)
            && event.detail["reason"] == "refresh token rotated by Google"
            && event.detail["purpose"] == "calendar:availability"));
    assert_eq!(rotations[1].actor, clinic.member.actor, "newest first");
    assert_eq!(rotations[0].actor, clinic.service.actor);
    assert!(events
        .iter()
        .all(|event| !event.detail.to_string().contains("1//rotated")));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_on_postgres() {
    let database = fresh_postgres().await;
    rotated_refresh_token(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_on_sqlite() {
    let database = fresh_sqlite().await;
    rotated_refresh_token(database.store().clone(), database.operator().clone()).await;
}

/// Owners and admins read the OAuth client of a failed credential; members and services cannot.
async fn any_status_reads<R: CredentialRepository + Clone + 'static>(store: R, operator: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&operator, "Clinic").await;
    let service = CredentialService::new(repository, keyring(&[1]), config(Duration::ZERO));
    let reconnect = purpose("oauth:reconnect");
    let none = service
        .get_payload_any_status::<GoogleCalendarCredential>(
            &clinic.admin,
            CredentialSelector::NewestActive,
            &reconnect,
        )
        .await
        .unwrap_err();
    assert!(matches!(none, CredentialServiceError::NotConfigured { .. }));

    let older = service
        .store(&clinic.admin, &google("1//older"), name("Older"))
        .await
        .unwrap();
    service
        .record_verification(&clinic.admin, older.id, VerificationStatus::Verified, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let newest = service
        .store(&clinic.admin, &google("1//newest"), name("Newest"))
        .await
        .unwrap();
    service
        .record_verification(
            &clinic.admin,
            newest.id,
            VerificationStatus::Failed,
            Some("reconnect Google Calendar".to_owned()),
        )
        .await
        .unwrap();

    for manager in [&clinic.owner, &clinic.admin] {
        let found = service
            .get_payload_any_status::<GoogleCalendarCredential>(
                manager,
                CredentialSelector::NewestActive,
                &reconnect,
            )
            .await
            .unwrap();
        assert_eq!(
            found.credential_id,
            Some(newest.id),
            "the newest, failed or not"
        );
        assert_eq!(refresh_of(&found.payload), "1//newest");
    }
    let by_id = service
        .get_payload_any_status::<GoogleCalendarCredential>(
            &clinic.admin,
            CredentialSelector::Id(older.id),
            &reconnect,
        )
        .await
        .unwrap();
    assert_eq!(refresh_of(&by_id.payload), "1//older");
    for refused in [&clinic.member, &clinic.service, &clinic.outsider] {
        let error = service
            .get_payload_any_status::<GoogleCalendarCredential>(
                refused,
                CredentialSelector::NewestActive,
                &reconnect,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                error.store_error(),
                Some(byoc_credential_store::StoreError::Forbidden { .. })
            ),
            "{error:?}"
        );
    }
    service.deactivate(&clinic.admin, newest.id).await.unwrap();
    let inactive = service
        .get_payload_any_status::<GoogleCalendarCredential>(
            &clinic.admin,
            CredentialSelector::Id(newest.id),
            &reconnect,
        )
        .await
        .unwrap_err();
    assert!(matches!(inactive, CredentialServiceError::Inactive { .. }));
    let remaining = service
        .get_payload_any_status::<GoogleCalendarCredential>(
            &clinic.admin,
            CredentialSelector::NewestActive,
            &reconnect,
        )
        .await
        .unwrap();
    assert_eq!(remaining.credential_id, Some(older.id));

    let events = service
        .audit_events(
            &clinic.member,
            AuditPage {
                limit: 100,
                before: None,
            },
        )
        .await
        .unwrap();
    let reads: Vec<_> = events
        .iter()
        .filter(|event| event.action.as_str() == "read")
        .collect();
    assert_eq!(
        reads.len(),
        4,
        "every decryption is audited, refusals are not"
    );
    assert!(reads
        .iter()
        .all(|event| event.detail["purpose"] == "oauth:reconnect"));
    assert!(reads
        .iter()
        .any(|event| event.detail["verification_status"] == "failed"));
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn any_status_reads_on_postgres() {
    let database = fresh_postgres().await;
    any_status_reads(database.store().clone(), database.operator().clone()).await;
}

#[tokio::test]
async fn any_status_reads_on_sqlite() {
    let database = fresh_sqlite().await;
    any_status_reads(database.store().clone(), database.operator().clone()).await;
}

/// Sets the tenant context of the current transaction, as the store does.
async fn enter(connection: &mut sqlx::PgConnection, tenant: &byoc_credential_store::Tenant) {
    let user = tenant
        .actor
        .user_id()
        .map(|user| user.to_string())
        .unwrap_or_default();
    let service = match &tenant.actor {
        byoc_credential_store::Actor::Service(name) => name.as_str().to_owned(),
        byoc_credential_store::Actor::User(_) => String::new(),
    };
    sqlx::query(
        "SELECT set_config('byoc.org_id', $1, true), set_config('byoc.user_id', $2, true), \
                set_config('byoc.service', $3, true)",
    )
    .bind(tenant.org_id.to_string())
    .bind(user)
    .bind(service)
    .execute(&mut *connection)
    .await
    .unwrap();
}

fn sql_state(error: sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database_error) => {
            database_error.code().unwrap_or_default().into_owned()
        }
        other => panic!("expected a database error, got {other}"),
    }
}

/// A credential's envelope as stored, read as the tables' owner.
async fn envelope_of(owner: &sqlx::PgPool, id: byoc_credential_store::CredentialId) -> Vec<u8> {
    sqlx::query_scalar("SELECT encrypted_data FROM organization_api_credentials WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(owner)
        .await
        .unwrap()
}

/// Row-level security as `byoc_app`: a member cannot update envelopes through the table; the rotation
/// function replaces only an active Google Calendar credential of the context org still holding the
/// expected envelope, with a well-formed envelope of the stated key version, and nothing else.
#[tokio::test]
async fn members_write_envelopes_only_through_the_rotation_function_on_postgres() {
    let database = fresh_postgres().await;
    let store = database.store();
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let a = org(database.operator(), "Clinic A").await;
    let b = org(database.operator(), "Clinic B").await;
    let ring = keyring(&[1]);
    let service = CredentialService::new(repository, Arc::clone(&ring), config(Duration::ZERO));
    let google_a = service
        .store(&a.admin, &google("1//a"), name("Calendar"))
        .await
        .unwrap();
    let inactive_a = service
        .store(&a.admin, &google("1//old"), name("Old calendar"))
        .await
        .unwrap();
    service.deactivate(&a.admin, inactive_a.id).await.unwrap();
    let twilio_a = service
        .store(&a.admin, &twilio("token"), name("Front desk"))
        .await
        .unwrap();
    let google_b = service
        .store(&b.admin, &google("1//b"), name("Calendar"))
        .await
        .unwrap();
    service.shutdown().await.unwrap();

    let owner = database.superuser_pool(1).await;
    let sealed_for = |org_id, credential_type, id| {
        ring.seal(
            br#"{"clientId":"x","clientSecret":"y","refreshToken":"z"}"#,
            &byoc_credential_store::service::envelope_context(org_id, credential_type, id),
        )
        .unwrap()
        .into_bytes()
    };
    let replace = "SELECT id FROM byoc_replace_rotated_envelope($1, $2, $3, $4)";
    let pool = store.pool();

    // The table itself: the update policy admits owners and admins only.
    let mut transaction = pool.begin().await.unwrap();
    enter(&mut transaction, &a.member).await;
    let updated = sqlx::query(
        "UPDATE organization_api_credentials SET encrypted_data = encrypted_data, \
             encryption_key_version = encryption_key_version",
    )
    .execute(&mut *transaction)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(updated, 0, "a member updates no credential row");
    let error =
        sqlx::query("UPDATE organization_api_credentials SET verification_status = 'verified'")
            .execute(&mut *transaction)
            .await
            .unwrap_err();
    assert_eq!(sql_state(error), "42501");
    transaction.rollback().await.unwrap();

    // The function refuses everything but the one case it exists for.
    let current = envelope_of(&owner, google_a.id).await;
    let fresh = sealed_for(a.id, CredentialType::GoogleCalendar, google_a.id);
    let cases: Vec<(&str, byoc_credential_store::CredentialId, Vec<u8>, Vec<u8>)> = vec![
        (
            "a Twilio credential",
            twilio_a.id,
            envelope_of(&owner, twilio_a.id).await,
            sealed_for(a.id, CredentialType::Twilio, twilio_a.id),
        ),
        (
            "a deactivated credential",
            inactive_a.id,
            envelope_of(&owner, inactive_a.id).await,
            sealed_for(a.id, CredentialType::GoogleCalendar, inactive_a.id),
        ),
        (
            "another organization's credential",
            google_b.id,
            envelope_of(&owner, google_b.id).await,
            sealed_for(b.id, CredentialType::GoogleCalendar, google_b.id),
        ),
        (
            "an envelope changed meanwhile",
            google_a.id,
            b"not the current one".to_vec(),
            fresh.clone(),
        ),
    ];
    for (what, id, expected, replacement) in cases {
        let mut transaction = pool.begin().await.unwrap();
        enter(&mut transaction, &a.member).await;
        let rows: Vec<uuid::Uuid> = sqlx::query_scalar(replace)
            .bind(id.as_uuid())
            .bind(expected)
            .bind(replacement)
            .bind(1_i64)
            .fetch_all(&mut *transaction)
            .await
            .unwrap();
        assert!(rows.is_empty(), "{what}");
        transaction.rollback().await.unwrap();
    }
    for (what, replacement, version) in [
        ("not an envelope", b"junk".to_vec(), 1_i64),
        ("a version the header does not carry", fresh.clone(), 2),
    ] {
        let mut transaction = pool.begin().await.unwrap();
        enter(&mut transaction, &a.member).await;
        let error = sqlx::query(replace)
            .bind(google_a.id.as_uuid())
            .bind(current.clone())
            .bind(replacement)
            .bind(version)
            .execute(&mut *transaction)
            .await
            .unwrap_err();
        assert_eq!(sql_state(error), "22023", "{what}");
        transaction.rollback().await.unwrap();
    }
    let mut transaction = pool.begin().await.unwrap();
    enter(&mut transaction, &a.outsider).await;
    let error = sqlx::query(replace)
        .bind(google_a.id.as_uuid())
        .bind(current.clone())
        .bind(fresh.clone())
        .bind(1_i64)
        .execute(&mut *transaction)
        .await
        .unwrap_err();
    assert_eq!(sql_state(error), "42501", "a non-member");
    transaction.rollback().await.unwrap();
    let error = sqlx::query(replace)
        .bind(google_a.id.as_uuid())
        .bind(current.clone())
        .bind(fresh.clone())
        .bind(1_i64)
        .execute(pool)
        .await
        .unwrap_err();
    assert_eq!(sql_state(error), "42501", "no context");
    assert_eq!(
        envelope_of(&owner, google_a.id).await,
        current,
        "nothing changed so far"
    );

    // The case it exists for: only the envelope columns change.
    let before = store.get_credential(&a.member, google_a.id).await.unwrap();
    let mut transaction = pool.begin().await.unwrap();
    enter(&mut transaction, &a.member).await;
    let rows: Vec<uuid::Uuid> = sqlx::query_scalar(replace)
        .bind(google_a.id.as_uuid())
        .bind(current.clone())
        .bind(fresh.clone())
        .bind(1_i64)
        .fetch_all(&mut *transaction)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(rows, [google_a.id.as_uuid()]);
    let after = store.get_credential(&a.member, google_a.id).await.unwrap();
    assert_eq!(after.encrypted_data.as_bytes(), fresh.as_slice());
    assert_eq!(after.metadata.display_name, before.metadata.display_name);
    assert_eq!(after.metadata.is_active, before.metadata.is_active);
    assert_eq!(
        after.metadata.verification_status,
        before.metadata.verification_status
    );
    owner.close().await;
}
