//! [`Caller`]: the authenticated user, their organization and their role, extracted from each request.
//!
//! The caller is named by a bearer token (`Authorization: Bearer …`), or, without that header, by the settings
//! page's session cookie, looked up in the store (state-changing requests then need the session's CSRF header,
//! see [`crate::plumbing::session`]). Either says who and for which organization; the role comes from
//! `organization_members` (through the
//! credential service, which answers the role last read when the database is unavailable, within the cache
//! TTL, so members keep using cached credentials through an outage). The contract's
//! role table is enforced with [`Caller::require`] in every handler (and again by the store underneath).

use actix_web::dev::Payload;
use actix_web::http::header;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, FromRequest, HttpRequest};
use byoc_credential_store::{
    CredentialRepository, CredentialService, MemberProfile, OrgId, Role, Tenant, UserId,
};
use futures::future::LocalBoxFuture;

use crate::plumbing::auth::{bearer_token, AuthError, Claims, TokenVerifier};
use crate::plumbing::error::ApiError;
use crate::plumbing::session::{cookie_session_id, session_hash};

/// What naming the caller of a request needs (registered as `web::Data<Authenticator>`): the bearer-token
/// verifier, the store's settings-page sessions and the credential service's roles.
pub struct Authenticator {
    /// Bearer-token verification.
    pub tokens: TokenVerifier,
    /// The store (settings-page sessions).
    pub repository: Arc<dyn CredentialRepository>,
    /// The credential service (the caller's role, served from its cache through an outage).
    pub credential_service: CredentialService,
    /// The member profiles (email, name) this process recorded lately.
    pub recorded_profiles: RecordedProfiles,
}

/// How long this process trusts that a member profile it recorded is still the stored one (another replica
/// may have recorded a newer one since).
const RECORDED_PROFILE_TTL: Duration = Duration::from_secs(10 * 60);
/// How many recorded profiles this process remembers; past that it forgets them all and records again.
const RECORDED_PROFILES_MAX: usize = 10_000;

/// The member profiles this process recorded lately, so that a request writes a member's email and name only
/// when its token says something new (at most once per [`RECORDED_PROFILE_TTL`] otherwise).
#[derive(Default)]
pub struct RecordedProfiles(Mutex<HashMap<(OrgId, UserId), (MemberProfile, Instant)>>);

impl RecordedProfiles {
    fn is_fresh(&self, key: (OrgId, UserId), profile: &MemberProfile) -> bool {
        let recorded = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recorded
            .get(&key)
            .is_some_and(|(known, at)| known == profile && at.elapsed() < RECORDED_PROFILE_TTL)
    }

    fn remember(&self, key: (OrgId, UserId), profile: &MemberProfile) {
        let mut recorded = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recorded.len() >= RECORDED_PROFILES_MAX {
            recorded.clear();
        }
        recorded.insert(key, (profile.clone(), Instant::now()));
    }
}

/// What an action needs, from the contract's role table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// List credentials, read the audit log, check availability, send a test SMS: every member.
    Use,
    /// Add, verify, deactivate a credential, connect Google: admins and owners.
    Manage,
    /// Purge a credential: owners only.
    Purge,
}

impl Permission {
    /// Whether `role` has this permission.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Permission::Use => true,
            Permission::Manage => role.can_manage(),
            Permission::Purge => role == Role::Owner,
        }
    }

    fn least_role(self) -> &'static str {
        match self {
            Permission::Use => "member",
            Permission::Manage => "admin",
            Permission::Purge => "owner",
        }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The organization and user the request acts as.
    pub tenant: Tenant,
    /// The user's role in that organization.
    pub role: Role,
}

impl Caller {
    /// Answers 403 unless the caller's role has `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if permission.allows(self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden_role(permission.least_role()))
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::KeysUnavailable => ApiError::auth_keys_unavailable(),
            other => ApiError::unauthorized(other.to_string()),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let authenticator = request.app_data::<web::Data<Authenticator>>().cloned();
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|value| value.to_str().map(str::to_owned));
        let session_id = cookie_session_id(request);
        Box::pin(async move {
            let authenticator =
                authenticator.ok_or_else(|| ApiError::internal(&MissingAuthenticator))?;
            match authorization {
                None => {
                    let session_id = session_id?.ok_or(AuthError::Missing)?;
                    authenticate_session(&authenticator, &session_id).await
                }
                Some(Ok(value)) => authenticate(&authenticator, bearer_token(Some(&value))?).await,
                Some(Err(_)) => Err(AuthError::Malformed.into()),
            }
        })
    }
}

/// Checks a bearer token and looks up the caller's role (401 for a bad token, 403 for a non-member).
pub async fn authenticate(authenticator: &Authenticator, token: &str) -> Result<Caller, ApiError> {
    Ok(authenticate_bearer(authenticator, token).await?.0)
}

/// Checks a bearer token, looks up the caller's role (401 for a bad token, 403 for a non-member) and records
/// the email and name the token carries; returns the caller with the token's claims.
pub async fn authenticate_bearer(
    authenticator: &Authenticator,
    token: &str,
) -> Result<(Caller, Claims), ApiError> {
    let claims = authenticator.tokens.verify(token).await?;
    let tenant = Tenant::user(
        OrgId::from_uuid(claims.org_id),
        UserId::from_uuid(claims.sub),
    );
    let caller = with_role(authenticator, tenant).await?;
    record_profile(authenticator, &caller, &claims.profile).await;
    Ok((caller, claims))
}

/// Records on the caller's membership the email and name their token carried, when it carried one and this
/// process has not recorded the same lately. Failing to record does not fail the request (it is logged,
/// without the values).
async fn record_profile(authenticator: &Authenticator, caller: &Caller, profile: &MemberProfile) {
    let Some(user_id) = caller.tenant.actor.user_id() else {
        return;
    };
    let key = (caller.tenant.org_id, user_id);
    if profile.is_empty() || authenticator.recorded_profiles.is_fresh(key, profile) {
        return;
    }
    match authenticator
        .repository
        .record_member_profile(&caller.tenant, profile)
        .await
    {
        Ok(_) => authenticator.recorded_profiles.remember(key, profile),
        Err(error) => tracing::warn!(%error, "could not record the member's email and name"),
    }
}

/// Looks up the live settings-page session `session_id` (the cookie's value) and its user's role (401 for an
/// unknown, ended or expired session, 403 for a user no longer a member).
pub async fn authenticate_session(
    authenticator: &Authenticator,
    session_id: &str,
) -> Result<Caller, ApiError> {
    let session = authenticator
        .repository
        .touch_dashboard_session(&session_hash(session_id))
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session has ended or expired; sign in again"))?;
    with_role(authenticator, Tenant::user(session.org_id, session.user_id)).await
}

/// The caller acting as `tenant`, with the role `organization_members` gives (403 for a non-member).
pub async fn with_role(authenticator: &Authenticator, tenant: Tenant) -> Result<Caller, ApiError> {
    let role = authenticator
        .credential_service
        .member_role(&tenant)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(ApiError::not_a_member)?;
    Ok(Caller { tenant, role })
}

/// The authenticator was not registered (a wiring bug, answered as a 500).
#[derive(Debug, thiserror::Error)]
#[error("the authenticator is not registered")]
struct MissingAuthenticator;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table() {
        let table = [
            (Permission::Use, [true, true, true]),
            (Permission::Manage, [false, true, true]),
            (Permission::Purge, [false, false, true]),
        ];
        for (permission, expected) in table {
            let got = [Role::Member, Role::Admin, Role::Owner].map(|role| permission.allows(role));
            assert_eq!(got, expected, "{permission:?}");
        }
    }
}
