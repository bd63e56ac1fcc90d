//! "Connect Google Calendar": the start redirect (state, PKCE, binding cookie), a completed connect that stores
//! and verifies the credential, and the state attacks — replay, expiry, forgery, another user, another
//! browser — each answered 400 with nothing stored. Reconnecting with the organization's own OAuth client
//! when its credential went `failed`: the own client's id at start and secret at the exchange, the failed
//! credential replaced; the platform's client only for an organization without one.

use byoc_api::routes::google_oauth::BINDING_COOKIE;
use byoc_api::usecases::oauth_state::{OAuthStateKey, SignedState};
use byoc_credential_store::{
    CredentialId, OAuthStateId, Tenant, VerificationOutcome, VerificationStatus,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{error_code, spawn_app, spawn_app_with, Store, TestApp, TestOrg, STORES};

/// The OAuth client the platform configures in the environment.
const PLATFORM_CLIENT_ID: &str = "platform-client.apps.googleusercontent.com";
/// A clinic's own OAuth client.
const CLINIC_CLIENT_ID: &str = "clinic-client.apps.googleusercontent.com";
const CLINIC_CLIENT_SECRET: &str = "clinic-client-secret-5d2e";
/// The calendar the clinic's own credential reads (not its primary one).
const CLINIC_CALENDAR: &str = "frontdesk@group.calendar.google.com";

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
            "items": [
                {"id": "clinic@example.com", "primary": true, "timeZone": "America/New_York"},
                {"id": CLINIC_CALENDAR, "timeZone": "America/New_York"}
            ]
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "kind": "calendar#freeBusy", "calendars": {CLINIC_CALENDAR: {"busy": []}}
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
            ("GOOGLE_OAUTH_CLIENT_ID", PLATFORM_CLIENT_ID.to_owned()),
            (
                "GOOGLE_OAUTH_CLIENT_SECRET",
                "platform-client-secret".to_owned(),
            ),
        ],
    )
    .await
}

