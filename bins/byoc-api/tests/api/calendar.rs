//! `GET /api/calendar/availability`: free slots from the organization's own Google credential; field errors;
//! `invalid_grant` marks the credential failed ("reconnect Google Calendar") and answers 424.

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{error_code, spawn_app_with, Store, TestApp, TestOrg};

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
    spawn_app_with(
        Store::Sqlite,
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
