//! The settings page at `/dashboard/settings`: an organization's credentials, the forms that add, verify,
//! revoke and purge them, "Connect Google Calendar", "Send test SMS" and the recent audit events.
//!
//! Signing in exchanges a bearer token for a server-side session (a random id in the cookie, its hash in the
//! store, see [`crate::plumbing::session`]); signing out deletes it. The server renders the page for the session's organization
//! and role ([`view`]); controls a role may not use are not rendered. The page's script (embedded from `assets/`, no CDN) submits its forms with `fetch()` to the
//! JSON API, authenticated by the session cookie plus the CSRF header ([`crate::plumbing::session`]), then re-renders.

pub mod activity;
pub mod login_link;
pub mod view;

use actix_web::http::header::{self, ContentType};
use actix_web::http::{Method, StatusCode};
use actix_web::{get, post, web, HttpRequest, HttpResponse, HttpResponseBuilder};
use byoc_credential_store::AuditPage;
use serde::Deserialize;

use byoc_credential_store::NewDashboardSession;
use chrono::{DateTime, TimeDelta, Utc};

use crate::plumbing::caller::{authenticate_bearer, authenticate_session, Caller};
use crate::plumbing::dto::{AuditEntryDto, CredentialRow};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::plumbing::session;
use crate::startup::state::AppState;
use activity::{Activity, ActivityQuery};
use view::{GoogleResult, SettingsView, SignInView};

/// The page's path.
pub const SETTINGS_PATH: &str = "/dashboard/settings";
/// The page's stylesheet.
const STYLESHEET: &str = include_str!("../../assets/settings.css");
/// The page's script.
const SCRIPT: &str = include_str!("../../assets/settings.js");
/// The page's content security policy: only its own script and stylesheet, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page's routes that the OpenAPI document leaves out (forms and assets), for 405 answers; a test checks
/// each is served.
pub const UNDOCUMENTED_ROUTES: [(&str, Method); 4] = [
    ("/dashboard/session", Method::POST),
    ("/dashboard/signout", Method::POST),
    ("/dashboard/assets/settings.css", Method::GET),
    ("/dashboard/assets/settings.js", Method::GET),
];

/// Registers the page, its sign-in/sign-out forms and its assets.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(settings_page)
        .service(sign_in)
        .service(sign_out)
        .service(login_link::create_login_link)
        .service(login_link::open_login_link)
        .service(stylesheet)
        .service(script);
}

/// The query of the settings page: the outcome of a "Connect Google Calendar" round trip, and the activity
/// card's filters and page.
#[derive(Debug, Deserialize)]
pub struct SettingsQuery {
    /// `connected` or `error`.
    google: Option<String>,
    /// With `error`: why, as a code.
    reason: Option<String>,
    /// The activity card's filters and page.
    #[serde(flatten)]
    activity: ActivityQuery,
}

