//! "Connect Google Calendar": `GET /api/auth/google/start` and `GET /api/auth/google/callback`.
//!
//! The `state` sent to Google is `{id}.{org}.{user}.{expires}.{tag}`: the id of an `oauth_states` row (which
//! holds the PKCE verifier, encrypted, and the OAuth client used), the organization and user it is bound to, its
//! expiry (unix seconds), and an HMAC-SHA256 tag over all of that ([`OAuthStateKey`](crate::usecases::oauth_state::OAuthStateKey)). The start also sets the
//! cookie [`BINDING_COOKIE`] (HttpOnly, `SameSite=Lax`, path of the callback) to the state id, so the callback
//! only completes in the browser that started it.
//!
//! The callback refuses with 400 `invalid_oauth_state`, storing nothing, a state that is forged (bad tag),
//! expired, replayed (its row was consumed already), from another browser, or from another user (a caller
//! authenticated as someone else). Otherwise it consumes the row, exchanges the code with the PKCE verifier,
//! stores the refresh token as a `google_calendar` credential through the credential service (with the scopes
//! Google granted, so a read-only connection is known as one), verifies it with a calendar list, and redirects to `/dashboard/settings?google=connected` (or `?google=error&reason=CODE`).
//!
//! **Which OAuth client.** The organization's own client when it has one: the client id, secret and
//! redirect URL of its newest *active* Google Calendar credential **whatever its verification status**, read
//! with [`CredentialService::get_payload_any_status`](byoc_credential_store::CredentialService) (owners and
//! admins, audited as a `read` for `oauth:reconnect`). A credential that Google refused (`failed`,
//! "reconnect Google Calendar") is exactly the one that needs reconnecting, so its client must still be
//! found. A credential whose client id is the platform's own (connected earlier with the platform client)
//! does not count as an own client: the platform's current id and secret from the environment are used.
//! Otherwise the platform's client (`GOOGLE_OAUTH_CLIENT_ID`/`SECRET`); with neither, 409. The state row
//! remembers which credential supplied the client, and the callback exchanges the code with that very
//! credential's secret (read again by id), so start and exchange always use the same client. A reconnect
//! through the organization's own client keeps that credential's calendar id.
//!
//! **After a successful connect** the new credential (stored `pending`, then verified) replaces the
//! organization's Google Calendar connection: every other active `google_calendar` credential (the failed
//! one being reconnected, and any older one) is deactivated, each audited as `deactivated` by the admin who
//! connected, so the organization ends with exactly one active, verified Google Calendar credential and an
//! old connection (possibly another Google account) can never silently take over again. When the new
//! credential does not verify, nothing is deactivated.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use byoc_credential_store::service::CredentialSelector;
use byoc_credential_store::{
    CredentialId, CredentialServiceError, CredentialType, DisplayName, EncryptedEnvelope,
    NewOAuthState, OAuthStateId, OrgId, StoreError, Tenant,
};
use byoc_credential_types::GoogleCalendarCredential;
use byoc_crypto::EnvelopeContext;
use byoc_providers::{Pkce, ProviderError};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::GoogleCallbackQuery;
use crate::plumbing::error::{ApiError, CauseChain, ErrorBody};
use crate::startup::state::AppState;
use crate::usecases::oauth_state::{SignedState, StateRefusal};
use crate::usecases::outbound::purpose;
use crate::usecases::verification::verify_credential;

/// How long a started connect may take before its state expires.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// The cookie that binds a state to the browser that started the connect.
pub const BINDING_COOKIE: &str = "byoc_google_oauth";
/// The callback's path (Google redirects here; the redirect URL is `BYOC_PUBLIC_URL` + this path).
pub const CALLBACK_PATH: &str = "/api/auth/google/callback";
/// The settings page the callback redirects to.
const SETTINGS_PATH: &str = "/dashboard/settings";
/// The credential type an OAuth state's PKCE envelope is bound to (envelope associated data).
const STATE_ENVELOPE_TYPE: &str = "oauth_state";

/// The OAuth client a connect uses: the organization's own (from its Google Calendar credential) or the
/// platform's (`GOOGLE_OAUTH_CLIENT_ID`/`SECRET`).
struct OAuthClient {
    client_id: String,
    client_secret: SecretString,
    /// The redirect URL registered with the client (the consent and the exchange must name the same one).
    redirect: Url,
    /// The organization's credential that supplied the client; `None` for the platform's.
    own_credential: Option<CredentialId>,
    /// The calendar the organization's credential reads, kept by a reconnect.
    calendar_id: Option<String>,
}

