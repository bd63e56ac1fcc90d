//! The signed `state` of "Connect Google Calendar" (`{id}.{org}.{user}.{expires}.{tag}`): [`OAuthStateKey`]
//! signs and checks it; the route module `routes::google_oauth` runs the flow around it.

use byoc_credential_store::{OAuthStateId, OrgId, UserId};
use chrono::{DateTime, Utc};
use ring::{hkdf, hmac};
use secrecy::{ExposeSecret, SecretString};

use crate::plumbing::error::ApiError;

/// The HMAC key that signs OAuth states: `BYOC_OAUTH_STATE_SECRET` when set, else derived (HKDF-SHA256) from
/// `BYOC_JWT_SECRET`, else random for this process (states then do not survive a restart or cross replicas).
pub struct OAuthStateKey(hmac::Key);

/// The verified contents of a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedState {
    /// The `oauth_states` row.
    pub id: OAuthStateId,
    /// The organization it is bound to.
    pub org_id: OrgId,
    /// The user it is bound to.
    pub user_id: UserId,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// Why a presented state is refused (all answered as 400 `invalid_oauth_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateRefusal {
    /// Missing, malformed or with a tag that does not match.
    #[error("the OAuth state is missing or not one byoc issued")]
    Forged,
    /// Past its expiry.
    #[error("the OAuth state has expired; start again")]
    Expired,
    /// Already used, or its row is gone.
    #[error("the OAuth state was already used or is unknown; start again")]
    Replayed,
    /// Presented from another browser or by another user than the one who started.
    #[error("the OAuth state belongs to another user or browser")]
    OtherUser,
}

impl From<StateRefusal> for ApiError {
    fn from(refusal: StateRefusal) -> ApiError {
        ApiError::invalid_oauth_state(refusal.to_string())
    }
}

impl OAuthStateKey {
    /// The key from a dedicated secret, else from the JWT secret, else random.
    pub fn new(
        dedicated: Option<&SecretString>,
        jwt_secret: Option<&SecretString>,
    ) -> Result<OAuthStateKey, ring::error::Unspecified> {
        let derive = |secret: &SecretString| {
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"byoc oauth state")
                .extract(secret.expose_secret().as_bytes());
            prk.expand(&[b"hmac-sha256 v1"], hmac::HMAC_SHA256)
                .map(|okm| OAuthStateKey(hmac::Key::from(okm)))
        };
        match dedicated.or(jwt_secret) {
            Some(secret) => derive(secret),
            None => {
                tracing::warn!("no BYOC_OAUTH_STATE_SECRET or BYOC_JWT_SECRET: Google connect states are signed with a per-process key");
                hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                    .map(OAuthStateKey)
            }
        }
    }

    fn payload(state: &SignedState) -> String {
        format!(
            "{}.{}.{}.{}",
            state.id,
            state.org_id,
            state.user_id,
            state.expires_at.timestamp()
        )
    }

    /// The state text to send to Google.
    pub fn sign(&self, state: &SignedState) -> String {
        let payload = OAuthStateKey::payload(state);
        let tag = hmac::sign(&self.0, payload.as_bytes());
        format!("{payload}.{}", hex::encode(tag.as_ref()))
    }

    /// Checks the tag (constant time) and the expiry at `now`.
    pub fn verify(&self, text: &str, now: DateTime<Utc>) -> Result<SignedState, StateRefusal> {
        let (payload, tag) = text.rsplit_once('.').ok_or(StateRefusal::Forged)?;
        let tag = hex::decode(tag).map_err(|_| StateRefusal::Forged)?;
        hmac::verify(&self.0, payload.as_bytes(), &tag).map_err(|_| StateRefusal::Forged)?;
        let mut parts = payload.split('.');
        let mut next = || parts.next().ok_or(StateRefusal::Forged);
        let id = next()?
            .parse::<OAuthStateId>()
            .map_err(|_| StateRefusal::Forged)?;
        let org_id = next()?.parse::<OrgId>().map_err(|_| StateRefusal::Forged)?;
        let user_id = next()?
            .parse::<UserId>()
            .map_err(|_| StateRefusal::Forged)?;
        let expires_at = next()?
            .parse::<i64>()
            .ok()
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or(StateRefusal::Forged)?;
        if expires_at <= now {
            return Err(StateRefusal::Expired);
        }
        Ok(SignedState {
            id,
            org_id,
            user_id,
            expires_at,
        })
    }
}
