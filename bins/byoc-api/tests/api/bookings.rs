//! `POST /api/calendar/bookings` and `DELETE /api/calendar/bookings/{eventId}` against a fake Google Calendar
//! that keeps the events it is given (free/busy reports them, a second insert of one id is 409 `duplicate`):
//! a booking checks free/busy and inserts once, a retry answers the same body, two concurrent bookings of one
//! slot answer 201 and 409, a booking across the New York clock changes lasts its duration, cancelling, a
//! read-only connection, and Google's refusals mapped as availability maps them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{error_code, spawn_app_with, Store, TestApp, TestOrg, STORES};

const BOOKINGS: &str = "/api/calendar/bookings";
/// An appointment already on the calendar (busy in free/busy).
const EXISTING: (&str, &str) = ("2026-12-01T15:00:00Z", "2026-12-01T16:00:00Z");
/// The calendar's own time zone.
const CALENDAR_ZONE: &str = "America/New_York";

/// The fake calendar's events by id (each the resource as inserted, with `status` and `htmlLink`).
#[derive(Clone, Default)]
struct Events(Arc<Mutex<HashMap<String, Value>>>);

impl Events {
    fn all(&self) -> Vec<Value> {
        self.0.lock().expect("lock").values().cloned().collect()
    }
}

fn instant(value: &Value) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(value.as_str()?).ok()
}

/// `POST freeBusy`: the existing appointment and every event not cancelled (unless `blind`, a calendar whose
/// free/busy has not caught up with its inserts yet), within the asked window.
struct FreeBusy {
    events: Events,
    blind: bool,
    delay: Duration,
}

impl Respond for FreeBusy {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let query: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let (Some(min), Some(max)) = (instant(&query["timeMin"]), instant(&query["timeMax"]))
        else {
            return ResponseTemplate::new(400);
        };
        let mut busy = vec![json!({"start": EXISTING.0, "end": EXISTING.1})];
        if !self.blind {
            for event in self.events.all() {
                if event["status"] != "cancelled" {
                    busy.push(json!({"start": event["start"]["dateTime"], "end": event["end"]["dateTime"]}));
                }
            }
        }
        let busy: Vec<Value> = busy
            .into_iter()
            .filter(|block| {
                instant(&block["start"]).is_some_and(|start| start < max)
                    && instant(&block["end"]).is_some_and(|end| end > min)
            })
            .collect();
        ResponseTemplate::new(200)
            .set_delay(self.delay)
            .set_body_json(json!({
                "kind": "calendar#freeBusy", "calendars": {"primary": {"busy": busy}}
            }))
    }
}

/// `POST calendars/primary/events`: stores the event, or 409 `duplicate` for an id it has.
struct Insert(Events);

impl Respond for Insert {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut event: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        let mut events = self.0 .0.lock().expect("lock");
        if events.contains_key(&id) {
            return ResponseTemplate::new(409).set_body_json(json!({"error": {
                "code": 409, "message": "The requested identifier already exists.",
                "errors": [{"domain": "global", "reason": "duplicate", "message": "The requested identifier already exists."}]
            }}));
        }
        event["status"] = json!("confirmed");
        event["htmlLink"] = json!(format!("https://calendar.google.com/event?eid={id}"));
        events.insert(id, event.clone());
        ResponseTemplate::new(200).set_body_json(event)
    }
}

/// `GET` and `DELETE calendars/primary/events/{id}`.
struct EventById(Events);

impl Respond for EventById {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default();
        let mut events = self.0 .0.lock().expect("lock");
        let Some(event) = events.get_mut(id) else {
            return ResponseTemplate::new(404).set_body_json(json!({"error": {
                "code": 404, "message": "Not Found", "errors": [{"reason": "notFound"}]
            }}));
        };
        if request.method.as_str() == "GET" {
            return ResponseTemplate::new(200).set_body_json(event.clone());
        }
        if event["status"] == "cancelled" {
            return ResponseTemplate::new(410).set_body_json(json!({"error": {
                "code": 410, "message": "Resource has been deleted", "errors": [{"reason": "deleted"}]
            }}));
        }
        event["status"] = json!("cancelled");
        ResponseTemplate::new(204)
    }
}

/// A fake Google: tokens, calendar list, the calendar's zone, and the stateful calendar above.
async fn fake_google(blind: bool) -> (MockServer, Events) {
    fake_google_answering_free_busy_after(blind, Duration::ZERO).await
}