/// The purpose audited when a connect decrypts the organization's own OAuth client.
const RECONNECT_PURPOSE: &str = "oauth:reconnect";

/// The platform's client, if configured.
fn platform_client(state: &AppState) -> Result<Option<OAuthClient>, ApiError> {
    let Some(client) = state.outbound.google_oauth_client.as_ref() else {
        return Ok(None);
    };
    Ok(Some(OAuthClient {
        client_id: client.client_id.clone(),
        client_secret: client.client_secret.clone(),
        redirect: redirect_url(&state.outbound.public_url)?,
        own_credential: None,
        calendar_id: None,
    }))
}

/// The organization's own client from the credential `which` selects (any verification status); `None`
/// when there is no such credential or it carries the platform's client id.
async fn own_client(
    state: &AppState,
    tenant: &Tenant,
    which: CredentialSelector,
) -> Result<Option<OAuthClient>, ApiError> {
    let credential = match state
        .credential_service
        .get_payload_any_status::<GoogleCalendarCredential>(
            tenant,
            which,
            &purpose(RECONNECT_PURPOSE)?,
        )
        .await
    {
        Ok(credential) => credential,
        Err(CredentialServiceError::NotConfigured { .. }) => return Ok(None),
        Err(error) => return Err(ApiError::from(error)),
    };
    let platform_id = state
        .outbound
        .google_oauth_client
        .as_ref()
        .map(|client| client.client_id.as_str());
    if platform_id == Some(credential.payload.client_id.as_str()) {
        return Ok(None);
    }
    let redirect = match credential.payload.redirect_url.clone() {
        Some(url) => url,
        None => redirect_url(&state.outbound.public_url)?,
    };
    Ok(Some(OAuthClient {
        client_id: credential.payload.client_id.clone(),
        client_secret: credential.payload.client_secret.clone(),
        redirect,
        own_credential: credential.credential_id,
        calendar_id: credential.payload.calendar_id.clone(),
    }))
}

/// The client a new connect uses: the organization's own, else the platform's, else 409.
async fn oauth_client(state: &AppState, tenant: &Tenant) -> Result<OAuthClient, ApiError> {
    match own_client(state, tenant, CredentialSelector::NewestActive).await? {
        Some(client) => Ok(client),
        None => platform_client(state)?.ok_or_else(|| {
            ApiError::credential_not_configured(
                "no Google OAuth client: set GOOGLE_OAUTH_CLIENT_ID and GOOGLE_OAUTH_CLIENT_SECRET, or add a Google Calendar credential with your own OAuth client",
            )
        }),
    }
}

/// The client a started connect used, for the exchange: the same credential's (read again by id), or the
/// platform's.
async fn started_client(
    state: &AppState,
    tenant: &Tenant,
    stored: &byoc_credential_store::OAuthState,
) -> Result<OAuthClient, String> {
    let client = match stored.client_credential_id {
        Some(id) => own_client(state, tenant, CredentialSelector::Id(id)).await,
        None => platform_client(state),
    }
    .map_err(|error| reason_code(error.code()))?;
    client.ok_or_else(|| "oauth_client_unavailable".to_owned())
}

fn envelope_context(org_id: OrgId, id: OAuthStateId) -> EnvelopeContext<'static> {
    EnvelopeContext::new(org_id.as_uuid(), STATE_ENVELOPE_TYPE, id.as_uuid())
}

/// The redirect URL registered with the OAuth client: `BYOC_PUBLIC_URL` + the callback path.
pub fn redirect_url(public_url: &Url) -> Result<Url, ApiError> {
    public_url
        .join(CALLBACK_PATH.trim_start_matches('/'))
        .map_err(|error| ApiError::internal(&error))
}

