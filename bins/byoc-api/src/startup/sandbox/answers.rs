//! The sandbox's answers, shaped as Twilio, Google (consent page, token endpoint, Calendar), Stripe and HubSpot
//! answer byoc's calls. Twilio's test numbers behave as at Twilio: a message to `+15005550001` is refused as an
//! invalid number (21211), one to `+15005550009` as a number that cannot receive SMS (21614); every other number
//! is accepted. Booked events are kept in memory (and show as busy) until the process stops.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, Scope};
use maud::html;
use serde_json::{json, Value};
use url::Url;

/// The Google OAuth client id the sandbox's consent page and token endpoint expect.
pub const SANDBOX_CLIENT_ID: &str = "byoc-dev-sandbox";
/// The authorization code the consent page grants.
const GRANTED_CODE: &str = "sandbox-authorization-code";
/// Twilio's test number that is not a valid phone number.
const INVALID_NUMBER: &str = "+15005550001";
/// Twilio's test number that cannot receive SMS.
const UNREACHABLE_NUMBER: &str = "+15005550009";

/// What the sandbox remembers: where the consent page may send the browser back to, and the booked events.
pub struct Sandbox {
    callback: Url,
    events: Mutex<HashMap<(String, String), Value>>,
}

impl Sandbox {
    /// A sandbox whose consent page redirects only to `callback` (the service's Google OAuth callback).
    pub fn new(callback: Url) -> Sandbox {
        Sandbox {
            callback,
            events: Mutex::new(HashMap::new()),
        }
    }

    fn events(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Value>> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sandbox's routes under `path`, answering with `sandbox`.
pub fn scope(path: &str, sandbox: web::Data<Sandbox>) -> Scope {
    web::scope(path)
        .app_data(sandbox)
        .route(
            "/twilio/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json",
            web::get().to(twilio_numbers),
        )
        .route(
            "/twilio/2010-04-01/Accounts/{sid}/Messages.json",
            web::post().to(twilio_message),
        )
        .route("/google/consent", web::get().to(google_consent))
        .route("/google/token", web::post().to(google_token))
        .route(
            "/google/calendar/v3/users/me/calendarList",
            web::get().to(calendar_list),
        )
        .route("/google/calendar/v3/freeBusy", web::post().to(free_busy))
        .route(
            "/google/calendar/v3/calendars/{calendar}",
            web::get().to(calendar),
        )
        .route(
            "/google/calendar/v3/calendars/{calendar}/events",
            web::post().to(insert_event),
        )
        .route(
            "/google/calendar/v3/calendars/{calendar}/events/{event}",
            web::get().to(get_event),
        )
        .route(
            "/google/calendar/v3/calendars/{calendar}/events/{event}",
            web::delete().to(cancel_event),
        )
        .route("/stripe/v1/balance", web::get().to(stripe_balance))
        .route(
            "/hubspot/account-info/v3/details",
            web::get().to(hubspot_account),
        )
}

type Fields = HashMap<String, String>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map_or("", String::as_str)
}

fn twilio_error(code: u32, message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": 400,
    }))
}

async fn twilio_numbers(query: web::Query<Fields>) -> HttpResponse {
    let numbers: Vec<Value> = query
        .get("PhoneNumber")
        .map(|phone| json!({"phone_number": phone, "capabilities": {"sms": true}}))
        .into_iter()
        .collect();
    HttpResponse::Ok().json(json!({ "incoming_phone_numbers": numbers }))
}

async fn twilio_message(form: web::Form<Fields>) -> HttpResponse {
    let to = field(&form, "To");
    match to {
        INVALID_NUMBER => twilio_error(
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        ),
        UNREACHABLE_NUMBER => twilio_error(
            21614,
            &format!("'To' number {to} is not a valid mobile number"),
        ),
        _ => HttpResponse::Created().json(json!({
            "sid": format!("SM{}", uuid::Uuid::new_v4().simple()),
            "status": "queued",
        })),
    }
}

async fn google_consent(sandbox: web::Data<Sandbox>, query: web::Query<Fields>) -> HttpResponse {
    let redirect = field(&query, "redirect_uri");
    if redirect != sandbox.callback.as_str() || field(&query, "client_id") != SANDBOX_CLIENT_ID {
        return HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .body("The sandbox consent page only answers this service's Google connect.");
    }
    let back = |pairs: &[(&str, &str)]| {
        let mut url = sandbox.callback.clone();
        url.query_pairs_mut()
            .extend_pairs(pairs)
            .append_pair("state", field(&query, "state"));
        url
    };
    let allow = back(&[("code", GRANTED_CODE)]);
    let deny = back(&[("error", "access_denied")]);
    let page = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sandbox Google consent · byoc dev mode" } }
            body {
                h1 { "Sandbox Google consent" }
                p { strong { "DEV MODE SANDBOX:" } " no Google account is involved. Allowing connects a sandbox \
                    calendar whose availability and bookings are answered by byoc itself." }
                p { a id="allow" href=(allow.as_str()) { "Allow" } " · " a id="deny" href=(deny.as_str()) { "Deny" } }
            }
        }
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.into_string())
}

