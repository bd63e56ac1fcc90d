//! Google: a local token-endpoint fake (success, invalid_grant, rotated refresh token, no refresh token),
//! the access-token cache, and calendar calls against wiremock (behaviour) and Prism (request shapes).

use std::time::Duration;

use byoc_credential_types::{CredentialPayload, GoogleCalendarCredential};
use byoc_providers::{
    build_http_client, AvailabilityRequest, BookingParts, BookingRequest, CalendarAvailability,
    ConnectedTokens, EventId, GoogleCalendarClient, Pkce, ProviderConfig, ProviderError,
    RefusalReason, VerificationDetails, Verifier, CONNECT_SCOPES,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use wiremock::matchers::{bearer_token, body_partial_json, body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::prism::{testdata, PrismServer};
use crate::support::{assert_no_secret, config_for};

const CLIENT_ID: &str = "1234-abc.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-client-secret-value";
const REFRESH_TOKEN: &str = "1//refresh-token-value";
const ACCESS_TOKEN: &str = "ya29.access-token-value";

fn client(config: &ProviderConfig) -> GoogleCalendarClient {
    GoogleCalendarClient::new(
        config,
        build_http_client(config.timeouts).expect("http client"),
    )
}

fn credential() -> GoogleCalendarCredential {
    GoogleCalendarCredential::new(
        CLIENT_ID,
        SecretString::from(CLIENT_SECRET),
        SecretString::from(REFRESH_TOKEN),
        None,
        None,
    )
    .expect("valid credential")
}

fn token_ok(refresh_token: Option<&str>) -> ResponseTemplate {
    let mut body = serde_json::json!({
        "access_token": ACCESS_TOKEN,
        "expires_in": 3599,
        "scope": "https://www.googleapis.com/auth/calendar.readonly",
        "token_type": "Bearer",
    });
    if let Some(token) = refresh_token {
        body["refresh_token"] = serde_json::json!(token);
    }
    ResponseTemplate::new(200).set_body_json(body)
}

async fn mount_refresh(server: &MockServer, response: ResponseTemplate, times: u64) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains(
            "refresh_token=1%2F%2Frefresh-token-value",
        ))
        .and(body_string_contains(
            "client_id=1234-abc.apps.googleusercontent.com",
        ))
        .respond_with(response)
        .expect(times)
        .mount(server)
        .await;
}

async fn mount_calendar_list(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/calendar/v3/users/me/calendarList"))
        .and(bearer_token(ACCESS_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "items": [
                {"id": "clinic@example.com", "primary": true, "timeZone": "America/New_York"},
                {"id": "holidays@group.v.calendar.google.com", "timeZone": "UTC"}
            ]
        })))
        .mount(server)
        .await;
}

async fn mount_free_busy(server: &MockServer, busy: serde_json::Value) {
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .and(bearer_token(ACCESS_TOKEN))
        .and(body_partial_json(serde_json::json!({
            "timeZone": "America/New_York",
            "items": [{"id": "primary"}],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "kind": "calendar#freeBusy",
            "calendars": {"primary": {"busy": busy}}
        })))
        .mount(server)
        .await;
}

/// Exchanges the authorization code "4/auth-code" with the test client and `pkce`'s verifier.
async fn exchange_auth_code(
    google: &GoogleCalendarClient,
    redirect: &Url,
    pkce: &Pkce,
) -> Result<ConnectedTokens, ProviderError> {
    google
        .exchange_code(
            CLIENT_ID,
            &SecretString::from(CLIENT_SECRET),
            "4/auth-code",
            redirect,
            pkce.verifier(),
        )
        .await
}

#[tokio::test]
async fn verify_refreshes_then_lists_calendars() {
    let server = MockServer::start().await;
    mount_refresh(&server, token_ok(None), 1).await;
    mount_calendar_list(&server).await;
    let outcome = client(&config_for(&server.uri()))
        .verify(credential().to_json_bytes().as_bytes())
        .await
        .expect("verified");
    assert!(
        outcome.updated_payload.is_none(),
        "no new refresh token: keep the stored one"
    );
    assert_eq!(
        outcome.details,
        VerificationDetails::GoogleCalendar {
            calendar_id: "primary".into(),
            time_zone: Some("America/New_York".into()),
            calendars: 2,
        }
    );
}

