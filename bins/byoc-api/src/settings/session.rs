//! Cookie sessions for the settings page: the session cookie holds the caller's bearer token (HttpOnly,
//! SameSite=Strict, Secure when `BYOC_PUBLIC_URL` is https), and every state-changing request made with it must
//! carry the session's CSRF token (synchronizer pattern: an HMAC of the session token, rendered into the page,
//! sent back in the `X-CSRF-Token` header or a `csrf` form field, checked in constant time).
//!
//! Sign-in itself is protected by a double-submit nonce: the sign-in form carries a random value that must match
//! the short-lived `byoc_login` cookie set with the form.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::ApiError;

/// The session cookie (its value is the bearer token).
pub const SESSION_COOKIE: &str = "byoc_session";
/// The sign-in nonce cookie (double-submit protection of the sign-in form).
pub const LOGIN_COOKIE: &str = "byoc_login";
/// The request header that carries the CSRF token on API calls made by the page.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// What the CSRF HMAC signs, keyed by the session token.
const CSRF_CONTEXT: &[u8] = b"byoc settings page csrf v1";

/// The CSRF token of the session whose bearer token is `session_token` (64 hex digits).
pub fn csrf_token(session_token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_token.as_bytes());
    hex::encode(hmac::sign(&key, CSRF_CONTEXT).as_ref())
}

/// Whether `presented` is the CSRF token of `session_token` (constant-time comparison).
pub fn csrf_matches(session_token: &str, presented: &str) -> bool {
    let Ok(tag) = hex::decode(presented.trim()) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_token.as_bytes());
    hmac::verify(&key, CSRF_CONTEXT, &tag).is_ok()
}

/// The bearer token of the request's session cookie, if it has one. A request that is not GET, HEAD or OPTIONS
/// must also carry the session's CSRF token in `X-CSRF-Token`, else it is refused with 403 `csrf_failed`.
pub fn cookie_token(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(cookie) = request.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let token = cookie.value().to_owned();
    if !request.method().is_safe() {
        let presented = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !csrf_matches(&token, presented) {
            return Err(ApiError::csrf_failed());
        }
    }
    Ok(Some(token))
}

/// The session cookie for `token`.
pub fn session_cookie(token: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .finish()
}

/// A cookie that removes the session cookie.
pub fn expired_session_cookie(secure: bool) -> Cookie<'static> {
    let mut cookie = session_cookie("", secure);
    cookie.make_removal();
    cookie
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
        assert_eq!(cookie_token(&get).ok().flatten().as_deref(), Some("tok"));

        let post = TestRequest::post().cookie(cookie.clone()).to_http_request();
        assert_eq!(
            cookie_token(&post).expect_err("no csrf").code(),
            "csrf_failed"
        );

        let post = TestRequest::post()
            .cookie(cookie)
            .insert_header((CSRF_HEADER, csrf_token("tok")))
            .to_http_request();
        assert_eq!(cookie_token(&post).ok().flatten().as_deref(), Some("tok"));

        let bare = TestRequest::post().to_http_request();
        assert!(matches!(cookie_token(&bare), Ok(None)));
    }

    #[test]
    fn session_cookie_attributes() {
        let cookie = session_cookie("tok", true);
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Strict));
        assert_eq!(cookie.path(), Some("/"));
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
