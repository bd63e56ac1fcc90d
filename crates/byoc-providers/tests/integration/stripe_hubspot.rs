//! Stripe and HubSpot verification against wiremock: success and their documented auth-failure shapes.

use byoc_credential_types::{CredentialType, StripeMode};
use byoc_providers::{
    Acceptance, ProviderClients, ProviderError, RefusalReason, VerificationDetails,
};
use wiremock::matchers::{bearer_token, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{assert_no_secret, config_for, request_count};

const STRIPE_TEST_KEY: &str = "sk_test_51HsecretKeyValue0000abcd";
const STRIPE_LIVE_KEY: &str = "rk_live_51HsecretKeyValue0000wxyz";
const HUBSPOT_TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";

fn stripe_payload(key: &str) -> Vec<u8> {
    serde_json::json!({ "secretKey": key })
        .to_string()
        .into_bytes()
}

fn hubspot_payload() -> Vec<u8> {
    serde_json::json!({ "accessToken": HUBSPOT_TOKEN })
        .to_string()
        .into_bytes()
}

async fn registry_for(server: &MockServer) -> byoc_providers::VerifierRegistry {
    ProviderClients::new(&config_for(&server.uri()))
        .expect("clients")
        .verifier_registry()
}

/// A server answering GET `route` with `response`.
async fn server_answering(route: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(route))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

/// Verifies the Stripe secret key `key` with the verifiers pointed at `server`.
async fn verify_stripe(server: &MockServer, key: &str) -> Result<Acceptance, ProviderError> {
    registry_for(server)
        .await
        .verify(CredentialType::Stripe, &stripe_payload(key))
        .await
}

/// Verifies the HubSpot test token with the verifiers pointed at `server`.
async fn verify_hubspot(server: &MockServer) -> Result<Acceptance, ProviderError> {
    registry_for(server)
        .await
        .verify(CredentialType::HubSpot, &hubspot_payload())
        .await
}

#[tokio::test]
async fn stripe_reports_test_and_live_mode() {
    let server = MockServer::start().await;
    for (key, livemode) in [(STRIPE_TEST_KEY, false), (STRIPE_LIVE_KEY, true)] {
        Mock::given(method("GET"))
            .and(path("/v1/balance"))
            .and(bearer_token(key))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "object": "balance", "livemode": livemode,
                "available": [{"amount": 0, "currency": "usd"}], "pending": []
            })))
            .mount(&server)
            .await;
    }
    let registry = registry_for(&server).await;
    let test = registry
        .verify(CredentialType::Stripe, &stripe_payload(STRIPE_TEST_KEY))
        .await
        .expect("test key verified");
    assert_eq!(
        test.details,
        VerificationDetails::Stripe {
            livemode: false,
            key_mode: StripeMode::Test
        }
    );
    let live = registry
        .verify(CredentialType::Stripe, &stripe_payload(STRIPE_LIVE_KEY))
        .await
        .expect("live key verified");
    assert_eq!(
        live.details,
        VerificationDetails::Stripe {
            livemode: true,
            key_mode: StripeMode::Live
        }
    );
    assert_eq!(live.details.to_string(), "Stripe key accepted (live mode)");
}

#[tokio::test]
async fn stripe_auth_failures_are_typed_and_never_echo_the_key() {
    let server = server_answering(
        "/v1/balance",
        ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": {
                "message": format!("Invalid API Key provided: {STRIPE_TEST_KEY}"),
                "type": "invalid_request_error"
            }
        })),
    )
    .await;
    let error = verify_stripe(&server, STRIPE_TEST_KEY)
        .await
        .expect_err("refused");
    let refusal = error.refusal().expect("refusal");
    assert_eq!(refusal.reason, RefusalReason::Authentication);
    assert_eq!(refusal.code, "invalid_request_error");
    assert_eq!(refusal.message, "Invalid API Key provided: [redacted]");
    assert!(error.is_credential_failure());
    assert_no_secret(&error, &[STRIPE_TEST_KEY, "51HsecretKeyValue"]);
}

#[tokio::test]
async fn stripe_restricted_keys_without_balance_permission_are_refused() {
    let server = server_answering(
        "/v1/balance",
        ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "error": {
                "message": format!("The provided key '{STRIPE_LIVE_KEY}' does not have the required permissions for this endpoint on account 'acct_1'."),
                "type": "invalid_request_error"
            }
        })),
    )
    .await;
    let error = verify_stripe(&server, STRIPE_LIVE_KEY)
        .await
        .expect_err("refused");
    assert_eq!(
        error.refusal().map(|r| r.reason),
        Some(RefusalReason::PermissionDenied)
    );
    assert_no_secret(&error, &[STRIPE_LIVE_KEY]);
}

#[tokio::test]
async fn hubspot_verifies_the_account_details() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/account-info/v3/details"))
        .and(bearer_token(HUBSPOT_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "portalId": 62515, "accountType": "STANDARD", "timeZone": "US/Eastern",
            "companyCurrency": "USD", "additionalCurrencies": [], "utcOffset": "-05:00",
            "utcOffsetMilliseconds": -18000000, "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = verify_hubspot(&server).await.expect("verified");
    assert_eq!(
        outcome.details,
        VerificationDetails::HubSpot {
            portal_id: 62515,
            account_type: Some("STANDARD".into())
        }
    );
}

#[tokio::test]
async fn hubspot_auth_failures_carry_the_category() {
    let server = server_answering(
        "/account-info/v3/details",
        ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "status": "error",
            "message": "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "correlationId": "a43683b0-5717-4ceb-80b4-104d02915d8c",
            "category": "INVALID_AUTHENTICATION"
        })),
    )
    .await;
    let error = verify_hubspot(&server).await.expect_err("refused");
    let refusal = error.refusal().expect("refusal");
    assert_eq!(refusal.reason, RefusalReason::Authentication);
    assert_eq!(refusal.code, "INVALID_AUTHENTICATION");
    assert_no_secret(&error, &[HUBSPOT_TOKEN]);

    let server = server_answering(
        "/account-info/v3/details",
        ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "status": "error", "message": "This app hasn't been granted all required scopes to make this call.",
            "correlationId": "b1", "category": "MISSING_SCOPES"
        })),
    )
    .await;
    let error = verify_hubspot(&server).await.expect_err("refused");
    assert_eq!(
        error.refusal().map(|r| r.reason),
        Some(RefusalReason::PermissionDenied)
    );
    assert_eq!(error.provider_code(), Some("MISSING_SCOPES"));
}

#[tokio::test]
async fn a_payload_of_the_wrong_shape_is_invalid_input_naming_the_field() {
    let server = MockServer::start().await;
    let error = verify_stripe(&server, "pk_test_51Hpublishable0000")
        .await
        .expect_err("publishable key");
    match &error {
        ProviderError::InvalidInput(field) => assert_eq!(field.field, "secretKey"),
        other => panic!("unexpected {other}"),
    }
    assert_no_secret(&error, &["pk_test_51Hpublishable0000"]);
    assert_eq!(request_count(&server).await, Some(0));
}

#[tokio::test]
async fn an_oversized_answer_is_refused_not_buffered() {
    let server = server_answering(
        "/v1/balance",
        ResponseTemplate::new(200).set_body_string("x".repeat(5 * 1024 * 1024)),
    )
    .await;
    let error = verify_stripe(&server, STRIPE_TEST_KEY)
        .await
        .expect_err("too large");
    assert!(
        matches!(error, ProviderError::UnexpectedResponse { .. }),
        "{error}"
    );
}
