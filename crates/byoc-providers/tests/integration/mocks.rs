//! The `mock` feature's mockall mocks stand in for providers in upper layers' tests.

use std::sync::Arc;

use byoc_credential_types::{CredentialType, E164Phone};
use byoc_providers::{
    Acceptance, MockSmsSender, MockVerifier, OutboundSms, ProviderError, ProviderRefusal,
    RefusalReason, SmsSender, VerificationDetails, VerifierRegistry,
};

use crate::support::{twilio_credential, TWILIO_FROM};

#[tokio::test]
async fn a_registered_mock_verifier_answers_for_its_kind() {
    let mut verifier = MockVerifier::new();
    verifier.expect_kind().return_const(CredentialType::HubSpot);
    verifier.expect_verify().times(1).returning(|_| {
        Ok(Acceptance {
            details: VerificationDetails::HubSpot {
                portal_id: 7,
                account_type: None,
            },
            updated_payload: None,
        })
    });
    let mut registry = VerifierRegistry::new();
    registry.register(Arc::new(verifier));
    let outcome = registry
        .verify(CredentialType::HubSpot, b"{}")
        .await
        .expect("mocked");
    assert_eq!(
        outcome.details.to_string(),
        "HubSpot account 7 accepted the token"
    );

    let missing = registry
        .verify(CredentialType::Stripe, b"{}")
        .await
        .expect_err("none registered");
    assert!(matches!(missing, ProviderError::InvalidInput(_)));
}

#[tokio::test]
async fn a_mock_sender_sees_the_credential_and_message() {
    let mut sender = MockSmsSender::new();
    sender
        .expect_send_sms()
        .withf(|credential, message| {
            credential.phone_number.as_str() == TWILIO_FROM
                && message.to().as_str() == "+14155550123"
        })
        .times(1)
        .returning(|_, _| {
            Err(ProviderError::Refused(ProviderRefusal {
                provider: CredentialType::Twilio,
                reason: RefusalReason::RecipientUnsubscribed,
                code: "21610".into(),
                message: "Attempt to send to unsubscribed recipient".into(),
                http_status: Some(400),
                more_info: None,
            }))
        });
    let message = OutboundSms::new(E164Phone::parse("to", "+14155550123").expect("valid"), "hi")
        .expect("valid");
    let error = sender
        .send_sms(&twilio_credential(TWILIO_FROM), &message)
        .await
        .expect_err("mocked refusal");
    assert_eq!(error.provider_code(), Some("21610"));
}
