//! Stripe and HubSpot credentials end to end (issue 20, part 2): added through their endpoints, listed with a
//! hint that shows at most the last four characters, verified against fake providers (Stripe's balance,
//! HubSpot's account details) with the provider's error recorded on a refusal, deactivated and purged; bad
//! input answers 422 naming the field and never echoing the secret.

use wiremock::matchers::{bearer_token, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{captured_logs, error_code, spawn_app_with, Store, TestApp, STORES};

const LIST: &str = "/api/organization/credentials";
const STRIPE_KEY: &str = "sk_live_51HgoodStripeKeyValue4242";
const STRIPE_REFUSED_KEY: &str = "rk_test_51HrevokedStripeKey0000";
const HUBSPOT_TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
const HUBSPOT_REFUSED_TOKEN: &str = "pat-eu1-99999999-8888-7777-6666-expired00000";

/// A fake of both providers: Stripe accepts [`STRIPE_KEY`] and refuses [`STRIPE_REFUSED_KEY`] the way it
/// refuses a rolled key; HubSpot accepts [`HUBSPOT_TOKEN`] and refuses [`HUBSPOT_REFUSED_TOKEN`].
async fn fake_stripe_and_hubspot() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/balance"))
        .and(bearer_token(STRIPE_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "object": "balance", "livemode": true, "available": [], "pending": []
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/balance"))
        .and(bearer_token(STRIPE_REFUSED_KEY))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": {"type": "invalid_request_error", "code": "api_key_expired",
                      "message": format!("Expired API Key provided: {STRIPE_REFUSED_KEY}")}
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/account-info/v3/details"))
        .and(bearer_token(HUBSPOT_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "portalId": 62515, "accountType": "STANDARD", "timeZone": "US/Eastern"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/account-info/v3/details"))
        .and(bearer_token(HUBSPOT_REFUSED_TOKEN))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "status": "error", "category": "INVALID_AUTHENTICATION",
            "message": "Authentication credentials not found."
        })))
        .mount(&server)
        .await;
    server
}

async fn app_with_fakes(store: Store, fake: &MockServer) -> TestApp {
    spawn_app_with(
        store,
        &[
            ("STRIPE_API_BASE", fake.uri()),
            ("HUBSPOT_API_BASE", fake.uri()),
        ],
    )
    .await
}

/// Adds a credential of `kind` with `body` as `token`; answers the created row.
async fn add(app: &TestApp, token: &str, kind: &str, body: serde_json::Value) -> serde_json::Value {
    let response = app.post_json(&format!("{LIST}/{kind}"), token, &body).await;
    assert_eq!(response.status(), 201, "add {kind}");
    response.json().await.expect("row")
}