/// [`fake_google`] whose free/busy answers take `delay` (so that concurrent bookings overlap).
async fn fake_google_answering_free_busy_after(
    blind: bool,
    delay: Duration,
) -> (MockServer, Events) {
    let server = MockServer::start().await;
    let events = Events::default();
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.access", "expires_in": 3600, "token_type": "Bearer",
            "refresh_token": "1//connected-refresh",
            "scope": "https://www.googleapis.com/auth/calendar.readonly"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/users/me/calendarList"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [{"id": "clinic@example.com", "primary": true, "timeZone": CALENDAR_ZONE}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/calendar/v3/calendars/primary"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "primary", "timeZone": CALENDAR_ZONE})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(FreeBusy {
            events: events.clone(),
            blind,
            delay,
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/calendars/primary/events"))
        .respond_with(Insert(events.clone()))
        .mount(&server)
        .await;
    Mock::given(path_regex(r"^/calendar/v3/calendars/primary/events/[^/]+$"))
        .respond_with(EventById(events.clone()))
        .mount(&server)
        .await;
    (server, events)
}

async fn app_with(google: &MockServer) -> TestApp {
    app_on(Store::Sqlite, google).await
}

async fn app_on(store: Store, google: &MockServer) -> TestApp {
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
            ("GOOGLE_OAUTH_CLIENT_SECRET", "platform-secret".to_owned()),
        ],
    )
    .await
}