/// Starts "Connect Google Calendar": 302 to Google's consent page with a signed, single-use state and PKCE.
/// Admins and owners.
#[utoipa::path(
    get,
    path = "/api/auth/google/start",
    tag = "google",
    security(("bearer" = [])),
    responses(
        (status = 302, description = "Redirect to Google's consent page (Location header)"),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member, or a member without the admin role", body = ErrorBody),
        (status = 409, description = "No OAuth client: neither the platform's nor the organization's own", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/auth/google/start")]
pub async fn google_start(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Manage)?;
    let user_id = caller
        .tenant
        .actor
        .user_id()
        .ok_or_else(|| ApiError::forbidden_role("admin"))?;
    let client = oauth_client(&state, &caller.tenant).await?;
    let pkce = Pkce::generate().map_err(|error| ApiError::internal(&error))?;
    let id = OAuthStateId::new_random();
    let org_id = caller.tenant.org_id;
    let expires_at = Utc::now()
        + chrono::Duration::from_std(STATE_TTL).map_err(|error| ApiError::internal(&error))?;
    let envelope = state
        .keyring
        .seal(
            pkce.verifier().expose_secret().as_bytes(),
            &envelope_context(org_id, id),
        )
        .map_err(|error| ApiError::internal(&error))?;
    state
        .repository
        .insert_oauth_state(
            &caller.tenant,
            &NewOAuthState {
                id,
                provider: CredentialType::GoogleCalendar,
                pkce_verifier_envelope: EncryptedEnvelope::new(envelope.into_bytes())?,
                client_credential_id: client.own_credential,
                expires_at,
            },
        )
        .await?;
    let signed = state.outbound.oauth_state_key.sign(&SignedState {
        id,
        org_id,
        user_id,
        expires_at,
    });
    let consent = state.outbound.providers.google.consent_url(
        &client.client_id,
        &client.redirect,
        &signed,
        &pkce,
    );
    let binding = Cookie::build(BINDING_COOKIE, id.to_string())
        .path(CALLBACK_PATH)
        .http_only(true)
        .secure(state.outbound.public_url.scheme() == "https")
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(STATE_TTL.as_secs()).unwrap_or(600),
        ))
        .finish();
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, consent.as_str()))
        .cookie(binding)
        .finish())
}