#[tokio::test]
async fn invalid_grant_is_a_typed_reconnect_failure_without_secrets() {
    let server = MockServer::start().await;
    mount_refresh(
        &server,
        ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked."
        })),
        1,
    )
    .await;
    let google = client(&config_for(&server.uri()));
    let error = google
        .verify(credential().to_json_bytes().as_bytes())
        .await
        .expect_err("revoked");
    let refusal = error.refusal().expect("refusal");
    assert_eq!(refusal.reason, RefusalReason::ReconnectGoogleCalendar);
    assert_eq!(refusal.code, "invalid_grant");
    assert_eq!(refusal.message, "Token has been expired or revoked.");
    assert!(error.to_string().contains("reconnect Google Calendar"));
    assert!(error.is_credential_failure());
    assert_no_secret(&error, &[CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN]);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_handed_back_for_storage() {
    let server = MockServer::start().await;
    mount_refresh(&server, token_ok(Some("1//rotated-refresh-token")), 1).await;
    mount_calendar_list(&server).await;
    let outcome = client(&config_for(&server.uri()))
        .verify(credential().to_json_bytes().as_bytes())
        .await
        .expect("verified");
    let updated = outcome.updated_payload.expect("new payload to store");
    let stored =
        GoogleCalendarCredential::from_json_bytes(updated.as_bytes()).expect("valid payload");
    assert_eq!(
        stored.refresh_token.expose_secret(),
        "1//rotated-refresh-token"
    );
    assert_eq!(stored.client_secret.expose_secret(), CLIENT_SECRET);
    assert_eq!(stored.client_id, CLIENT_ID);
}

#[tokio::test]
async fn code_exchange_sends_the_pkce_verifier_and_requires_a_refresh_token() {
    let server = MockServer::start().await;
    let pkce = Pkce::generate().expect("randomness");
    let redirect = Url::parse("https://byoc.example.com/api/auth/google/callback").expect("valid");
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code=4%2Fauth-code"))
        .and(body_string_contains(
            format!("code_verifier={}", pkce.verifier().expose_secret()).as_str(),
        ))
        .and(body_string_contains(
            "redirect_uri=https%3A%2F%2Fbyoc.example.com%2Fapi%2Fauth%2Fgoogle%2Fcallback",
        ))
        .respond_with(token_ok(Some(REFRESH_TOKEN)))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .respond_with(token_ok(None))
        .mount(&server)
        .await;
    mount_calendar_list(&server).await;
    let google = client(&config_for(&server.uri()));

    let tokens = exchange_auth_code(&google, &redirect, &pkce)
        .await
        .expect("exchanged");
    assert_eq!(tokens.refresh_token.expose_secret(), REFRESH_TOKEN);
    assert_no_secret(&format_args!("{tokens:?}"), &[REFRESH_TOKEN]);

    // The exchange primed the cache: verifying the new credential needs no refresh (none is mounted).
    let connected = GoogleCalendarCredential::new(
        CLIENT_ID,
        SecretString::from(CLIENT_SECRET),
        tokens.refresh_token,
        None,
        None,
    )
    .expect("valid");
    let request =
        AvailabilityRequest::parse("2026-06-10", "60", Some("America/New_York")).expect("valid");
    mount_free_busy(&server, serde_json::json!([])).await;
    let availability = google
        .free_slots(&connected, &request)
        .await
        .expect("slots from cached token");
    assert_eq!(availability.slots.len(), 8);

    let error = exchange_auth_code(&google, &redirect, &pkce)
        .await
        .expect_err("second exchange issues no refresh token");
    assert_eq!(error.provider_code(), Some("no_refresh_token"));
    assert_eq!(
        error.refusal().map(|r| r.reason),
        Some(RefusalReason::ReconnectGoogleCalendar)
    );
}

#[tokio::test]
async fn access_tokens_are_cached_and_refreshed_once_for_concurrent_callers() {
    let server = MockServer::start().await;
    mount_refresh(
        &server,
        token_ok(None).set_delay(Duration::from_millis(200)),
        1,
    )
    .await;
    mount_free_busy(
        &server,
        serde_json::json!([{"start": "2026-06-10T14:00:00Z", "end": "2026-06-10T15:00:00Z"}]),
    )
    .await;
    let google = client(&config_for(&server.uri()));
    let credential = credential();
    let request =
        AvailabilityRequest::parse("2026-06-10", "60", Some("America/New_York")).expect("valid");
    let calls = (0..5).map(|_| google.free_slots(&credential, &request));
    for result in futures::future::join_all(calls).await {
        let availability = result.expect("slots");
        assert_eq!(availability.slots.len(), 7);
        assert_eq!(
            availability.slots[1].start.to_rfc3339(),
            "2026-06-10T11:00:00-04:00"
        );
        assert!(availability.updated_credential.is_none());
    }
    google
        .free_slots(&credential, &request)
        .await
        .expect("cached token again");
}