/// Adds and verifies a Google credential with a refresh token (its scopes unknown); answers its id.
async fn verified_google(app: &TestApp, org: &TestOrg) -> String {
    let token = app.token(org.id, org.admin);
    let response = app
        .post_json(
            "/api/organization/credentials/google_calendar",
            &token,
            &json!({
                "clientId": "clinic-client.apps.googleusercontent.com",
                "clientSecret": "clinic-client-secret",
                "refreshToken": "1//clinic-refresh",
                "displayName": "Clinic calendar"
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.expect("row")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let verdict: Value = app
        .post_json(
            &format!("/api/organization/credentials/{id}/verify"),
            &token,
            &json!({}),
        )
        .await
        .json()
        .await
        .expect("verdict");
    assert_eq!(verdict["verified"], true, "{verdict}");
    id
}

async fn book(app: &TestApp, token: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(BOOKINGS))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("request sent")
}

fn appointment(start: &str, minutes: u32) -> Value {
    json!({
        "start": start, "durationMinutes": minutes, "summary": "Check-up",
        "attendeeName": "Ada Lovelace", "attendeePhone": "+14155550199",
        "attendeeEmail": "ada@example.com", "timeZone": CALENDAR_ZONE
    })
}

/// The bodies of every request the fake received at `route` with `verb`.
async fn bodies(google: &MockServer, verb: &str, route: &str) -> Vec<Value> {
    google
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|request| request.method.as_str() == verb && request.url.path() == route)
        .map(|request| serde_json::from_slice(&request.body).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_booking_checks_free_busy_inserts_once_and_a_retry_answers_the_same_body() {
    for store in STORES {
        book_and_retry_on(store).await;
    }
}

async fn book_and_retry_on(store: Store) {
    let (google, events) = fake_google(false).await;
    let app = app_on(store, &google).await;
    let org = app.create_org("Clinic").await;
    let member = app.token(org.id, org.member);

    let response = book(
        &app,
        &member,
        Some("visit-1"),
        &appointment("2026-12-01T08:00:00-05:00", 30),
    )
    .await;
    assert_eq!(error_code(response).await, "credential_not_configured");
    verified_google(&app, &org).await;

    let response = book(
        &app,
        &member,
        Some("visit-1"),
        &appointment("2026-12-01T08:00:00-05:00", 30),
    )
    .await;
    assert_eq!(response.status(), 201);
    let first: Value = response.json().await.expect("json");
    assert_eq!(first["start"], "2026-12-01T08:00:00-05:00");
    assert_eq!(first["end"], "2026-12-01T08:30:00-05:00");
    let event_id = first["eventId"].as_str().expect("eventId").to_owned();
    assert_eq!(event_id.len(), 52);
    assert!(event_id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b)));
    assert!(first["htmlLink"]
        .as_str()
        .is_some_and(|link| link.contains(&event_id)));
    let freebusy = bodies(&google, "POST", "/calendar/v3/freeBusy").await;
    let asked = freebusy.last().expect("free/busy asked");
    assert_eq!(
        asked["timeMin"], "2026-12-01T13:00:00+00:00",
        "exactly the interval"
    );
    assert_eq!(asked["timeMax"], "2026-12-01T13:30:00+00:00");

    let inserted = events.all();
    assert_eq!(inserted.len(), 1);
    assert_eq!(inserted[0]["summary"], "Check-up");
    assert_eq!(inserted[0]["attendees"][0]["email"], "ada@example.com");
    assert!(inserted[0]["description"]
        .as_str()
        .is_some_and(|text| text.contains("+14155550199")));

    let retry = book(
        &app,
        &member,
        Some("visit-1"),
        &appointment("2026-12-01T08:00:00-05:00", 30),
    )
    .await;
    assert_eq!(retry.status(), 201, "a retry answers the booking again");
    assert_eq!(retry.json::<Value>().await.expect("json"), first);
    assert_eq!(events.all().len(), 1, "and books nothing more");

    let moved = book(
        &app,
        &member,
        Some("visit-1"),
        &appointment("2026-12-01T11:00:00-05:00", 30),
    )
    .await;
    assert_eq!(moved.status(), 422);
    assert_eq!(error_code(moved).await, "idempotency_key_reused");

    let other_org = app.create_org("Other clinic").await;
    verified_google(&app, &other_org).await;
    let theirs = book(
        &app,
        &app.token(other_org.id, other_org.member),
        Some("visit-1"),
        &appointment("2026-12-02T10:00:00-05:00", 30),
    )
    .await;
    assert_eq!(theirs.status(), 201, "keys are per organization");
    assert_ne!(
        theirs.json::<Value>().await.expect("json")["eventId"],
        event_id.as_str()
    );

    let audit: Value = app.get_json("/api/organization/audit", &member).await;
    assert!(
        audit
            .as_array()
            .expect("array")
            .iter()
            .any(|entry| entry["detail"]["purpose"] == "calendar:booking"),
        "the credential read is audited with its purpose: {audit}"
    );
}

#[tokio::test]
async fn a_retry_whose_first_insert_google_kept_reads_the_event_back_on_409_duplicate() {
    // Free/busy that has not caught up: the retry's insert meets Google's 409 duplicate.
    let (google, events) = fake_google(true).await;
    let app = app_with(&google).await;
    let org = app.create_org("Clinic").await;
    verified_google(&app, &org).await;
    let member = app.token(org.id, org.member);
    let body = appointment("2026-12-01T13:00:00-05:00", 45);
    let first: Value = book(&app, &member, Some("k-409"), &body)
        .await
        .json()
        .await
        .expect("json");
    let retry = book(&app, &member, Some("k-409"), &body).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.json::<Value>().await.expect("json"), first);
    assert_eq!(events.all().len(), 1);
    assert_eq!(
        bodies(&google, "POST", "/calendar/v3/calendars/primary/events")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn overlaps_answer_slot_taken_and_of_two_concurrent_bookings_of_one_slot_one_wins() {
    // Free/busy answers slowly, so without one booking at a time both callers would see the slot free.
    let (google, events) =
        fake_google_answering_free_busy_after(false, Duration::from_millis(300)).await;
    let app = app_with(&google).await;
    let org = app.create_org("Clinic").await;
    verified_google(&app, &org).await;
    let member = app.token(org.id, org.member);
    let admin = app.token(org.id, org.admin);

    // 09:30-10:30 New York overlaps the existing 10:00-11:00 appointment; 09:00-10:00 touches it and is free.
    let taken = book(
        &app,
        &member,
        Some("overlap"),
        &appointment("2026-12-01T09:30:00-05:00", 60),
    )
    .await;
    assert_eq!(taken.status(), 409);
    assert_eq!(error_code(taken).await, "slot_taken");
    assert!(events.all().is_empty());
    let touching = book(
        &app,
        &member,
        Some("touching"),
        &appointment("2026-12-01T09:00:00-05:00", 60),
    )
    .await;
    assert_eq!(
        touching.status(),
        201,
        "an event ending at 10:00 frees 10:00, and vice versa"
    );

    let slot = appointment("2026-12-01T14:00:00-05:00", 30);
    let (a, b) = tokio::join!(
        book(&app, &member, Some("caller-a"), &slot),
        book(&app, &admin, Some("caller-b"), &slot)
    );
    let mut statuses = vec![a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    let loser = if a.status() == 409 { a } else { b };
    assert_eq!(error_code(loser).await, "slot_taken");
    assert_eq!(
        events.all().len(),
        2,
        "the touching booking and one of the two"
    );
}

#[tokio::test]
async fn a_booking_across_new_yorks_clock_changes_lasts_its_duration() {
    let (google, events) = fake_google(false).await;
    let app = app_with(&google).await;
    let org = app.create_org("Clinic").await;
    verified_google(&app, &org).await;
    let member = app.token(org.id, org.member);

    // 2026-11-01: clocks fall back at 02:00 EDT to 01:00 EST. 01:30 EDT plus an hour is 01:30 EST.
    let response = book(
        &app,
        &member,
        Some("fall-back"),
        &appointment("2026-11-01T01:30:00-04:00", 60),
    )
    .await;
    assert_eq!(response.status(), 201);
    let booked: Value = response.json().await.expect("json");
    assert_eq!(booked["start"], "2026-11-01T01:30:00-04:00");
    assert_eq!(booked["end"], "2026-11-01T01:30:00-05:00");
    let asked = bodies(&google, "POST", "/calendar/v3/freeBusy").await;
    assert_eq!(
        asked.last().expect("asked")["timeMin"],
        "2026-11-01T05:30:00+00:00"
    );
    assert_eq!(
        asked.last().expect("asked")["timeMax"],
        "2026-11-01T06:30:00+00:00"
    );
    let event = events
        .all()
        .into_iter()
        .find(|event| event["id"] == booked["eventId"])
        .expect("inserted");
    assert_eq!(event["start"]["dateTime"], "2026-11-01T01:30:00-04:00");
    assert_eq!(event["end"]["dateTime"], "2026-11-01T01:30:00-05:00");
    assert_eq!(event["end"]["timeZone"], CALENDAR_ZONE);

    // 2026-03-08: clocks spring forward at 02:00 EST to 03:00 EDT. 01:30 EST plus an hour is 03:30 EDT. Without
    // a timeZone the calendar's own is used.
    let mut spring = appointment("2026-03-08T06:30:00Z", 60);
    spring.as_object_mut().expect("object").remove("timeZone");
    let response = book(&app, &member, Some("spring-forward"), &spring).await;
    assert_eq!(response.status(), 201);
    let booked: Value = response.json().await.expect("json");
    assert_eq!(booked["start"], "2026-03-08T01:30:00-05:00");
    assert_eq!(booked["end"], "2026-03-08T03:30:00-04:00");
}

#[tokio::test]
async fn a_booking_is_cancelled_once_and_unknown_ids_are_404() {
    let (google, events) = fake_google(false).await;
    let app = app_with(&google).await;
    let org = app.create_org("Clinic").await;
    verified_google(&app, &org).await;
    let member = app.token(org.id, org.member);
    let body = appointment("2026-12-01T12:00:00-05:00", 30);
    let booked: Value = book(&app, &member, Some("to-cancel"), &body)
        .await
        .json()
        .await
        .expect("json");
    let event_id = booked["eventId"].as_str().expect("id");

    let cancelled = app.delete(&format!("{BOOKINGS}/{event_id}"), &member).await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(events.all()[0]["status"], "cancelled");
    let again = app.delete(&format!("{BOOKINGS}/{event_id}"), &member).await;
    assert_eq!(
        again.status(),
        200,
        "an event already cancelled counts as done"
    );
    let rebook = book(&app, &member, Some("to-cancel"), &body).await;
    assert_eq!(error_code(rebook).await, "idempotency_key_reused");
    let fresh = book(&app, &member, Some("after-cancel"), &body).await;
    assert_eq!(fresh.status(), 201, "the cancelled event frees its slot");

    // An event someone added in Google Calendar itself is no booking: it is not deleted.
    events.0.lock().expect("lock").insert(
        "dentistlunch2026".to_owned(),
        json!({"id": "dentistlunch2026", "status": "confirmed",
               "start": {"dateTime": "2026-12-01T12:00:00-05:00"}, "end": {"dateTime": "2026-12-01T13:00:00-05:00"}}),
    );
    let theirs = app
        .delete(&format!("{BOOKINGS}/dentistlunch2026"), &member)
        .await;
    assert_eq!(error_code(theirs).await, "not_found");
    assert_eq!(
        events.0.lock().expect("lock")["dentistlunch2026"]["status"],
        "confirmed"
    );
    assert!(
        events
            .all()
            .iter()
            .filter(|event| event["id"] != "dentistlunch2026")
            .all(|event| event["extendedProperties"]["private"]["byocBooking"] == "1"),
        "bookings carry byoc's mark"
    );

    for unknown in [
        "0123456789abcdefghijklmnopqrstuv",
        "ABCDEFGH",
        "abc",
        "xyz12345",
    ] {
        let response = app.delete(&format!("{BOOKINGS}/{unknown}"), &member).await;
        assert_eq!(response.status(), 404, "{unknown}");
        assert_eq!(error_code(response).await, "not_found");
    }
}

#[tokio::test]
async fn bad_requests_name_the_field_or_the_missing_idempotency_key() {
    let (google, events) = fake_google(false).await;
    let app = app_with(&google).await;
    let org = app.create_org("Clinic").await;
    verified_google(&app, &org).await;
    let member = app.token(org.id, org.member);
    let missing = book(
        &app,
        &member,
        None,
        &appointment("2026-12-01T10:00:00-05:00", 30),
    )
    .await;
    assert_eq!(missing.status(), 400);
    assert_eq!(error_code(missing).await, "idempotency_key_required");
    for (field, value) in [
        ("start", json!("2026-12-01T10:00:00")),
        ("start", json!("tomorrow")),
        ("durationMinutes", json!(481)),
        ("durationMinutes", json!(4)),
        ("summary", json!(" ")),
        ("attendeePhone", json!("+15555550100")),
        ("attendeeEmail", json!("ada at example.com")),
        ("timeZone", json!("Mars/Olympus")),
    ] {
        let mut body = appointment("2026-12-01T10:00:00-05:00", 30);
        body[field] = value;
        let response = book(&app, &member, Some("bad"), &body).await;
        assert_eq!(response.status(), 422, "{field}");
        let error: Value = response.json().await.expect("json");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(field)),
            "{error}"
        );
    }
    let outsider = app.create_org("Outsider").await;
    let stranger = app.token(org.id, outsider.owner);
    let response = book(
        &app,
        &stranger,
        Some("x"),
        &appointment("2026-12-01T10:00:00-05:00", 30),
    )
    .await;
    assert_eq!(error_code(response).await, "not_a_member");
    assert!(events.all().is_empty());
}

#[tokio::test]
async fn a_read_only_connection_cannot_book_but_availability_keeps_working() {
    // Connected through "Connect Google Calendar" before booking existed: Google granted calendar.readonly.
    let (google, events) = fake_google(false).await;
    let app = app_with(&google).await;
    let org = app.create_org("Clinic").await;
    connect(&app, &org).await;
    let member = app.token(org.id, org.member);
    let rows: Value = app.get_json("/api/organization/credentials", &member).await;
    assert!(
        rows[0]["public_hint"]
            .as_str()
            .is_some_and(|hint| hint.ends_with("/ read-only")),
        "{rows}"
    );
    let response = book(
        &app,
        &member,
        Some("ro"),
        &appointment("2026-12-01T10:00:00-05:00", 30),
    )
    .await;
    assert_eq!(response.status(), 409);
    let error: Value = response.json().await.expect("json");
    assert_eq!(error["error"]["code"], "calendar_reconnect_required");
    assert!(error["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("reconnect Google Calendar")));
    assert!(
        bodies(&google, "POST", "/calendar/v3/calendars/primary/events")
            .await
            .is_empty()
    );
    let availability = app
        .get(
            "/api/calendar/availability?date=2026-12-01&duration=30",
            &member,
        )
        .await;
    assert_eq!(availability.status(), 200, "availability keeps working");
    let rows: Value = app.get_json("/api/organization/credentials", &member).await;
    assert_eq!(rows[0]["verification_status"], "verified");

    // A credential whose scopes are unknown learns it from Google: 403 insufficient scopes is the same answer,
    // and the credential is not marked failed.
    let other = app.create_org("Other clinic").await;
    verified_google(&app, &other).await;
    google.reset().await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/calendars/primary/events"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "code": 403, "message": "Request had insufficient authentication scopes.",
            "status": "PERMISSION_DENIED",
            "errors": [{"reason": "insufficientPermissions", "domain": "global"}]
        }})))
        .mount(&google)
        .await;
    mount_basics(&google).await;
    let member = app.token(other.id, other.member);
    let response = book(
        &app,
        &member,
        Some("unknown-scope"),
        &appointment("2026-12-01T10:00:00-05:00", 30),
    )
    .await;
    assert_eq!(error_code(response).await, "calendar_reconnect_required");
    let rows: Value = app.get_json("/api/organization/credentials", &member).await;
    assert_eq!(rows[0]["verification_status"], "verified");
    assert!(events.all().is_empty());
}

