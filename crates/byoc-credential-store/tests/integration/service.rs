//! The credential service on real databases: storing, using, verifying, retiring, auditing, the legacy
//! fallback, the start-up key check, rotation and `keys check`, on Postgres and SQLite; cross-replica
//! invalidation and a rotation killed at random points on Postgres.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use byoc_credential_store::service::LegacyTwilioFallback;
use byoc_credential_store::test_support::{fresh_postgres, fresh_sqlite};
use byoc_credential_store::{
    AuditPage, CredentialRepository, CredentialService, CredentialServiceError, CredentialType,
    DisplayName, Purpose, ServiceConfig, ServiceName, VerificationStatus,
};
use byoc_crypto::{KeyVersion, Keyring, MasterKey};
use byoc_providers::{
    CredentialPayload, InvalidField, MockVerifier, ProviderError, ProviderKind, TwilioCredential,
    VerificationDetails, VerificationOutcome, VerifierRegistry,
};

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
async fn lifecycle<R: CredentialRepository + Clone + 'static>(store: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&store, "Clinic").await;
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
    lifecycle(database.store().clone()).await;
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    let database = fresh_sqlite().await;
    lifecycle(database.store().clone()).await;
}

/// Purge: the row and its ciphertext are gone, the audit entries stay.
async fn purge<R: CredentialRepository + Clone + 'static>(store: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinic = org(&store, "Clinic").await;
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
    let check = service.check_all().await.unwrap();
    assert_eq!((check.ok, check.failures.len()), (0, 0));
    assert_eq!(actions(&service, &clinic).await, ["created", "purged"]);
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn purge_on_postgres() {
    let database = fresh_postgres().await;
    purge(database.store().clone()).await;
}

#[tokio::test]
async fn purge_on_sqlite() {
    let database = fresh_sqlite().await;
    purge(database.store().clone()).await;
}

fn registry(result: fn() -> Result<VerificationOutcome, ProviderError>) -> VerifierRegistry {
    let mut verifier = MockVerifier::new();
    verifier.expect_kind().return_const(ProviderKind::Twilio);
    verifier
        .expect_verify()
        .withf(|payload| {
            std::str::from_utf8(payload)
                .unwrap()
                .contains("\"authToken\"")
        })
        .returning(move |_| result());
    let mut registry = VerifierRegistry::new();
    registry.register(Arc::new(verifier));
    registry
}

#[tokio::test]
async fn verify_records_the_providers_answer_on_sqlite() {
    let database = fresh_sqlite().await;
    let repository: Arc<dyn CredentialRepository> = Arc::new(database.store().clone());
    let clinic = org(database.store(), "Clinic").await;
    let service =
        CredentialService::new(repository, keyring(&[1]), config(Duration::from_secs(60)));
    let stored = service
        .store(&clinic.admin, &twilio("token"), name("Main"))
        .await
        .unwrap();

    let accepted = registry(|| {
        Ok(VerificationOutcome {
            details: VerificationDetails::Twilio {
                account_name: "Clinic".into(),
                account_type: "Full".into(),
                phone_number: "+14155550123".into(),
            },
            updated_payload: None,
        })
    });
    let verification = service
        .verify(&clinic.admin, stored.id, &accepted)
        .await
        .unwrap();
    assert!(verification.verified);
    assert_eq!(
        verification.metadata.verification_status,
        VerificationStatus::Verified
    );
    assert!(verification.metadata.last_verified_at.is_some());
    assert!(service
        .get_credential(
            &clinic.service,
            CredentialType::Twilio,
            &purpose("sms:test")
        )
        .await
        .is_ok());

    let refused = registry(|| {
        Err(ProviderError::InvalidInput(InvalidField::new(
            "authToken",
            "rejected",
        )))
    });
    let verification = service
        .verify(&clinic.admin, stored.id, &refused)
        .await
        .unwrap();
    assert!(!verification.verified);
    assert_eq!(
        verification.metadata.verification_status,
        VerificationStatus::Failed
    );
    assert!(verification
        .metadata
        .verification_error
        .unwrap()
        .contains("authToken"));
    // The cached credential went with the failed verification.
    assert!(service
        .get_credential(
            &clinic.service,
            CredentialType::Twilio,
            &purpose("sms:test")
        )
        .await
        .is_err());

    service.deactivate(&clinic.admin, stored.id).await.unwrap();
    let inactive = service
        .verify(&clinic.admin, stored.id, &accepted)
        .await
        .unwrap_err();
    assert!(matches!(inactive, CredentialServiceError::Inactive { id } if id == stored.id));
    assert_eq!(
        actions(&service, &clinic).await,
        [
            "created",
            "verified",
            "read",
            "verification_failed",
            "deactivated"
        ]
    );
    service.shutdown().await.unwrap();
}

/// The legacy fallback serves listed orgs only, and is logged, audited and counted.
async fn legacy_fallback<R: CredentialRepository + Clone + 'static>(store: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let listed = org(&store, "Listed").await;
    let other = org(&store, "Other").await;
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

#[tokio::test]
async fn legacy_fallback_on_postgres() {
    let database = fresh_postgres().await;
    legacy_fallback(database.store().clone()).await;
}

#[tokio::test]
async fn legacy_fallback_on_sqlite() {
    let database = fresh_sqlite().await;
    legacy_fallback(database.store().clone()).await;
}

#[tokio::test]
async fn import_env_stores_a_normal_credential_on_postgres() {
    let database = fresh_postgres().await;
    let repository: Arc<dyn CredentialRepository> = Arc::new(database.store().clone());
    let clinic = org(database.store(), "Clinic").await;
    let service =
        CredentialService::new(repository, keyring(&[1]), config(Duration::from_secs(60)));
    let imported = service
        .import(
            clinic.id,
            ServiceName::parse("byoc-cli").unwrap(),
            &twilio("env-token"),
            name("Imported from env"),
        )
        .await
        .unwrap();
    assert_eq!(imported.created_by, None);
    assert_eq!(imported.verification_status, VerificationStatus::Pending);
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
    assert_eq!(events[0].detail["source"], "import-env");
    service.shutdown().await.unwrap();
}

/// Thousands of queued read events, then a graceful shutdown: every one is written.
async fn audit_is_lossless_on_shutdown<R: CredentialRepository + Clone + 'static>(store: R) {
    let repository: Arc<dyn CredentialRepository> = Arc::new(store.clone());
    let clinics = [org(&store, "First").await, org(&store, "Second").await];
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
            repository.verify_audit_chain(&clinic.member).await.unwrap(),
            byoc_credential_store::AuditChainStatus::Intact { .. }
        ));
    }
}

#[tokio::test]
async fn audit_is_lossless_on_shutdown_on_postgres() {
    let database = fresh_postgres().await;
    audit_is_lossless_on_shutdown(database.store().clone()).await;
}

#[tokio::test]
async fn audit_is_lossless_on_shutdown_on_sqlite() {
    let database = fresh_sqlite().await;
    audit_is_lossless_on_shutdown(database.store().clone()).await;
}