#[tokio::test]
async fn a_401_from_the_calendar_drops_the_cached_token_and_retries_once() {
    let server = MockServer::start().await;
    mount_refresh(&server, token_ok(None), 2).await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED",
                      "errors": [{"reason": "authError", "message": "Invalid Credentials"}]}
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    mount_free_busy(&server, serde_json::json!([])).await;
    let request =
        AvailabilityRequest::parse("2026-06-10", "60", Some("America/New_York")).expect("valid");
    let availability = client(&config_for(&server.uri()))
        .free_slots(&credential(), &request)
        .await
        .expect("second try succeeds");
    assert_eq!(availability.slots.len(), 8);
}

#[tokio::test]
async fn availability_defaults_to_the_calendars_time_zone_and_handles_dst() {
    let server = MockServer::start().await;
    mount_refresh(&server, token_ok(None), 1).await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/calendars/primary"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "clinic@example.com", "timeZone": "America/New_York"
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .and(body_partial_json(serde_json::json!({
            "timeMin": "2026-03-08T13:00:00+00:00",
            "timeMax": "2026-03-08T21:00:00+00:00",
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "calendars": {"primary": {"busy": [
                {"start": "2026-03-08T09:30:00-04:00", "end": "2026-03-08T16:00:00-04:00"}
            ]}}
        })))
        .mount(&server)
        .await;
    let request = AvailabilityRequest::parse("2026-03-08", "30", None).expect("valid");
    let availability = client(&config_for(&server.uri()))
        .free_slots(&credential(), &request)
        .await
        .expect("slots");
    assert_eq!(availability.time_zone, chrono_tz::America::New_York);
    let rendered: Vec<String> = availability
        .slots
        .iter()
        .map(|slot| slot.start.to_rfc3339())
        .collect();
    assert_eq!(
        rendered,
        [
            "2026-03-08T09:00:00-04:00",
            "2026-03-08T16:00:00-04:00",
            "2026-03-08T16:30:00-04:00"
        ]
    );
}

#[tokio::test]
async fn a_fully_busy_day_has_no_slots() {
    let server = MockServer::start().await;
    mount_refresh(&server, token_ok(None), 1).await;
    mount_free_busy(
        &server,
        serde_json::json!([{"start": "2026-11-01T00:00:00-04:00", "end": "2026-11-02T00:00:00-05:00"}]),
    )
    .await;
    let request =
        AvailabilityRequest::parse("2026-11-01", "15", Some("America/New_York")).expect("valid");
    let availability = client(&config_for(&server.uri()))
        .free_slots(&credential(), &request)
        .await
        .expect("answer");
    assert!(availability.slots.is_empty());
}

#[tokio::test]
async fn calendar_requests_conform_to_googles_discovery_spec() {
    let prism = PrismServer::start(testdata("google/google_calendar_v3_swagger2_json.json")).await;
    let tokens = MockServer::start().await;
    mount_refresh(&tokens, token_ok(None), 1).await;
    let mut config = config_for(&tokens.uri());
    // Prism serves the Swagger 2 paths at its root (it ignores basePath).
    config.google_calendar_api_base = Url::parse(&format!("{}/", prism.base_url)).expect("valid");
    let google = client(&config);

    let (details, updated) = google
        .verify_credential(&credential())
        .await
        .unwrap_or_else(|error| panic!("calendarList rejected: {error}\n{}", prism.log()));
    assert!(matches!(
        details,
        VerificationDetails::GoogleCalendar { .. }
    ));
    assert!(updated.is_none());

    // With a zone, freeBusy passes validation (a malformed body would get 422, a refusal); the spec's
    // generated answer names other calendars, which the client reports as unexpected. Without one, the
    // calendar resource is fetched for its time zone; the generated "string" is no IANA zone.
    for time_zone in [Some("America/New_York"), None] {
        let request = AvailabilityRequest::parse("2026-03-08", "30", time_zone).expect("valid");
        let error = google
            .free_slots(&credential(), &request)
            .await
            .expect_err("generated answer");
        assert!(
            matches!(error, ProviderError::UnexpectedResponse { .. }),
            "{time_zone:?}: {error}\n{}",
            prism.log()
        );
    }

    let malformed = reqwest::Client::new()
        .post(format!("{}/freeBusy", prism.base_url))
        .bearer_auth("token")
        .json(&serde_json::json!({"items": "primary"}))
        .send()
        .await
        .expect("prism answers");
    assert_eq!(malformed.status().as_u16(), 422);
}