/// The token endpoint and an empty free/busy, for a fake reset by a test.
async fn mount_basics(google: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.access", "expires_in": 3600, "token_type": "Bearer"
        })))
        .mount(google)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "calendars": {"primary": {"busy": []}}
        })))
        .mount(google)
        .await;
}

/// Connects Google Calendar through the platform's OAuth client as the admin (start, then Google's redirect
/// back with the binding cookie).
async fn connect(app: &TestApp, org: &TestOrg) {
    let response = app
        .get("/api/auth/google/start", &app.token(org.id, org.admin))
        .await;
    assert_eq!(response.status(), 302);
    let consent = url::Url::parse(response.headers()["location"].to_str().expect("location"))
        .expect("consent URL");
    let scope = consent
        .query_pairs()
        .find(|(key, _)| key == "scope")
        .map(|(_, value)| value.into_owned())
        .expect("scope");
    for wanted in ["calendar.events", "calendar.freebusy"] {
        assert!(
            scope
                .split(' ')
                .any(|granted| granted == format!("https://www.googleapis.com/auth/{wanted}")),
            "{scope}"
        );
    }
    assert!(!scope.contains("calendar.readonly"), "{scope}");
    let state = consent
        .query_pairs()
        .find(|(key, _)| key == "state")
        .map(|(_, value)| value.into_owned())
        .expect("state");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix("byoc_google_oauth="))
        .and_then(|rest| rest.split(';').next())
        .expect("binding cookie")
        .to_owned();
    let back = app
        .client
        .get(app.url("/api/auth/google/callback"))
        .query(&[("code", "4/auth-code"), ("state", state.as_str())])
        .header("cookie", format!("byoc_google_oauth={cookie}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        back.headers()["location"],
        "/dashboard/settings?google=connected"
    );
}

