//! "Connect Google Calendar": the start redirect (state, PKCE, binding cookie), a completed connect that stores
//! and verifies the credential, and the state attacks — replay, expiry, forgery, another user, another
//! browser — each answered 400 with nothing stored.

use byoc_api::routes::google_oauth::{OAuthStateKey, SignedState, BINDING_COOKIE};
use byoc_credential_store::OAuthStateId;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{error_code, spawn_app_with, Store, TestApp, TestOrg, STORES};

async fn fake_google() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "ya29.access", "expires_in": 3600, "token_type": "Bearer",
            "refresh_token": "1//connected-refresh", "scope": "https://www.googleapis.com/auth/calendar.readonly"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/users/me/calendarList"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [{"id": "clinic@example.com", "primary": true, "timeZone": "America/New_York"}]
        })))
        .mount(&server)
        .await;
    server
}

async fn app_with_google(google: &MockServer) -> TestApp {
    app_with_google_on(Store::Sqlite, google).await
}

async fn app_with_google_on(store: Store, google: &MockServer) -> TestApp {
    spawn_app_with(
        store,
        &[
            ("GOOGLE_OAUTH_AUTH_URL", format!("{}/auth", google.uri())),
            ("GOOGLE_OAUTH_TOKEN_URL", format!("{}/token", google.uri())),
            (
                "GOOGLE_CALENDAR_API_BASE",
                format!("{}/calendar/v3/", google.uri()),
            ),
            (
                "GOOGLE_OAUTH_CLIENT_ID",
                "platform-client.apps.googleusercontent.com".to_owned(),
            ),
            (
                "GOOGLE_OAUTH_CLIENT_SECRET",
                "platform-client-secret".to_owned(),
            ),
        ],
    )
    .await
}

/// Starts a connect as `user`; returns the consent URL and the binding cookie's value.
async fn start(
    app: &TestApp,
    org: &TestOrg,
    user: byoc_credential_store::UserId,
) -> (url::Url, String) {
    let response = app
        .get("/api/auth/google/start", &app.token(org.id, user))
        .await;
    assert_eq!(response.status(), 302);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("Location")
        .to_owned();
    let prefix = format!("{BINDING_COOKIE}=");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix(&prefix))
        .and_then(|rest| rest.split(';').next())
        .map(str::to_owned)
        .expect("binding cookie");
    (url::Url::parse(&location).expect("consent URL"), cookie)
}

fn query(url: &url::Url, name: &str) -> String {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

async fn callback(
    app: &TestApp,
    state: &str,
    cookie: Option<&str>,
    bearer: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url("/api/auth/google/callback"))
        .query(&[("code", "4/auth-code"), ("state", state)]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("{BINDING_COOKIE}={cookie}"));
    }
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    request.send().await.expect("request sent")
}

async fn google_credentials(app: &TestApp, org: &TestOrg) -> Vec<serde_json::Value> {
    let rows: serde_json::Value = app
        .get(
            "/api/organization/credentials",
            &app.token(org.id, org.member),
        )
        .await
        .json()
        .await
        .expect("json");
    rows.as_array()
        .expect("array")
        .iter()
        .filter(|row| row["credential_type"] == "google_calendar")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_connect_stores_and_verifies_the_credential_once() {
    for store in STORES {
        connect_on(store).await;
    }
}

async fn connect_on(store: Store) {
    let google = fake_google().await;
    let app = app_with_google_on(store, &google).await;
    let org = app.create_org("Clinic").await;

    let response = app
        .get("/api/auth/google/start", &app.token(org.id, org.member))
        .await;
    assert_eq!(
        response.status(),
        403,
        "connecting Google needs the admin role"
    );

    let (consent, cookie) = start(&app, &org, org.admin).await;
    assert!(consent
        .as_str()
        .starts_with(&format!("{}/auth", google.uri())));
    assert_eq!(query(&consent, "code_challenge_method"), "S256");
    assert_eq!(
        query(&consent, "redirect_uri"),
        format!("{}/api/auth/google/callback", app.address)
    );
    let state = query(&consent, "state");

    let response = callback(&app, &state, Some(&cookie), None).await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/dashboard/settings?google=connected")
    );
    let stored = google_credentials(&app, &org).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["verification_status"], "verified", "{stored:?}");

    let exchange = google
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|request| String::from_utf8_lossy(&request.body).contains("authorization_code"))
        .expect("the code was exchanged");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&exchange.body)
        .into_owned()
        .collect();
    let verifier = form
        .iter()
        .find(|(key, _)| key == "code_verifier")
        .map(|(_, value)| value.clone())
        .expect("PKCE verifier sent");
    assert_eq!(
        byoc_providers::Pkce::challenge_for(&secrecy::SecretString::from(verifier)),
        query(&consent, "code_challenge")
    );

    let replay = callback(&app, &state, Some(&cookie), None).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(error_code(replay).await, "invalid_oauth_state");
    assert_eq!(google_credentials(&app, &org).await.len(), 1);
}

#[tokio::test]
async fn forged_expired_foreign_and_unbound_states_are_refused_and_store_nothing() {
    let google = fake_google().await;
    let app = app_with_google(&google).await;
    let org = app.create_org("Clinic").await;
    let (consent, cookie) = start(&app, &org, org.admin).await;
    let state = query(&consent, "state");

    let mut forged = state.clone();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == '0' { '1' } else { '0' });
    let response = callback(&app, &forged, Some(&cookie), None).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "invalid_oauth_state");

    let response = callback(&app, &state, None, None).await;
    assert_eq!(response.status(), 400, "a state from another browser");

    let owner = app.token(org.id, org.owner);
    let response = callback(&app, &state, Some(&cookie), Some(&owner)).await;
    assert_eq!(response.status(), 400, "another user's state");

    let key = OAuthStateKey::new(None, Some(&app.jwt_secret)).expect("key");
    let expired_id = OAuthStateId::new_random();
    let expired = key.sign(&SignedState {
        id: expired_id,
        org_id: org.id,
        user_id: org.admin,
        expires_at: chrono::Utc::now() - chrono::Duration::minutes(1),
    });
    let response = callback(&app, &expired, Some(&expired_id.to_string()), None).await;
    assert_eq!(response.status(), 400, "an expired state");

    let unknown_id = OAuthStateId::new_random();
    let unknown = key.sign(&SignedState {
        id: unknown_id,
        org_id: org.id,
        user_id: org.admin,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
    });
    let response = callback(&app, &unknown, Some(&unknown_id.to_string()), None).await;
    assert_eq!(
        response.status(),
        400,
        "a validly signed state that was never issued"
    );

    assert!(google_credentials(&app, &org).await.is_empty());
    assert!(google
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());

    let response = callback(&app, &state, Some(&cookie), None).await;
    assert_eq!(response.status(), 302, "the genuine state still works once");
}