async fn verify(app: &TestApp, token: &str, id: &str) -> serde_json::Value {
    let response = app
        .post_json(
            &format!("{LIST}/{id}/verify"),
            token,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(response.status(), 200, "verify {id}");
    response.json().await.expect("verdict")
}

#[tokio::test]
async fn stripe_and_hubspot_are_added_listed_verified_deactivated_and_purged() {
    for store in STORES {
        lifecycle_on(store).await;
    }
}

async fn lifecycle_on(store: Store) {
    let fake = fake_stripe_and_hubspot().await;
    let app = app_with_fakes(store, &fake).await;
    let org = app.create_org("Clinic").await;
    let (owner, admin) = (app.token(org.id, org.owner), app.token(org.id, org.admin));

    let stripe = add(
        &app,
        &admin,
        "stripe",
        serde_json::json!({"secretKey": STRIPE_KEY, "displayName": "Payments"}),
    )
    .await;
    assert_eq!(stripe["credential_type"], "stripe");
    assert_eq!(stripe["verification_status"], "pending");
    assert_eq!(stripe["public_hint"], "sk_live_…4242", "{store:?}");
    let hubspot = add(
        &app,
        &admin,
        "hubspot",
        serde_json::json!({"accessToken": HUBSPOT_TOKEN, "displayName": "CRM"}),
    )
    .await;
    assert_eq!(hubspot["credential_type"], "hubspot");
    assert_eq!(hubspot["public_hint"], "pat-…5555", "{store:?}");

    let duplicate = app
        .post_json(
            &format!("{LIST}/stripe"),
            &admin,
            &serde_json::json!({"secretKey": STRIPE_REFUSED_KEY, "displayName": "Payments"}),
        )
        .await;
    assert_eq!(
        duplicate.status(),
        409,
        "{store:?}: display names are unique per type"
    );

    for row in [&stripe, &hubspot] {
        let verdict = verify(&app, &admin, row["id"].as_str().expect("id")).await;
        assert_eq!(verdict["verified"], true, "{store:?}: {verdict}");
        assert_eq!(verdict["verification_status"], "verified");
    }

    let refused_stripe = add(
        &app,
        &admin,
        "stripe",
        serde_json::json!({"secretKey": STRIPE_REFUSED_KEY, "displayName": "Old key"}),
    )
    .await;
    let verdict = verify(&app, &admin, refused_stripe["id"].as_str().expect("id")).await;
    assert_eq!(verdict["verified"], false, "{store:?}: {verdict}");
    assert_eq!(verdict["verification_status"], "failed");
    let error = verdict["verification_error"].as_str().expect("recorded");
    assert!(error.contains("Expired API Key"), "{error}");
    assert!(
        !error.contains(STRIPE_REFUSED_KEY),
        "the key is scrubbed: {error}"
    );

    let refused_hubspot = add(
        &app,
        &admin,
        "hubspot",
        serde_json::json!({"accessToken": HUBSPOT_REFUSED_TOKEN, "displayName": "Old token"}),
    )
    .await;
    let verdict = verify(&app, &admin, refused_hubspot["id"].as_str().expect("id")).await;
    assert_eq!(verdict["verified"], false, "{store:?}: {verdict}");
    assert!(
        verdict["verification_error"]
            .as_str()
            .is_some_and(|error| error.contains("Authentication credentials not found")),
        "{verdict}"
    );

    let rows: serde_json::Value = app.get_json(LIST, &admin).await;
    let status_of = |id: &serde_json::Value| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|row| row["id"] == *id))
            .map(|row| row["verification_status"].clone())
    };
    assert_eq!(status_of(&stripe["id"]), Some("verified".into()));
    assert_eq!(status_of(&hubspot["id"]), Some("verified".into()));
    assert_eq!(status_of(&refused_stripe["id"]), Some("failed".into()));
    assert_eq!(status_of(&refused_hubspot["id"]), Some("failed".into()));

    let stripe_id = stripe["id"].as_str().expect("id");
    let deactivated = app.delete(&format!("{LIST}/{stripe_id}"), &admin).await;
    assert_eq!(deactivated.status(), 200);
    let again = app
        .post_json(
            &format!("{LIST}/{stripe_id}/verify"),
            &admin,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(
        again.status(),
        409,
        "{store:?}: a deactivated credential is not verified"
    );
    let hubspot_id = hubspot["id"].as_str().expect("id");
    let purge = app
        .delete(&format!("{LIST}/{hubspot_id}?purge=true"), &admin)
        .await;
    assert_eq!(error_code(purge).await, "insufficient_role");
    let purged = app
        .delete(&format!("{LIST}/{hubspot_id}?purge=true"), &owner)
        .await;
    assert_eq!(purged.status(), 200);
    let rows: serde_json::Value = app.get_json(LIST, &owner).await;
    assert!(
        !rows.to_string().contains(hubspot_id),
        "{store:?}: purged rows are gone"
    );

    let text = app.database_text().await + &captured_logs() + &rows.to_string();
    for secret in [
        STRIPE_KEY,
        HUBSPOT_TOKEN,
        STRIPE_REFUSED_KEY,
        HUBSPOT_REFUSED_TOKEN,
    ] {
        assert!(!text.contains(secret), "{store:?}: a secret leaked");
    }
}

#[tokio::test]
async fn bad_keys_and_tokens_are_named_without_echoing_them() {
    let app = spawn_app_with(Store::Sqlite, &[]).await;
    let org = app.create_org("Clinic").await;
    let admin = app.token(org.id, org.admin);
    for (kind, body, field) in [
        (
            "stripe",
            serde_json::json!({"secretKey": "pk_test_51Hpublishable9999", "displayName": "P"}),
            "secretKey",
        ),
        (
            "stripe",
            serde_json::json!({"secretKey": "sk_test_short", "displayName": "P"}),
            "secretKey",
        ),
        (
            "stripe",
            serde_json::json!({"secretKey": "sk_test_51H secret 9999", "displayName": "P"}),
            "secretKey",
        ),
        (
            "stripe",
            serde_json::json!({"secretKey": "sk_test_51Habcdefghijkl1234", "displayName": " "}),
            "displayName",
        ),
        (
            "hubspot",
            serde_json::json!({"accessToken": "legacy-api-key-0000-1111", "displayName": "H"}),
            "accessToken",
        ),
        (
            "hubspot",
            serde_json::json!({"accessToken": "", "displayName": "H"}),
            "accessToken",
        ),
    ] {
        let response = app
            .post_json(&format!("{LIST}/{kind}"), &admin, &body)
            .await;
        assert_eq!(response.status(), 422, "{body}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], "invalid_field");
        let message = error["error"]["message"].as_str().expect("message");
        assert!(message.starts_with(field), "{message}");
        for secret in ["51Hpublishable9999", "legacy-api-key", "secret 9999"] {
            assert!(!message.contains(secret), "{message}");
        }
    }
    let unknown_field = app
        .post_json(
            &format!("{LIST}/stripe"),
            &admin,
            &serde_json::json!({"secretKey": "sk_test_51Habcdefghijkl1234", "displayName": "P", "mode": "live"}),
        )
        .await;
    assert_eq!(unknown_field.status(), 400);
    let member = app.token(org.id, org.member);
    let forbidden = app
        .post_json(
            &format!("{LIST}/hubspot"),
            &member,
            &serde_json::json!({"accessToken": HUBSPOT_TOKEN, "displayName": "H"}),
        )
        .await;
    assert_eq!(error_code(forbidden).await, "insufficient_role");
}