#[tokio::test]
async fn googles_refusals_map_as_availabilitys_do() {
    let (google, events) = fake_google(false).await;
    let app = app_with(&google).await;
    let org = app.create_org("Clinic").await;
    let id = verified_google(&app, &org).await;
    let member = app.token(org.id, org.member);

    // Google rate limits the insert: 503 with Google's Retry-After, nothing booked.
    google.reset().await;
    mount_basics(&google).await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/calendars/primary/events"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30").set_body_json(json!({
            "error": {"code": 429, "message": "Rate Limit Exceeded", "errors": [{"reason": "rateLimitExceeded"}]}
        })))
        .mount(&google)
        .await;
    let response = book(
        &app,
        &member,
        Some("limited"),
        &appointment("2026-12-01T10:00:00-05:00", 30),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    assert_eq!(error_code(response).await, "provider_unavailable");

    // Google is down: 503 provider_unavailable with a Retry-After; the credential stays verified.
    google.reset().await;
    mount_basics(&google).await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/calendars/primary/events"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&google)
        .await;
    let response = book(
        &app,
        &member,
        Some("down"),
        &appointment("2026-12-01T10:00:00-05:00", 30),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "10");
    assert_eq!(error_code(response).await, "provider_unavailable");

    // Access revoked: 424, the credential is marked failed ("reconnect Google Calendar").
    google.reset().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant", "error_description": "Token has been expired or revoked."
        })))
        .mount(&google)
        .await;
    Mock::given(method("POST"))
        .and(path("/calendar/v3/freeBusy"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}
        })))
        .mount(&google)
        .await;
    let response = book(
        &app,
        &member,
        Some("revoked"),
        &appointment("2026-12-01T10:00:00-05:00", 30),
    )
    .await;
    assert_eq!(response.status(), 424);
    let rows: Value = app.get_json("/api/organization/credentials", &member).await;
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["id"] == id.as_str()))
        .expect("listed");
    assert_eq!(row["verification_status"], "failed");
    assert!(row["verification_error"]
        .as_str()
        .is_some_and(|e| e.contains("reconnect Google Calendar")));
    assert!(events.all().is_empty());
}