/// An app that knows Google's endpoints but has no platform OAuth client.
async fn app_without_platform_client(google: &MockServer) -> TestApp {
    spawn_app_with(
        Store::Sqlite,
        &[
            ("GOOGLE_OAUTH_AUTH_URL", format!("{}/auth", google.uri())),
            ("GOOGLE_OAUTH_TOKEN_URL", format!("{}/token", google.uri())),
            (
                "GOOGLE_CALENDAR_API_BASE",
                format!("{}/calendar/v3/", google.uri()),
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

/// Adds a Google Calendar credential with the clinic's own OAuth client and marks it failed, as an
/// availability check does when Google answers `invalid_grant`. Returns its id.
async fn failed_own_client(app: &TestApp, org: &TestOrg) -> String {
    let response = app
        .post_json(
            "/api/organization/credentials/google_calendar",
            &app.token(org.id, org.admin),
            &serde_json::json!({
                "clientId": CLINIC_CLIENT_ID,
                "clientSecret": CLINIC_CLIENT_SECRET,
                "refreshToken": "1//revoked-refresh",
                "calendarId": CLINIC_CALENDAR,
                "displayName": "Front desk calendar"
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let row: serde_json::Value = response.json().await.expect("json");
    let id = row["id"].as_str().expect("id").to_owned();
    app.repository
        .record_verification(
            &Tenant::user(org.id, org.admin),
            id.parse::<CredentialId>().expect("credential id"),
            &VerificationOutcome {
                status: VerificationStatus::Failed,
                error: Some(
                    "Google Calendar: reconnect Google Calendar (invalid_grant: Token has been expired or revoked.)"
                        .to_owned(),
                ),
            },
        )
        .await
        .expect("marked failed");
    id
}

/// The form fields of the code exchanges the fake token endpoint received.
async fn exchanges(google: &MockServer) -> Vec<Vec<(String, String)>> {
    google
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|request| request.url.path() == "/token")
        .map(|request| {
            url::form_urlencoded::parse(&request.body)
                .into_owned()
                .collect::<Vec<_>>()
        })
        .filter(|form| {
            form.iter()
                .any(|(key, value)| key == "grant_type" && value == "authorization_code")
        })
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn a_failed_credential_reconnects_with_the_organizations_own_client() {
    for store in STORES {
        reconnect_on(store).await;
    }
}

async fn reconnect_on(store: Store) {
    let google = fake_google().await;
    let app = app_with_google_on(store, &google).await;
    let org = app.create_org("Clinic").await;
    let failed = failed_own_client(&app, &org).await;

    let (consent, cookie) = start(&app, &org, org.admin).await;
    assert_eq!(
        query(&consent, "client_id"),
        CLINIC_CLIENT_ID,
        "{store:?}: the failed credential's own client, not the platform's"
    );
    let response = callback(&app, &query(&consent, "state"), Some(&cookie), None).await;
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/dashboard/settings?google=connected"),
        "{store:?}"
    );

    let exchanged = exchanges(&google).await;
    assert_eq!(exchanged.len(), 1, "{store:?}");
    assert_eq!(field(&exchanged[0], "client_id"), Some(CLINIC_CLIENT_ID));
    assert_eq!(
        field(&exchanged[0], "client_secret"),
        Some(CLINIC_CLIENT_SECRET),
        "{store:?}: the code is exchanged with the clinic's own secret"
    );
    assert_eq!(
        field(&exchanged[0], "redirect_uri").map(str::to_owned),
        Some(format!("{}/api/auth/google/callback", app.address))
    );

    let rows = google_credentials(&app, &org).await;
    assert_eq!(rows.len(), 2, "{store:?}: {rows:?}");
    let active: Vec<&serde_json::Value> =
        rows.iter().filter(|row| row["is_active"] == true).collect();
    assert_eq!(
        active.len(),
        1,
        "{store:?}: one usable credential: {rows:?}"
    );
    assert_eq!(active[0]["verification_status"], "verified");
    assert_ne!(active[0]["id"], failed.as_str());
    let old = rows
        .iter()
        .find(|row| row["id"] == failed.as_str())
        .expect("the failed credential is still listed");
    assert_eq!(
        old["is_active"], false,
        "{store:?}: the failed credential is replaced"
    );

    // The reconnected credential reads the calendar the failed one was set up for.
    let response = app
        .get(
            "/api/calendar/availability?date=2026-12-01&duration=60&timeZone=America/New_York",
            &app.token(org.id, org.member),
        )
        .await;
    assert_eq!(response.status(), 200, "{store:?}");
    let free_busy = google
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|request| request.url.path() == "/calendar/v3/freeBusy")
        .expect("free/busy asked");
    let body: serde_json::Value = serde_json::from_slice(&free_busy.body).expect("json");
    assert_eq!(body["items"][0]["id"], CLINIC_CALENDAR, "{store:?}");

    let audit: serde_json::Value = app
        .get("/api/organization/audit", &app.token(org.id, org.member))
        .await
        .json()
        .await
        .expect("audit");
    let entries = audit.as_array().expect("array");
    let reconnect_reads: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|entry| {
            entry["action"] == "read" && entry["detail"]["purpose"] == "oauth:reconnect"
        })
        .collect();
    assert_eq!(
        reconnect_reads.len(),
        2,
        "{store:?}: start and callback each read the client: {audit}"
    );
    assert!(reconnect_reads
        .iter()
        .all(|entry| entry["credential_id"] == failed.as_str()
            && entry["detail"]["verification_status"] == "failed"
            && entry["actor"] == format!("user:{}", org.admin).as_str()));
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "deactivated"
                && entry["credential_id"] == failed.as_str()),
        "{store:?}: {audit}"
    );

    // An organization without a client of its own connects with the platform's.
    let other = app.create_org("Other clinic").await;
    let (consent, _) = start(&app, &other, other.admin).await;
    assert_eq!(
        query(&consent, "client_id"),
        PLATFORM_CLIENT_ID,
        "{store:?}"
    );
}

#[tokio::test]
async fn the_own_client_needs_no_platform_client_and_the_platform_client_needs_configuring() {
    let google = fake_google().await;
    let app = app_without_platform_client(&google).await;
    let org = app.create_org("Clinic").await;
    let failed = failed_own_client(&app, &org).await;
    let (consent, cookie) = start(&app, &org, org.admin).await;
    assert_eq!(query(&consent, "client_id"), CLINIC_CLIENT_ID);

    // Revoked between start and callback: the exchange does not fall back to another client.
    let response = app
        .delete(
            &format!("/api/organization/credentials/{failed}"),
            &app.token(org.id, org.admin),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = callback(&app, &query(&consent, "state"), Some(&cookie), None).await;
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/dashboard/settings?google=error&reason=credential_inactive")
    );
    assert!(exchanges(&google).await.is_empty(), "no code exchanged");
    assert_eq!(
        google_credentials(&app, &org).await.len(),
        1,
        "nothing stored"
    );

    // With the only own credential revoked and no platform client: 409.
    let response = app
        .get("/api/auth/google/start", &app.token(org.id, org.admin))
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "credential_not_configured");
}

#[tokio::test]
async fn members_cannot_read_the_oauth_client() {
    let app = spawn_app().await;
    let org = app.create_org("Clinic").await;
    failed_own_client(&app, &org).await;
    let response = app
        .get("/api/auth/google/start", &app.token(org.id, org.member))
        .await;
    assert_eq!(response.status(), 403);
    let audit: serde_json::Value = app
        .get("/api/organization/audit", &app.token(org.id, org.member))
        .await
        .json()
        .await
        .expect("audit");
    assert!(
        audit
            .as_array()
            .expect("array")
            .iter()
            .all(|entry| entry["action"] != "read"),
        "a refused start reads nothing: {audit}"
    );
}