/// The settings page for the session's organization, or the sign-in form without a valid session.
#[utoipa::path(
    get,
    path = "/dashboard/settings",
    tag = "settings",
    params(
        ("google" = Option<String>, Query, description = "Outcome of a Connect Google Calendar round trip: `connected` or `error`"),
        ("reason" = Option<String>, Query, description = "With `google=error`: why, as a code"),
        ("action" = Option<String>, Query, description = "Activity: only this action (a filter that does not parse is said on the page)"),
        ("actor" = Option<String>, Query, description = "Activity: only this person or service (`user:<uuid>`, `service:<name>`)"),
        ("from" = Option<String>, Query, description = "Activity: only from this day on (`YYYY-MM-DD`, UTC)"),
        ("to" = Option<String>, Query, description = "Activity: only up to and including this day (`YYYY-MM-DD`, UTC)"),
        ("before" = Option<String>, Query, description = "Activity: the page of events older than this entry id"),
    ),
    responses(
        (status = 200, description = "The settings page (HTML) for the session cookie's organization, or the sign-in form", content_type = "text/html"),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/dashboard/settings")]
pub async fn settings_page(
    request: HttpRequest,
    state: web::Data<AppState>,
    query: Option<web::Query<SettingsQuery>>,
) -> Result<HttpResponse, ApiError> {
    let (google, activity) = match query.map(web::Query::into_inner) {
        Some(query) => (
            query
                .google
                .as_deref()
                .and_then(|google| GoogleResult::parse(google, query.reason.as_deref())),
            Activity::from_query(query.activity),
        ),
        None => (None, Activity::default()),
    };
    let Some(session_id) = request
        .cookie(session::SESSION_COOKIE)
        .map(|cookie| cookie.value().to_owned())
    else {
        if is_cross_site_navigation(&request) {
            let target = request
                .uri()
                .path_and_query()
                .map_or(SETTINGS_PATH, |path| path.as_str());
            return Ok(html(StatusCode::OK).body(view::same_site_reload(target).into_string()));
        }
        return sign_in_page(&state, StatusCode::OK, None);
    };
    let caller = match authenticate_session(&state.authenticator, &session_id).await {
        Ok(caller) => caller,
        Err(error) if is_session_refusal(&error) => {
            let mut response = sign_in_page(
                &state,
                StatusCode::OK,
                Some("Your session has ended or is no longer valid. Sign in again."),
            )?;
            response
                .add_cookie(&session::expired_session_cookie(state.secure_cookies))
                .map_err(|error| ApiError::internal(&error))?;
            return Ok(response);
        }
        Err(error) => return Err(error),
    };
    let markup = settings_markup(&state, &caller, &session_id, google, &activity).await?;
    Ok(html(StatusCode::OK).body(markup))
}

async fn settings_markup(
    state: &AppState,
    caller: &Caller,
    session_id: &str,
    google: Option<GoogleResult>,
    activity: &Activity,
) -> Result<String, ApiError> {
    let credentials: Vec<CredentialRow> = state
        .credential_service
        .list(&caller.tenant)
        .await?
        .into_iter()
        .map(CredentialRow::from)
        .collect();
    // Through the credential service, which writes its queued audit events first: the page shows every one.
    let audit: Vec<AuditEntryDto> = state
        .credential_service
        .matching_audit_events(
            &caller.tenant,
            &activity.filter,
            AuditPage {
                limit: activity::EVENTS_PER_PAGE,
                before: activity.before,
            },
        )
        .await?
        .into_iter()
        .map(AuditEntryDto::from)
        .collect();
    let organization = state
        .credential_service
        .organization(&caller.tenant)
        .await?;
    let members = state.repository.list_members(&caller.tenant).await?;
    Ok(SettingsView {
        caller,
        organization_name: organization.name.as_str(),
        members: &members,
        csrf_token: &session::csrf_token(session_id),
        credentials: &credentials,
        audit: &audit,
        activity,
        google,
        sandbox: state.sandbox,
    }
    .render()
    .into_string())
}

/// Whether the browser says this is a top-level navigation from another site (`Sec-Fetch-Site: cross-site`).
fn is_cross_site_navigation(request: &HttpRequest) -> bool {
    let header_is = |name: &str, expected: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            == Some(expected)
    };
    header_is("sec-fetch-site", "cross-site") && header_is("sec-fetch-mode", "navigate")
}

/// Whether an authentication error means "sign in again" (401, or 403 for a user no longer a member).
fn is_session_refusal(error: &ApiError) -> bool {
    matches!(
        error.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    )
}

fn html(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder
        .content_type(ContentType::html())
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"));
    builder
}

/// The sign-in form with a fresh double-submit nonce (and its cookie).
fn sign_in_page(
    state: &AppState,
    status: StatusCode,
    message: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let nonce = session::new_login_nonce().map_err(|_| ApiError::internal(&NoRandomness))?;
    let markup = SignInView {
        nonce: &nonce,
        message,
    }
    .render()
    .into_string();
    Ok(html(status)
        .cookie(session::login_cookie(&nonce, state.secure_cookies))
        .body(markup))
}

/// The sign-in form's fields.
#[derive(Deserialize)]
struct SignInForm {
    token: String,
    nonce: String,
}

