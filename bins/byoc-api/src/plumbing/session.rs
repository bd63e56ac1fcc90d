//! Cookie sessions for the settings page. Signing in with a bearer token creates a server-side session: the
//! cookie `byoc_session` (HttpOnly, SameSite=Strict, Secure when `BYOC_PUBLIC_URL` is https) holds a random
//! session id (256 bits from ring's `SystemRandom`, hex), and the store keeps only its SHA-256 hash
//! (`dashboard_sessions`, in the database so that every replica sees it) with the organization, the user, an
//! idle timeout ([`SESSION_IDLE_TIMEOUT`]) and an absolute expiry ([`SESSION_LIFETIME`], never past the token's
//! own `exp`). Signing out deletes the session, so the old cookie stops working at once.
//!
//! Every state-changing request made with the cookie must carry the session's CSRF token (synchronizer pattern:
//! an HMAC keyed by the session id, rendered into the page, sent back in the `X-CSRF-Token` header or a `csrf`
//! form field, checked in constant time).
//!
//! Sign-in itself is protected by a double-submit nonce: the sign-in form carries a random value that must match
//! the short-lived `byoc_login` cookie set with the form.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use byoc_credential_store::{LoginLinkHash, SessionIdHash};
use ring::digest;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::plumbing::error::ApiError;

/// The session cookie (its value is the random session id).
pub const SESSION_COOKIE: &str = "byoc_session";
/// How long a session stays live without a request: 30 minutes.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a session lives at most, however much it is used: 12 hours (or until the token's `exp`, if sooner).
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Random bytes in a session id (256 bits).
const SESSION_ID_BYTES: usize = 32;
/// The sign-in nonce cookie (double-submit protection of the sign-in form).
pub const LOGIN_COOKIE: &str = "byoc_login";
/// The request header that carries the CSRF token on API calls made by the page.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// What the CSRF HMAC signs, keyed by the session id.
const CSRF_CONTEXT: &[u8] = b"byoc settings page csrf v1";

/// A fresh random session id (64 hex digits), for the cookie.
pub fn new_session_id() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0_u8; SESSION_ID_BYTES];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// What the store keeps of a session id: the SHA-256 of the cookie's value.
pub fn session_hash(session_id: &str) -> SessionIdHash {
    let mut hash = [0_u8; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, session_id.as_bytes()).as_ref());
    SessionIdHash::from_digest(hash)
}

/// The CSRF token of the session `session_id` (64 hex digits).
pub fn csrf_token(session_id: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_id.as_bytes());
    hex::encode(hmac::sign(&key, CSRF_CONTEXT).as_ref())
}

/// Whether `presented` is the CSRF token of `session_id` (constant-time comparison).
pub fn csrf_matches(session_id: &str, presented: &str) -> bool {
    let Ok(tag) = hex::decode(presented.trim()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_id.as_bytes());
    hmac::verify(&key, CSRF_CONTEXT, &tag).is_ok()
}

/// The session id in the request's session cookie, if it has one. A request that is not GET, HEAD or OPTIONS
/// must also carry the session's CSRF token in `X-CSRF-Token`, else it is refused with 403 `csrf_failed`.
pub fn cookie_session_id(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(cookie) = request.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let session_id = cookie.value().to_owned();
    if !request.method().is_safe() {
        let presented = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !csrf_matches(&session_id, presented) {
            return Err(ApiError::csrf_failed());
        }
    }
    Ok(Some(session_id))
}

/// The session cookie for `session_id`; the browser drops it after [`SESSION_LIFETIME`] at the latest.
pub fn session_cookie(session_id: &str, secure: bool) -> Cookie<'static> {
    let lifetime = i64::try_from(SESSION_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    Cookie::build(SESSION_COOKIE, session_id.to_owned())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(lifetime))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn expired_session_cookie(secure: bool) -> Cookie<'static> {
    let mut cookie = session_cookie("", secure);
    cookie.make_removal();
    cookie
}

/// The secret of a settings-page login link: 256 random bits from ring's `SystemRandom`, as 64 hex digits in the
/// link's URL. `Debug` shows nothing of it; the store keeps only its SHA-256 hash ([`login_link_hash`]).
pub struct LoginLinkSecret(String);

