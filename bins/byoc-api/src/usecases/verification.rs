//! Verifying a credential against its provider: read the secret (the credential service), ask the provider
//! (its verifier), record the outcome (the credential service again). The store only records outcomes.

use byoc_credential_store::{
    Actor, CredentialId, CredentialMetadata, CredentialService, CredentialServiceError,
    CredentialType, Purpose, Tenant, VerificationStatus,
};
use byoc_credential_types::{CredentialJson, CredentialPayload, GoogleCalendarCredential};
use byoc_providers::{ProviderError, VerificationDetails, VerifierRegistry};

use crate::plumbing::error::ApiError;

/// What verifying found.
#[derive(Debug)]
pub struct Verification {
    /// The credential after the outcome was recorded.
    pub metadata: CredentialMetadata,
    /// Whether the provider accepted it.
    pub verified: bool,
    /// What the provider reported when it accepted the credential.
    pub details: Option<VerificationDetails>,
}

/// Why a verification could not be completed (nothing was recorded).
#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    /// The credential could not be read or the outcome not recorded.
    #[error(transparent)]
    Service(#[from] CredentialServiceError),
    /// The provider could not be asked (an outage, a rate limit, invalid input).
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

// A verification's failure answers as the credential service's or the provider's error would.
impl From<VerificationError> for ApiError {
    fn from(error: VerificationError) -> ApiError {
        match error {
            VerificationError::Service(service) => service.into(),
            VerificationError::Provider(provider) => provider.into(),
        }
    }
}

/// Decrypts credential `id` (owner, admin or service; active only), asks its provider with `verifiers`, and
/// records the outcome. A refusal that says the credential is unusable records `failed` (`verified: false`);
/// an outage, rate limit or invalid input records nothing and answers [`VerificationError::Provider`]. When
/// the provider hands back a changed payload (Google rotated the refresh token), it is sealed and stored first
/// (by a service, such as the periodic re-verification, only Google's rotated refresh token, through the path
/// any member or service may use).
pub async fn verify_credential(
    service: &CredentialService,
    verifiers: &VerifierRegistry,
    tenant: &Tenant,
    id: CredentialId,
) -> Result<Verification, VerificationError> {
    let (credential_type, answer) = {
        let credential = service.credential_to_verify(tenant, id).await?;
        let credential_type = credential.credential_type();
        let answer = verifiers
            .verify(credential_type, credential.expose_json())
            .await;
        (credential_type, answer)
    };
    let (status, error, details) = match answer {
        Ok(accepted) => {
            if let Some(updated) = accepted.updated_payload {
                store_updated_payload(service, tenant, id, credential_type, &updated).await?;
            }
            (VerificationStatus::Verified, None, Some(accepted.details))
        }
        Err(refusal) if refusal.is_credential_failure() => {
            (VerificationStatus::Failed, Some(refusal.to_string()), None)
        }
        Err(other) => return Err(other.into()),
    };
    let verified = status == VerificationStatus::Verified;
    let metadata = service
        .record_verification(tenant, id, status, error)
        .await?;
    Ok(Verification {
        metadata,
        verified,
        details,
    })
}

/// Stores the payload a provider handed back while verifying: an owner or admin replaces it; a service may not
/// edit a credential, so it stores only the refresh token Google rotated (compare-and-swap, audited as
/// `updated`), and any other changed payload is refused as an admin's action.
async fn store_updated_payload(
    service: &CredentialService,
    tenant: &Tenant,
    id: CredentialId,
    credential_type: CredentialType,
    updated: &CredentialJson,
) -> Result<(), CredentialServiceError> {
    match (&tenant.actor, credential_type) {
        (Actor::Service(_), CredentialType::GoogleCalendar) => {
            let rotated = GoogleCalendarCredential::from_json_bytes(updated.as_bytes()).map_err(
                |source| CredentialServiceError::InvalidPayload {
                    provider: credential_type,
                    source,
                },
            )?;
            let purpose = Purpose::parse("verify").map_err(|_| {
                CredentialServiceError::from(byoc_credential_store::StoreError::Internal {
                    context: "the purpose `verify` is not valid".to_owned(),
                    source: None,
                })
            })?;
            service
                .store_rotated_refresh_token(tenant, id, &rotated, &purpose)
                .await?;
        }
        _ => {
            service
                .replace_payload(tenant, id, updated, "provider rotated the credential")
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use byoc_credential_store::test_support::fresh_sqlite;
    use byoc_credential_store::{
        AuditPage, CredentialRepository, CredentialType, DisplayName, HotLeadThreshold,
        OrganizationName, Purpose, Role, ServiceConfig, ServiceName, UserId,
    };
    use byoc_credential_types::{
        E164Phone, GoogleCalendarCredential, InvalidField, TwilioAccountSid, TwilioCredential,
    };
    use byoc_crypto::{KeyVersion, Keyring, MasterKey};
    use byoc_providers::{Acceptance, MockVerifier};
    use secrecy::SecretString;

    use super::*;

    fn registry(answer: fn() -> Result<Acceptance, ProviderError>) -> VerifierRegistry {
        let mut verifier = MockVerifier::new();
        verifier.expect_kind().return_const(CredentialType::Twilio);
        verifier
            .expect_verify()
            .withf(|payload| {
                std::str::from_utf8(payload)
                    .unwrap()
                    .contains("\"authToken\"")
            })
            .returning(move |_| answer());
        let mut registry = VerifierRegistry::new();
        registry.register(Arc::new(verifier));
        registry
    }

    #[tokio::test]
    async fn the_providers_answer_is_recorded_and_an_outage_records_nothing() {
        let database = fresh_sqlite().await;
        let store = database.store();
        let organization = store
            .operator_create_organization(
                &OrganizationName::parse("Clinic").unwrap(),
                HotLeadThreshold::DEFAULT,
            )
            .await
            .unwrap();
        let (admin_id, member_id) = (UserId::new_random(), UserId::new_random());
        store
            .operator_add_member(organization.id, admin_id, Role::Admin)
            .await
            .unwrap();
        store
            .operator_add_member(organization.id, member_id, Role::Member)
            .await
            .unwrap();
        let (admin, member) = (
            Tenant::user(organization.id, admin_id),
            Tenant::user(organization.id, member_id),
        );
        let mut config = ServiceConfig::new(ServiceName::parse("byoc-api").unwrap());
        config.cache_ttl = Duration::from_secs(60);
        let keyring = Keyring::new(
            vec![(KeyVersion::FIRST, MasterKey::generate())],
            KeyVersion::FIRST,
        )
        .unwrap();
        let service = CredentialService::new(Arc::new(store.clone()), Arc::new(keyring), config);
        let twilio = TwilioCredential {
            account_sid: TwilioAccountSid::parse(
                "accountSid",
                "AC0123456789abcdef0123456789abcdef",
            )
            .unwrap(),
            auth_token: SecretString::from("token"),
            phone_number: E164Phone::parse("phoneNumber", "+14155550123").unwrap(),
        };
        let stored = service
            .store(&admin, &twilio, DisplayName::parse("Main").unwrap())
            .await
            .unwrap();
        let use_it = || async {
            service
                .get_credential(
                    &member,
                    CredentialType::Twilio,
                    &Purpose::parse("sms:test").unwrap(),
                )
                .await
        };

        let accepted = registry(|| {
            Ok(Acceptance {
                details: VerificationDetails::Twilio {
                    phone_number: "+14155550123".into(),
                },
                updated_payload: None,
            })
        });
        let verification = verify_credential(&service, &accepted, &admin, stored.id)
            .await
            .unwrap();
        assert!(verification.verified);
        assert_eq!(
            verification.metadata.verification_status,
            VerificationStatus::Verified
        );
        assert!(use_it().await.is_ok());

        // A member may not verify (an admin's action).
        assert!(matches!(
            verify_credential(&service, &accepted, &member, stored.id).await,
            Err(VerificationError::Service(_))
        ));

        let outage = registry(|| {
            Err(ProviderError::Unavailable {
                provider: CredentialType::Twilio,
                reason: "connection refused".into(),
            })
        });
        assert!(matches!(
            verify_credential(&service, &outage, &admin, stored.id).await,
            Err(VerificationError::Provider(_))
        ));
        assert!(use_it().await.is_ok(), "an outage records nothing");

        let refused = registry(|| {
            Err(ProviderError::InvalidInput(InvalidField::new(
                "authToken",
                "rejected",
            )))
        });
        let verification = verify_credential(&service, &refused, &admin, stored.id)
            .await
            .unwrap();
        assert!(!verification.verified);
        assert!(verification
            .metadata
            .verification_error
            .unwrap()
            .contains("authToken"));
        assert!(
            use_it().await.is_err(),
            "the cached credential went with it"
        );

        service.deactivate(&admin, stored.id).await.unwrap();
        assert!(matches!(
            verify_credential(&service, &accepted, &admin, stored.id).await,
            Err(VerificationError::Service(CredentialServiceError::Inactive { id })) if id == stored.id
        ));
        let mut actions: Vec<String> = service
            .audit_events(
                &admin,
                AuditPage {
                    limit: 20,
                    before: None,
                },
            )
            .await
            .unwrap()
            .into_iter()
            .map(|event| event.action.as_str().to_owned())
            .collect();
        actions.reverse();
        assert_eq!(
            actions,
            [
                "created",
                "verified",
                "read",
                "read",
                "verification_failed",
                "deactivated"
            ]
        );
        service.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_service_stores_only_the_refresh_token_google_rotated_while_verifying() {
        let database = fresh_sqlite().await;
        let store = database.store();
        let organization = store
            .operator_create_organization(
                &OrganizationName::parse("Clinic").unwrap(),
                HotLeadThreshold::DEFAULT,
            )
            .await
            .unwrap();
        let admin_id = UserId::new_random();
        store
            .operator_add_member(organization.id, admin_id, Role::Admin)
            .await
            .unwrap();
        let admin = Tenant::user(organization.id, admin_id);
        let reverify = Tenant::service(organization.id, ServiceName::parse("reverify").unwrap());
        let keyring = Keyring::new(
            vec![(KeyVersion::FIRST, MasterKey::generate())],
            KeyVersion::FIRST,
        )
        .unwrap();
        let service = CredentialService::new(
            Arc::new(store.clone()),
            Arc::new(keyring),
            ServiceConfig::new(ServiceName::parse("byoc-api").unwrap()),
        );
        let google = |refresh_token: &str| GoogleCalendarCredential {
            client_id: "client.apps.googleusercontent.com".to_owned(),
            client_secret: SecretString::from("client-secret"),
            refresh_token: SecretString::from(refresh_token.to_owned()),
            redirect_url: None,
            calendar_id: None,
            granted_scope: None,
        };
        let stored = service
            .store(
                &admin,
                &google("old-refresh-token"),
                DisplayName::parse("Calendar").unwrap(),
            )
            .await
            .unwrap();

        let mut verifier = MockVerifier::new();
        verifier
            .expect_kind()
            .return_const(CredentialType::GoogleCalendar);
        verifier.expect_verify().returning(move |_| {
            Ok(Acceptance {
                details: VerificationDetails::GoogleCalendar {
                    calendar_id: "primary".into(),
                    time_zone: None,
                    calendars: 1,
                },
                updated_payload: Some(google("rotated-refresh-token").to_json_bytes()),
            })
        });
        let mut verifiers = VerifierRegistry::new();
        verifiers.register(Arc::new(verifier));

        let verification = verify_credential(&service, &verifiers, &reverify, stored.id)
            .await
            .unwrap();
        assert!(verification.verified);
        let now = service
            .credential_to_verify(&admin, stored.id)
            .await
            .unwrap();
        let json = std::str::from_utf8(now.expose_json()).unwrap().to_owned();
        assert!(
            json.contains("rotated-refresh-token"),
            "the rotated token is stored"
        );
        let actions: Vec<(String, String)> = service
            .audit_events(
                &admin,
                AuditPage {
                    limit: 10,
                    before: None,
                },
            )
            .await
            .unwrap()
            .into_iter()
            .map(|event| (event.actor.to_string(), event.action.as_str().to_owned()))
            .collect();
        assert!(
            actions.contains(&("service:reverify".to_owned(), "updated".to_owned())),
            "{actions:?}"
        );
        assert!(
            actions.contains(&("service:reverify".to_owned(), "verified".to_owned())),
            "{actions:?}"
        );
        service.shutdown().await.unwrap();
    }
}
