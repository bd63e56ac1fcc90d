//! Twilio request shapes checked by a Prism mock of Twilio's own 2010-04-01 OpenAPI spec.

use byoc_credential_types::E164Phone;
use byoc_providers::{OutboundSms, ProviderError, RefusalReason, SmsSender, Verifier};

use crate::prism::{testdata, PrismServer};
use crate::support::{config_for, twilio_client, twilio_credential, twilio_payload, TWILIO_SID};

/// The number the spec's IncomingPhoneNumbers example lists (voice, no SMS capability).
const SPEC_EXAMPLE_NUMBER: &str = "+18089255327";

#[tokio::test]
async fn twilio_requests_conform_to_twilios_openapi_spec() {
    let prism = PrismServer::start(testdata("twilio/twilio_api_v2010.json")).await;
    let config = config_for(&prism.base_url);
    let client = twilio_client(&config);

    // Prism answers 422 to any request the spec does not allow; a valid send gets the spec's example.
    let message = OutboundSms::new(
        E164Phone::parse("to", "+14155550123").expect("valid"),
        "🔥 Hot Lead! Ada just expressed high interest in booking.",
    )
    .expect("valid message");
    let sent = client
        .send_sms(&twilio_credential("+14155552345"), &message)
        .await
        .unwrap_or_else(|error| panic!("send rejected: {error}\n{}", prism.log()));
    assert!(sent.sid.starts_with("SM"), "{sent:?}");
    assert_eq!(sent.status, "queued");

    // Verification: the account fetch and the filtered IncomingPhoneNumbers list both pass validation;
    // the spec's example number has no SMS capability, which verification reports.
    let error = client
        .verify(&twilio_payload(SPEC_EXAMPLE_NUMBER))
        .await
        .expect_err("the example number cannot send SMS");
    let refusal = error
        .refusal()
        .unwrap_or_else(|| panic!("not a refusal: {error}"));
    assert_eq!(
        refusal.reason,
        RefusalReason::PhoneNumberCannotSendSms,
        "{error}"
    );

    let error = client
        .verify(&twilio_payload("+14155552345"))
        .await
        .expect_err("another number is not on the account");
    assert_eq!(
        error.refusal().map(|refusal| refusal.reason),
        Some(RefusalReason::PhoneNumberNotOnAccount),
        "{error}"
    );

    // The mock really validates: a send without `To` is refused with 422.
    let malformed = reqwest::Client::new()
        .post(format!(
            "{}/2010-04-01/Accounts/{TWILIO_SID}/Messages.json",
            prism.base_url
        ))
        .basic_auth(TWILIO_SID, Some("token"))
        .form(&[("From", "+14155552345"), ("Body", "hi")])
        .send()
        .await
        .expect("prism answers");
    assert_eq!(malformed.status().as_u16(), 422);
    assert!(matches!(error, ProviderError::Refused(_)));
}
