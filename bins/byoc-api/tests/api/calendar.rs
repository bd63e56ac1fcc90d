//! `GET /api/calendar/availability`: free slots from the organization's own Google credential; field errors;
//! `invalid_grant` marks the credential failed ("reconnect Google Calendar") and answers 424; a refresh token
//! Google rotates during a check is stored (same credential, audited) and used by the next refresh.

use wiremock::matchers::{method, path};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{captured_logs, error_code, spawn_app_with, Store, TestApp, TestOrg, STORES};

async fn fake_google() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "ya29.access", "expires_in": 3600, "token_type": "Bearer"
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
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "kind": "calendar#freeBusy",
            "calendars": {"primary": {"busy": [
                {"start": "2026-12-01T15:00:00Z", "end": "2026-12-01T16:00:00Z"}
            ]}}
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
            ("GOOGLE_OAUTH_TOKEN_URL", format!("{}/token", google.uri())),
            (
                "GOOGLE_CALENDAR_API_BASE",
                format!("{}/calendar/v3/", google.uri()),
            ),
        ],
    )
    .await
}

async fn verified_google(app: &TestApp, org: &TestOrg) -> String {
    let token = app.token(org.id, org.admin);
    let response = app
        .post_json(
            "/api/organization/credentials/google_calendar",
            &token,
            &serde_json::json!({
                "clientId": "clinic-client.apps.googleusercontent.com",
                "clientSecret": "clinic-client-secret",
                "refreshToken": "1//clinic-refresh",
                "displayName": "Clinic calendar"
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let row: serde_json::Value = response.json().await.expect("json");
    let id = row["id"].as_str().expect("id").to_owned();
    let response = app
        .post_json(
            &format!("/api/organization/credentials/{id}/verify"),
            &token,
            &serde_json::json!({}),
        )
        .await;
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["verified"], true, "{body}");
    id
}

const QUERY: &str =
    "/api/calendar/availability?date=2026-12-01&duration=60&timeZone=America/New_York";

#[tokio::test]
async fn free_slots_come_from_the_organizations_calendar() {
    let google = fake_google().await;
    let app = app_with_google(&google).await;
    let org = app.create_org("Clinic").await;
    let member = app.token(org.id, org.member);

    let response = app.get(QUERY, &member).await;
    assert_eq!(error_code(response).await, "credential_not_configured");

    verified_google(&app, &org).await;
    let response = app.get(QUERY, &member).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    let slots = body["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 7, "09:00-17:00 minus the busy hour: {body}");
    assert_eq!(slots[0]["start"], "2026-12-01T14:00:00Z");
    assert!(slots
        .iter()
        .all(|slot| slot["start"] != "2026-12-01T15:00:00Z"));

    for (query, field) in [
        ("date=12/01/2026&duration=60", "date"),
        ("date=2026-12-01&duration=2", "duration"),
        (
            "date=2026-12-01&duration=60&timeZone=Mars/Olympus",
            "timeZone",
        ),
    ] {
        let response = app
            .get(&format!("/api/calendar/availability?{query}"), &member)
            .await;
        assert_eq!(response.status(), 422, "{query}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with(field)),
            "{error}"
        );
    }
}

#[tokio::test]
async fn invalid_grant_marks_the_credential_failed_and_answers_424() {
    let google = fake_google().await;
    let app = app_with_google(&google).await;
    let org = app.create_org("Clinic").await;
    let id = verified_google(&app, &org).await;
    google.reset().await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}
        })))
        .mount(&google)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant", "error_description": "Token has been expired or revoked."
        })))
        .mount(&google)
        .await;

    let member = app.token(org.id, org.member);
    let response = app.get(QUERY, &member).await;
    assert_eq!(response.status(), 424);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("invalid_grant")),
        "{body}"
    );
    let rows: serde_json::Value = app
        .get("/api/organization/credentials", &member)
        .await
        .json()
        .await
        .expect("json");
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["id"] == id.as_str()))
        .expect("listed");
    assert_eq!(row["verification_status"], "failed");
    assert!(
        row["verification_error"]
            .as_str()
            .is_some_and(|error| error.contains("reconnect Google Calendar")),
        "{row}"
    );
    let response = app.get(QUERY, &member).await;
    assert_eq!(error_code(response).await, "credential_not_configured");
}

/// Matches a form-encoded request whose field `name` is `value`.
struct FormField(&'static str, &'static str);

impl Match for FormField {
    fn matches(&self, request: &Request) -> bool {
        url::form_urlencoded::parse(&request.body)
            .any(|(key, value)| key == self.0 && value == self.1)
    }
}