impl LoginLinkSecret {
    /// A fresh random secret.
    pub fn generate() -> Result<LoginLinkSecret, ring::error::Unspecified> {
        let mut bytes = [0_u8; SESSION_ID_BYTES];
        SystemRandom::new().fill(&mut bytes)?;
        Ok(LoginLinkSecret(hex::encode(bytes)))
    }

    /// What the store keeps of it.
    pub fn hash(&self) -> LoginLinkHash {
        login_link_hash(&self.0)
    }

    /// The secret itself, for the link's URL only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LoginLinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginLinkSecret(..)")
    }
}

/// The SHA-256 of a presented login link secret, to look it up.
pub fn login_link_hash(secret: &str) -> LoginLinkHash {
    let mut hash = [0_u8; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
    LoginLinkHash::from_digest(hash)
}

/// A fresh random sign-in nonce (64 hex digits).
pub fn new_login_nonce() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0_u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The sign-in nonce cookie.
pub fn login_cookie(nonce: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(LOGIN_COOKIE, nonce.to_owned())
        .path("/dashboard")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::minutes(30))
        .finish()
}

/// Whether the sign-in form's `nonce` matches the request's sign-in cookie (constant time).
pub fn login_nonce_matches(request: &HttpRequest, nonce: &str) -> bool {
    let Some(cookie) = request.cookie(LOGIN_COOKIE) else {
        return false;
    };
    let expected = cookie.value().as_bytes();
    let presented = nonce.as_bytes();
    !expected.is_empty()
        && expected.len() == presented.len()
        && expected
            .iter()
            .zip(presented)
            .fold(0_u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn csrf_token_is_bound_to_the_session() {
        let token = csrf_token("session-a");
        assert_eq!(token.len(), 64);
        assert!(csrf_matches("session-a", &token));
        assert!(!csrf_matches("session-b", &token));
        assert!(!csrf_matches("session-a", "not hex"));
        assert!(!csrf_matches("session-a", ""));
    }

    #[test]
    fn unsafe_cookie_requests_need_the_csrf_header() {
        let cookie = session_cookie("tok", false);
        let get = TestRequest::get().cookie(cookie.clone()).to_http_request();
        assert_eq!(
            cookie_session_id(&get).ok().flatten().as_deref(),
            Some("tok")
        );

        let post = TestRequest::post().cookie(cookie.clone()).to_http_request();
        assert_eq!(
            cookie_session_id(&post).expect_err("no csrf").code(),
            "csrf_failed"
        );

        let post = TestRequest::post()
            .cookie(cookie)
            .insert_header((CSRF_HEADER, csrf_token("tok")))
            .to_http_request();
        assert_eq!(
            cookie_session_id(&post).ok().flatten().as_deref(),
            Some("tok")
        );

        let bare = TestRequest::post().to_http_request();
        assert!(matches!(cookie_session_id(&bare), Ok(None)));
    }

    #[test]
    fn session_ids_are_256_random_bits_and_only_their_hash_is_kept() {
        let first = new_session_id().expect("random");
        let second = new_session_id().expect("random");
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, second);
        assert_eq!(session_hash(&first), session_hash(&first));
        assert_ne!(session_hash(&first), session_hash(&second));
        assert!(!hex::encode(session_hash(&first).as_bytes()).contains(&first));
    }

    #[test]
    fn login_link_secrets_are_random_and_hidden_from_debug() {
        let first = LoginLinkSecret::generate().expect("random");
        let second = LoginLinkSecret::generate().expect("random");
        assert_eq!(first.expose().len(), 64);
        assert_ne!(first.expose(), second.expose());
        assert_eq!(first.hash(), login_link_hash(first.expose()));
        assert!(!format!("{first:?}").contains(first.expose()));
    }

    #[test]
    fn session_cookie_attributes() {
        let cookie = session_cookie("tok", true);
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Strict));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(
            cookie.max_age(),
            Some(actix_web::cookie::time::Duration::hours(12))
        );
        assert_eq!(session_cookie("tok", false).secure(), Some(false));
    }

    #[test]
    fn login_nonce_is_double_submitted() {
        let nonce = new_login_nonce().expect("random");
        let request = TestRequest::post()
            .cookie(login_cookie(&nonce, false))
            .to_http_request();
        assert!(login_nonce_matches(&request, &nonce));
        assert!(!login_nonce_matches(&request, "other"));
        let without = TestRequest::post().to_http_request();
        assert!(!login_nonce_matches(&without, &nonce));
    }
}