/// Exchanges a bearer token for a session (stored server-side; the cookie holds its random id), then redirects
/// to the page.
#[post("/dashboard/session")]
async fn sign_in(
    request: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, ApiError> {
    let SignInForm { token, nonce } = form.into_inner();
    if !session::login_nonce_matches(&request, &nonce) {
        return sign_in_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Please try again."),
        );
    }
    let signed_in = async {
        let (caller, claims) = authenticate_bearer(&state.authenticator, token.trim()).await?;
        start_session(&state, &caller, claims.exp).await
    };
    match signed_in.await {
        Ok(session_id) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, SETTINGS_PATH))
            .cookie(session::session_cookie(&session_id, state.secure_cookies))
            .finish()),
        Err(error) if is_session_refusal(&error) => {
            let message = if error.status() == StatusCode::FORBIDDEN {
                "This token's user is not a member of its organization."
            } else {
                "That token is not valid (malformed, expired or badly signed)."
            };
            sign_in_page(&state, StatusCode::UNAUTHORIZED, Some(message))
        }
        Err(error) => Err(error),
    }
}

/// Stores a new session for `caller`, live for [`session::SESSION_IDLE_TIMEOUT`] between requests and at most
/// [`session::SESSION_LIFETIME`], never past the token's expiry `token_exp` (seconds since the epoch); returns
/// its id, for the cookie.
async fn start_session(
    state: &AppState,
    caller: &Caller,
    token_exp: i64,
) -> Result<String, ApiError> {
    let session_id = session::new_session_id().map_err(|_| ApiError::internal(&NoRandomness))?;
    let session = NewDashboardSession {
        id_hash: session::session_hash(&session_id),
        idle_timeout: session::SESSION_IDLE_TIMEOUT,
        expires_at: session_end(Utc::now(), token_exp)?,
    };
    state
        .repository
        .create_dashboard_session(&caller.tenant, &session)
        .await?;
    Ok(session_id)
}

/// When a session started at `now` by a token expiring at `token_exp` (seconds since the epoch) ends:
/// [`session::SESSION_LIFETIME`] later, or at the token's expiry if that comes first.
fn session_end(now: DateTime<Utc>, token_exp: i64) -> Result<DateTime<Utc>, ApiError> {
    let lifetime = TimeDelta::from_std(session::SESSION_LIFETIME)
        .map_err(|error| ApiError::internal(&error))?;
    let token_end = DateTime::from_timestamp(token_exp, 0).unwrap_or(now);
    Ok((now + lifetime).min(token_end))
}

/// The sign-out form's field.
#[derive(Deserialize)]
struct SignOutForm {
    csrf: String,
}

/// Ends the session (the form carries the session's CSRF token): deletes it from the store, so the cookie no
/// longer works anywhere, removes the cookie and shows the sign-in form.
#[post("/dashboard/signout")]
async fn sign_out(
    request: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignOutForm>,
) -> Result<HttpResponse, ApiError> {
    let Some(session_id) = request.cookie(session::SESSION_COOKIE) else {
        return Ok(redirect_to_settings());
    };
    if !session::csrf_matches(session_id.value(), &form.csrf) {
        return Err(ApiError::csrf_failed());
    }
    state
        .repository
        .end_dashboard_session(&session::session_hash(session_id.value()))
        .await?;
    let mut response = redirect_to_settings();
    response
        .add_cookie(&session::expired_session_cookie(state.secure_cookies))
        .map_err(|error| ApiError::internal(&error))?;
    Ok(response)
}

fn redirect_to_settings() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, SETTINGS_PATH))
        .finish()
}

/// The page's stylesheet (embedded in the binary).
#[get("/dashboard/assets/settings.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLESHEET)
}

/// The page's script (embedded in the binary).
#[get("/dashboard/assets/settings.js")]
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(SCRIPT)
}

/// The system random generator failed (answered as a 500).
#[derive(Debug, thiserror::Error)]
#[error("the system random generator failed")]
struct NoRandomness;

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn cross_site_navigations_are_recognised() {
        let cross = TestRequest::get()
            .insert_header(("sec-fetch-site", "cross-site"))
            .insert_header(("sec-fetch-mode", "navigate"))
            .to_http_request();
        assert!(is_cross_site_navigation(&cross));
        let same = TestRequest::get()
            .insert_header(("sec-fetch-site", "same-origin"))
            .insert_header(("sec-fetch-mode", "navigate"))
            .to_http_request();
        assert!(!is_cross_site_navigation(&same));
        let fetch = TestRequest::get()
            .insert_header(("sec-fetch-site", "cross-site"))
            .insert_header(("sec-fetch-mode", "cors"))
            .to_http_request();
        assert!(!is_cross_site_navigation(&fetch));
    }
}
