//! Login links: the SaaS frontend asks `POST /api/dashboard/login-links` with its user's bearer token and sends
//! the browser to the answered URL, which opens a settings-page session for that user and lands on the page,
//! with no token in view.
//!
//! A link holds a random secret ([`session::LoginLinkSecret`]); the store keeps only its SHA-256 hash, in the
//! database (so any replica opens it), for [`LOGIN_LINK_MAX_LIFETIME`] (60 seconds). Opening it uses it up in
//! one step: a used, expired or unknown link opens nothing and answers 410 (`login_link_used`,
//! `login_link_expired`), as a page or, when JSON is asked for, the API's error body. The session it opens ends
//! like a signed-in one ([`session::SESSION_IDLE_TIMEOUT`], [`session::SESSION_LIFETIME`]), never after the
//! token that asked for the link.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use byoc_credential_store::{LoginLinkRedemption, NewLoginLink, LOGIN_LINK_MAX_LIFETIME};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::plumbing::auth::{bearer_token, AuthError};
use crate::plumbing::caller::{authenticate_bearer, Permission};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::plumbing::session;
use crate::startup::state::AppState;

use super::{html, session_end, sign_in_page, view, NoRandomness, SETTINGS_PATH};

/// The path a login link opens.
pub const LOGIN_LINK_PATH: &str = "/dashboard/login";

/// A new login link.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginLinkResponse {
    /// The link to send the user's browser to (`BYOC_PUBLIC_URL` + `/dashboard/login?link=…`); it works once.
    pub url: String,
    /// When the link stops working if unused (60 seconds from now).
    pub expires_at: DateTime<Utc>,
}

/// Makes a single-use link, valid 60 seconds, that opens a settings-page session for the bearer token's user
/// (any member). Only a bearer token may ask (not the page's session cookie).
#[utoipa::path(
    post,
    path = "/api/dashboard/login-links",
    tag = "settings",
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The link: open it within 60 seconds, once", body = LoginLinkResponse),
        (status = 401, description = "Missing, malformed, badly signed or expired bearer token", body = ErrorBody),
        (status = 403, description = "The token's user is not a member of its organization", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[post("/api/dashboard/login-links")]
pub async fn create_login_link(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::to_str)
        .transpose()
        .map_err(|_| AuthError::Malformed)?;
    let token = bearer_token(authorization)?;
    let (caller, claims) = authenticate_bearer(&state.authenticator, token).await?;
    caller.require(Permission::Use)?;
    let secret =
        session::LoginLinkSecret::generate().map_err(|_| ApiError::internal(&NoRandomness))?;
    let now = Utc::now();
    let lifetime =
        TimeDelta::from_std(LOGIN_LINK_MAX_LIFETIME).map_err(|error| ApiError::internal(&error))?;
    let link = NewLoginLink {
        link_hash: secret.hash(),
        expires_at: now + lifetime,
        session_expires_at: session_end(now, claims.exp)?,
    };
    state
        .repository
        .create_dashboard_login_link(&caller.tenant, &link)
        .await?;
    let mut url = state
        .outbound
        .public_url
        .join(LOGIN_LINK_PATH)
        .map_err(|error| ApiError::internal(&error))?;
    url.query_pairs_mut().append_pair("link", secret.expose());
    Ok(HttpResponse::Created().json(LoginLinkResponse {
        url: url.into(),
        expires_at: link.expires_at,
    }))
}

/// The query of a login link.
#[derive(Deserialize)]
pub struct LoginLinkQuery {
    /// The link's secret.
    link: String,
}

/// Opens a login link: uses it up and, when it was live, starts a session (the cookie) and lands on the
/// settings page (through a same-origin reload, so that the `SameSite=Strict` cookie goes with it even when the
/// link was followed from another site). A used, expired or unknown link: 410, as the sign-in page with the
/// reason, or as the JSON error when the request asks for JSON.
#[utoipa::path(
    get,
    path = "/dashboard/login",
    tag = "settings",
    params(("link" = String, Query, description = "The login link's secret: 64 lowercase hex digits", pattern = "^[0-9a-f]{64}$")),
    responses(
        (status = 200, description = "A session was opened (cookie set); the page moves on to the settings page", content_type = "text/html"),
        (status = 410, description = "The link was already used, has expired or does not exist (the sign-in page says which, or the JSON error with `login_link_used` or `login_link_expired` when the request accepts JSON)", content(
            (String = "text/html"),
            (ErrorBody = "application/json"),
        )),
        (status = 422, description = "`link` is missing or is not 64 lowercase hex digits (the sign-in page says so, or the JSON error `invalid_field` when the request accepts JSON)", content(
            (String = "text/html"),
            (ErrorBody = "application/json"),
        )),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/dashboard/login")]
pub async fn open_login_link(
    request: HttpRequest,
    state: web::Data<AppState>,
    query: Option<web::Query<LoginLinkQuery>>,
) -> Result<HttpResponse, ApiError> {
    let presented = query
        .map(|query| query.into_inner().link)
        .unwrap_or_default();
    if !is_link_secret(&presented) {
        if asks_for_json(&request) {
            return Err(ApiError::invalid_field(
                "link",
                "must be the 64 lowercase hex digits of a login link",
            ));
        }
        return sign_in_page(
            &state,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(
                "This sign-in link is not valid. Open the settings page from your account again, or sign \
                 in below.",
            ),
        );
    }
    let session_id = session::new_session_id().map_err(|_| ApiError::internal(&NoRandomness))?;
    let outcome = state
        .repository
        .redeem_dashboard_login_link(
            &session::login_link_hash(&presented),
            &session::session_hash(&session_id),
            session::SESSION_IDLE_TIMEOUT,
        )
        .await?;
    let refused = match outcome {
        LoginLinkRedemption::Opened(_) => {
            return Ok(html(StatusCode::OK)
                .cookie(session::session_cookie(&session_id, state.secure_cookies))
                .body(view::same_site_reload(SETTINGS_PATH).into_string()));
        }
        LoginLinkRedemption::Expired => ApiError::login_link_expired(),
        LoginLinkRedemption::Unknown => ApiError::login_link_used(),
    };
    if asks_for_json(&request) {
        return Err(refused);
    }
    let message = match refused.code() {
        "login_link_expired" => {
            "This sign-in link has expired: links work for 60 seconds. Open the settings page from your \
             account again, or sign in below."
        }
        _ => {
            "This sign-in link was already used or is not valid. Open the settings page from your account \
             again, or sign in below."
        }
    };
    sign_in_page(&state, StatusCode::GONE, Some(message))
}

/// Whether `presented` has the shape of a login link's secret (64 lowercase hex digits, as links are issued).
fn is_link_secret(presented: &str) -> bool {
    presented.len() == 64
        && presented
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Whether the request's `Accept` header asks for JSON.
fn asks_for_json(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}