/// The `refresh_token` of every refresh the fake token endpoint received, in order.
async fn refreshes(google: &MockServer) -> Vec<String> {
    google
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|request| request.url.path() == "/token")
        .filter_map(|request| {
            url::form_urlencoded::parse(&request.body)
                .find(|(key, _)| key == "refresh_token")
                .map(|(_, value)| value.into_owned())
        })
        .collect()
}

const ORIGINAL_REFRESH: &str = "1//clinic-refresh";
const ROTATED_REFRESH: &str = "1//rotated-refresh-b7c1";

#[tokio::test]
async fn a_refresh_token_rotated_by_google_is_stored_and_used_next() {
    for store in STORES {
        rotation_on(store).await;
    }
}

async fn rotation_on(store: Store) {
    // Access tokens live 30 s, less than the refresh margin, so every call refreshes. The verification's
    // refresh is plain, the first check's rotates the token, and Google then refuses the original token.
    let google = MockServer::start().await;
    for (answer, times) in [
        (
            serde_json::json!({"access_token": "ya29.verify", "expires_in": 30, "token_type": "Bearer"}),
            Some(1),
        ),
        (
            serde_json::json!({
                "access_token": "ya29.first", "expires_in": 30, "token_type": "Bearer",
                "refresh_token": ROTATED_REFRESH
            }),
            Some(1),
        ),
        (
            serde_json::json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
            None,
        ),
    ] {
        let status = if answer.get("error").is_some() {
            400
        } else {
            200
        };
        let mock = Mock::given(method("POST"))
            .and(path("/token"))
            .and(FormField("refresh_token", ORIGINAL_REFRESH))
            .respond_with(ResponseTemplate::new(status).set_body_json(answer));
        match times {
            Some(times) => mock.up_to_n_times(times).mount(&google).await,
            None => mock.mount(&google).await,
        }
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(FormField("refresh_token", ROTATED_REFRESH))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "ya29.second", "expires_in": 30, "token_type": "Bearer"
        })))
        .mount(&google)
        .await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/users/me/calendarList"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [{"id": "clinic@example.com", "primary": true, "timeZone": "America/New_York"}]
        })))
        .mount(&google)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "kind": "calendar#freeBusy", "calendars": {"primary": {"busy": []}}
        })))
        .mount(&google)
        .await;
    let app = app_with_google_on(store, &google).await;
    let org = app.create_org("Clinic").await;
    let id = verified_google(&app, &org).await;

    let member = app.token(org.id, org.member);
    for check in 1..=3 {
        let response = app.get(QUERY, &member).await;
        assert_eq!(response.status(), 200, "{store:?}: check {check}");
    }
    assert_eq!(
        refreshes(&google).await,
        [
            ORIGINAL_REFRESH,
            ORIGINAL_REFRESH,
            ROTATED_REFRESH,
            ROTATED_REFRESH
        ],
        "{store:?}: verification, the check that rotated, then two checks with the rotated token"
    );

    let rows: serde_json::Value = app
        .get("/api/organization/credentials", &member)
        .await
        .json()
        .await
        .expect("json");
    let google_rows: Vec<&serde_json::Value> = rows
        .as_array()
        .expect("array")
        .iter()
        .filter(|row| row["credential_type"] == "google_calendar")
        .collect();
    assert_eq!(
        google_rows.len(),
        1,
        "{store:?}: the same credential, replaced in place"
    );
    assert_eq!(google_rows[0]["id"], id.as_str());
    assert_eq!(google_rows[0]["is_active"], true);
    assert_eq!(google_rows[0]["verification_status"], "verified");

    let audit: serde_json::Value = app
        .get("/api/organization/audit", &member)
        .await
        .json()
        .await
        .expect("audit");
    let updates: Vec<&serde_json::Value> = audit
        .as_array()
        .expect("array")
        .iter()
        .filter(|entry| entry["action"] == "updated" && entry["credential_id"] == id.as_str())
        .collect();
    assert_eq!(
        updates.len(),
        1,
        "{store:?}: one rotation, one event: {audit}"
    );
    assert_eq!(
        updates[0]["detail"]["reason"],
        "refresh token rotated by Google"
    );
    assert_eq!(updates[0]["detail"]["purpose"], "calendar:availability");
    assert_eq!(
        updates[0]["actor"],
        format!("user:{}", org.member),
        "{store:?}: the member whose check received the token"
    );

    assert!(!app.database_text().await.contains(ROTATED_REFRESH));
    assert!(!captured_logs().contains(ROTATED_REFRESH));
}