/// Google's redirect back: checks the state, exchanges the code, stores and verifies the credential, and
/// redirects to the settings page with the outcome.
#[utoipa::path(
    get,
    path = "/api/auth/google/callback",
    tag = "google",
    params(GoogleCallbackQuery),
    responses(
        (status = 302, description = "Redirect to /dashboard/settings?google=connected or ?google=error&reason=CODE"),
        (status = 400, description = "Forged, expired, replayed or another user's state; nothing stored", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/auth/google/callback")]
pub async fn google_callback(
    request: HttpRequest,
    query: web::Query<GoogleCallbackQuery>,
    caller: Option<Caller>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let text = query.state.as_deref().ok_or(StateRefusal::Forged)?;
    let signed = state.outbound.oauth_state_key.verify(text, now)?;
    let bound_here = request
        .cookie(BINDING_COOKIE)
        .is_some_and(|cookie| cookie.value() == signed.id.to_string());
    let other_caller = caller.as_ref().is_some_and(|caller| {
        caller.tenant.org_id != signed.org_id
            || caller.tenant.actor.user_id() != Some(signed.user_id)
    });
    if !bound_here || other_caller {
        return Err(StateRefusal::OtherUser.into());
    }
    let tenant = Tenant::user(signed.org_id, signed.user_id);
    let stored = match state
        .repository
        .consume_oauth_state(&tenant, signed.id, now)
        .await
    {
        Ok(stored) => stored,
        Err(StoreError::NotFound { .. } | StoreError::Forbidden { .. }) => {
            return Err(StateRefusal::Replayed.into())
        }
        Err(error) => return Err(error.into()),
    };
    let outcome = complete(&state, &tenant, &query, &stored).await;
    let location = match outcome {
        Ok(()) => format!("{SETTINGS_PATH}?google=connected"),
        Err(reason) => format!("{SETTINGS_PATH}?google=error&reason={reason}"),
    };
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .cookie({
            let mut removal = Cookie::build(BINDING_COOKIE, "")
                .path(CALLBACK_PATH)
                .finish();
            removal.make_removal();
            removal
        })
        .finish())
}

/// The reason code shown on the settings page: lowercase letters, digits and `_` only.
fn reason_code(text: &str) -> String {
    let code: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if code.is_empty() {
        "unknown".to_owned()
    } else {
        code
    }
}

fn provider_reason(error: &ProviderError) -> String {
    reason_code(error.provider_code().unwrap_or("provider_unavailable"))
}

/// Everything after a valid state: returns the reason code of a failure for the redirect.
async fn complete(
    state: &AppState,
    tenant: &Tenant,
    query: &GoogleCallbackQuery,
    stored: &byoc_credential_store::OAuthState,
) -> Result<(), String> {
    if let Some(error) = &query.error {
        return Err(reason_code(error));
    }
    let code = query
        .code
        .as_deref()
        .filter(|code| !code.trim().is_empty())
        .ok_or_else(|| "missing_code".to_owned())?;
    let role = state
        .repository
        .member_role(tenant)
        .await
        .map_err(|_| "database_unavailable".to_owned())?;
    if !role.is_some_and(|role| role.can_manage()) {
        return Err("insufficient_role".to_owned());
    }
    let verifier = state
        .keyring
        .open(
            stored.pkce_verifier_envelope.as_bytes(),
            &envelope_context(stored.org_id, stored.id),
        )
        .map_err(|error| {
            tracing::error!(error = %error, "cannot open an OAuth state's PKCE verifier");
            "internal_error".to_owned()
        })?;
    let verifier = SecretString::from(
        std::str::from_utf8(verifier.expose_secret())
            .map_err(|_| "internal_error".to_owned())?
            .to_owned(),
    );
    let client = started_client(state, tenant, stored).await?;
    state
        .outbound
        .usage
        .admit(tenant.org_id, crate::usecases::usage::Guarded::ProviderCall)
        .await
        .map_err(|_| "rate_limited".to_owned())?;
    let exchanged = state
        .outbound
        .providers
        .google
        .exchange_code(
            &client.client_id,
            &client.client_secret,
            code,
            &client.redirect,
            &verifier,
        )
        .await;
    state
        .outbound
        .usage
        .record(tenant, CredentialType::GoogleCalendar, exchanged.is_ok())
        .await;
    let tokens = exchanged.map_err(|error| provider_reason(&error))?;
    let credential = GoogleCalendarCredential::new(
        &client.client_id,
        client.client_secret,
        tokens.refresh_token,
        Some(client.redirect),
        client.calendar_id,
    )
    .map_err(|error| reason_code(error.field))?
    .with_granted_scope(tokens.scope);
    let display_name = DisplayName::parse(&format!(
        "Google Calendar (connected {}, {})",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        &stored.id.to_string()[..8]
    ))
    .map_err(|_| "internal_error".to_owned())?;
    let metadata = state
        .credential_service
        .store(tenant, &credential, display_name)
        .await
        .map_err(|error| reason_code(ApiError::from(error).code()))?;
    let verification = verify_credential(
        &state.credential_service,
        &state.verifiers,
        tenant,
        metadata.id,
    )
    .await;
    state
        .outbound
        .usage
        .record(
            tenant,
            CredentialType::GoogleCalendar,
            verification.as_ref().is_ok_and(|outcome| outcome.verified),
        )
        .await;
    match verification {
        Ok(outcome) if outcome.verified => {
            retire_replaced(state, tenant, metadata.id).await;
            Ok(())
        }
        Ok(_) => Err("verification_failed".to_owned()),
        Err(error) => Err(reason_code(ApiError::from(error).code())),
    }
}

/// Deactivates every active Google Calendar credential of the organization but `kept`, the one a connect
/// just stored and verified (see the module docs). A failure is logged: the new credential is verified and
/// newest, so it is the one served either way.
async fn retire_replaced(state: &AppState, tenant: &Tenant, kept: CredentialId) {
    let replaced = match state.credential_service.list(tenant).await {
        Ok(credentials) => credentials,
        Err(error) => {
            tracing::warn!(error = %CauseChain(&error), "cannot list the Google Calendar credentials a connect replaces");
            return;
        }
    };
    for metadata in replaced.into_iter().filter(|metadata| {
        metadata.credential_type == CredentialType::GoogleCalendar
            && metadata.is_active
            && metadata.id != kept
    }) {
        if let Err(error) = state
            .credential_service
            .deactivate(tenant, metadata.id)
            .await
        {
            tracing::warn!(credential_id = %metadata.id, error = %CauseChain(&error), "cannot deactivate a replaced Google Calendar credential");
        }
    }
}