#[tokio::test]
async fn booking_requests_conform_to_googles_discovery_spec() {
    let prism = PrismServer::start(testdata("google/google_calendar_v3_swagger2_json.json")).await;
    let http = reqwest::Client::new();
    let request = BookingRequest::new(BookingParts {
        start: chrono::DateTime::parse_from_rfc3339("2026-11-01T01:30:00-04:00").expect("valid"),
        duration_minutes: 60,
        summary: "Check-up".into(),
        attendee_name: "Ada Lovelace".into(),
        attendee_phone: None,
        attendee_email: Some("ada@example.com".into()),
        time_zone: Some("America/New_York".into()),
    })
    .expect("valid");
    let event_id = EventId::for_booking(b"org", "key-1");
    let event =
        GoogleCalendarClient::event_resource(&request, &event_id, chrono_tz::America::New_York);
    assert_eq!(event["end"]["dateTime"], "2026-11-01T01:30:00-05:00");
    // events.insert with the chosen id, as the client sends it: Prism validates the body and the query.
    let inserted = http
        .post(format!("{}/calendars/primary/events", prism.base_url))
        .query(&[("sendUpdates", "none")])
        .bearer_auth("token")
        .json(&event)
        .send()
        .await
        .expect("prism answers");
    assert!(
        inserted.status().is_success(),
        "events.insert rejected ({}): {}",
        inserted.status(),
        prism.log()
    );
    // events.get and events.delete of that id, as the client asks them.
    let path = format!("{}/calendars/primary/events/{event_id}", prism.base_url);
    let read = http
        .get(&path)
        .bearer_auth("token")
        .send()
        .await
        .expect("prism answers");
    assert!(read.status().is_success(), "events.get: {}", prism.log());
    let deleted = http
        .delete(&path)
        .query(&[("sendUpdates", "none")])
        .bearer_auth("token")
        .send()
        .await
        .expect("prism answers");
    assert!(
        deleted.status().is_success(),
        "events.delete: {}",
        prism.log()
    );
    // A body the spec refuses is refused, so the checks above mean something.
    let malformed = http
        .post(format!("{}/calendars/primary/events", prism.base_url))
        .bearer_auth("token")
        .json(&serde_json::json!({"start": "tomorrow"}))
        .send()
        .await
        .expect("prism answers");
    assert_eq!(malformed.status().as_u16(), 422, "{}", prism.log());
}

/// Every Calendar API method the client calls accepts one of the scopes "Connect Google Calendar" asks for, as
/// Google's discovery document states them, and every scope asked is one the document declares.
#[test]
fn the_connect_scopes_allow_every_call_the_client_makes() {
    let text = std::fs::read_to_string(testdata("google/google_calendar_v3_swagger2_json.json"))
        .expect("the Calendar API description");
    let spec: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let declared = &spec["securityDefinitions"]["Oauth2c"]["scopes"];
    for scope in CONNECT_SCOPES {
        assert!(
            declared.get(scope).is_some(),
            "{scope} is not a Calendar API scope"
        );
    }
    let called = [
        "calendar.calendarList.list",
        "calendar.calendars.get",
        "calendar.freebusy.query",
        "calendar.events.insert",
        "calendar.events.get",
        "calendar.events.delete",
    ];
    let operations: Vec<&serde_json::Value> = spec["paths"]
        .as_object()
        .expect("paths")
        .values()
        .filter_map(|item| item.as_object())
        .flat_map(|item| item.values())
        .collect();
    for operation_id in called {
        let operation = operations
            .iter()
            .find(|operation| operation["operationId"] == operation_id)
            .unwrap_or_else(|| panic!("{operation_id} is in the document"));
        let accepted: Vec<&str> = operation["security"]
            .as_array()
            .expect("security")
            .iter()
            .flat_map(|requirement| requirement["Oauth2c"].as_array().into_iter().flatten())
            .filter_map(|scope| scope.as_str())
            .collect();
        assert!(
            CONNECT_SCOPES.iter().any(|scope| accepted.contains(scope)),
            "{operation_id} accepts none of the connect scopes: {accepted:?}"
        );
    }
}