async fn google_token(form: web::Form<Fields>) -> HttpResponse {
    let granted = match field(&form, "grant_type") {
        "authorization_code" => field(&form, "code") == GRANTED_CODE,
        "refresh_token" => field(&form, "refresh_token").starts_with("sandbox-refresh-"),
        _ => false,
    };
    if !granted || field(&form, "client_id") != SANDBOX_CLIENT_ID {
        return HttpResponse::BadRequest()
            .json(json!({"error": "invalid_grant", "error_description": "Bad Request"}));
    }
    let mut answer = json!({
        "access_token": format!("sandbox-access-{}", uuid::Uuid::new_v4().simple()),
        "expires_in": 3600,
        "token_type": "Bearer",
        "scope": byoc_providers::CONNECT_SCOPES.join(" "),
    });
    if field(&form, "grant_type") == "authorization_code" {
        answer["refresh_token"] =
            json!(format!("sandbox-refresh-{}", uuid::Uuid::new_v4().simple()));
    }
    HttpResponse::Ok().json(answer)
}

fn google_error(status: StatusCode, reason: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": {"code": status.as_u16(), "message": message, "errors": [{"reason": reason}]}
    }))
}

async fn calendar_list() -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"items": [{"id": "primary", "primary": true, "timeZone": "UTC"}]}))
}

async fn calendar(path: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"id": path.into_inner(), "timeZone": "UTC"}))
}

async fn free_busy(sandbox: web::Data<Sandbox>, query: web::Json<Value>) -> HttpResponse {
    let events = sandbox.events();
    let calendars: serde_json::Map<String, Value> = query["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["id"].as_str())
        .map(|calendar| {
            let busy: Vec<Value> = events
                .iter()
                .filter(|((owner, _), event)| owner == calendar && event["status"] == "confirmed")
                .map(|(_, event)| json!({"start": event["start"]["dateTime"], "end": event["end"]["dateTime"]}))
                .collect();
            (calendar.to_owned(), json!({ "busy": busy }))
        })
        .collect();
    HttpResponse::Ok().json(json!({ "calendars": calendars }))
}

async fn insert_event(
    sandbox: web::Data<Sandbox>,
    path: web::Path<String>,
    event: web::Json<Value>,
) -> HttpResponse {
    let mut event = event.into_inner();
    let Some(id) = event["id"].as_str().map(str::to_owned) else {
        return google_error(StatusCode::BAD_REQUEST, "badRequest", "Bad Request");
    };
    let mut events = sandbox.events();
    let key = (path.into_inner(), id.clone());
    if events.contains_key(&key) {
        return google_error(
            StatusCode::CONFLICT,
            "duplicate",
            "The requested identifier already exists.",
        );
    }
    event["status"] = json!("confirmed");
    event["htmlLink"] = json!(format!("https://calendar.google.com/event?eid={id}"));
    events.insert(key, event.clone());
    HttpResponse::Ok().json(event)
}

async fn get_event(sandbox: web::Data<Sandbox>, path: web::Path<(String, String)>) -> HttpResponse {
    match sandbox.events().get(&path.into_inner()) {
        Some(event) => HttpResponse::Ok().json(event),
        None => google_error(StatusCode::NOT_FOUND, "notFound", "Not Found"),
    }
}

async fn cancel_event(
    sandbox: web::Data<Sandbox>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let mut events = sandbox.events();
    let Some(event) = events.get_mut(&path.into_inner()) else {
        return google_error(StatusCode::NOT_FOUND, "notFound", "Not Found");
    };
    if event["status"] == "cancelled" {
        return google_error(StatusCode::GONE, "deleted", "Resource has been deleted");
    }
    event["status"] = json!("cancelled");
    HttpResponse::NoContent().finish()
}

async fn stripe_balance() -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"object": "balance", "livemode": false, "available": [], "pending": []}))
}

async fn hubspot_account() -> HttpResponse {
    HttpResponse::Ok().json(json!({"portalId": 62515, "accountType": "STANDARD"}))
}
