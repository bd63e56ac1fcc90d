//! Google OAuth 2.0 for "Connect Google Calendar": PKCE, the consent URL, and the token endpoint (code
//! exchange and refresh) handled directly so that `invalid_grant` surfaces as a typed "reconnect Google
//! Calendar" refusal.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

use crate::error::ProviderError;
use byoc_credential_types::CredentialType;

const PROVIDER: CredentialType = CredentialType::GoogleCalendar;

/// The scopes "Connect Google Calendar" asks for, the narrowest that serve every call byoc makes (Google's
/// Calendar API discovery document names, per method, the scopes that allow it): `calendar.events` (insert and
/// delete bookings, read one back after a retry), `calendar.freebusy` (free/busy), and for verification and the
/// calendar's default time zone `calendar.calendarlist.readonly` (`calendarList.list`) and
/// `calendar.calendars.readonly` (`calendars.get`). None of them reads every calendar's events in full as
/// `calendar.readonly` did.
pub const CONNECT_SCOPES: [&str; 4] = [
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.freebusy",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
    "https://www.googleapis.com/auth/calendar.calendars.readonly",
];

/// A PKCE (RFC 7636, S256) pair: keep the verifier server-side with the `state`, send the challenge in the
/// consent URL, and give the verifier back at code exchange.
pub struct Pkce {
    verifier: SecretString,
    challenge: String,
}

/// The operating system's random generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator is unavailable")]
pub struct RandomnessUnavailable;

impl Pkce {
    /// A fresh pair: 32 random bytes as a 43-character base64url verifier, and its SHA-256 challenge.
    pub fn generate() -> Result<Pkce, RandomnessUnavailable> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| RandomnessUnavailable)?;
        Ok(Pkce::from_verifier(SecretString::from(
            URL_SAFE_NO_PAD.encode(bytes.as_ref()),
        )))
    }

    /// The pair for a verifier kept earlier.
    pub fn from_verifier(verifier: SecretString) -> Pkce {
        let challenge = Pkce::challenge_for(&verifier);
        Pkce {
            verifier,
            challenge,
        }
    }

    /// `BASE64URL(SHA256(verifier))`, the S256 challenge.
    pub fn challenge_for(verifier: &SecretString) -> String {
        let digest =
            ring::digest::digest(&ring::digest::SHA256, verifier.expose_secret().as_bytes());
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// The verifier (secret until the exchange).
    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }

    /// The challenge for the consent URL.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

/// Google's consent URL: offline access, forced consent (so a refresh token is issued), the
/// [`CONNECT_SCOPES`], the caller's `state`, and the PKCE S256 challenge.
pub fn consent_url(
    auth_url: &Url,
    client_id: &str,
    redirect_url: &Url,
    state: &str,
    code_challenge: &str,
) -> Url {
    let mut url = auth_url.clone();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_url.as_str())
        .append_pair("response_type", "code")
        .append_pair("scope", &CONNECT_SCOPES.join(" "))
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .append_pair("include_granted_scopes", "true")
        .append_pair("state", state)
        .append_pair("code_challenge", code_challenge)
        .append_pair("code_challenge_method", "S256");
    url
}

/// A successful answer of the token endpoint.
pub struct TokenGrant {
    /// The short-lived access token.
    pub access_token: SecretString,
    /// How long the access token lives.
    pub expires_in: Duration,
    /// A refresh token, when Google issued one (always at first consent with `prompt=consent`; rarely on
    /// refresh, and then it replaces the stored one).
    pub refresh_token: Option<SecretString>,
    /// The scopes granted, space-separated.
    pub scope: Option<String>,
}

impl fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGrant")
            .field("expires_in", &self.expires_in)
            .field("refresh_token_issued", &self.refresh_token.is_some())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Google's default access-token lifetime, used when the answer omits `expires_in`.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// Parses a 2xx token-endpoint answer.
pub(super) fn parse_grant(body: &str) -> Result<TokenGrant, ProviderError> {
    let response: TokenResponse = crate::http::parse_json(PROVIDER, body)?;
    if response.access_token.is_empty() {
        return Err(ProviderError::UnexpectedResponse {
            provider: PROVIDER,
            reason: "the token endpoint returned an empty access token".into(),
        });
    }
    Ok(TokenGrant {
        access_token: SecretString::from(response.access_token),
        expires_in: response
            .expires_in
            .map_or(DEFAULT_EXPIRES_IN, Duration::from_secs),
        refresh_token: response
            .refresh_token
            .filter(|token| !token.is_empty())
            .map(SecretString::from),
        scope: response.scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_challenge() {
        let verifier = SecretString::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            Pkce::challenge_for(&verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_pairs_are_fresh_and_well_formed() {
        let first = Pkce::generate().expect("randomness");
        let second = Pkce::generate().expect("randomness");
        assert_eq!(first.verifier().expose_secret().len(), 43);
        assert_ne!(
            first.verifier().expose_secret(),
            second.verifier().expose_secret()
        );
        assert_eq!(first.challenge(), Pkce::challenge_for(first.verifier()));
        assert!(!format!("{first:?}").contains(first.verifier().expose_secret()));
    }

    #[test]
    fn consent_url_asks_for_offline_consent_with_pkce() {
        let auth = Url::parse("https://accounts.google.com/o/oauth2/v2/auth").expect("valid");
        let redirect =
            Url::parse("https://byoc.example.com/api/auth/google/callback").expect("valid");
        let url = consent_url(
            &auth,
            "client.apps.googleusercontent.com",
            &redirect,
            "st4te",
            "ch4llenge",
        );
        let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["access_type"], "offline");
        assert_eq!(pairs["prompt"], "consent");
        assert_eq!(pairs["scope"], CONNECT_SCOPES.join(" "));
        assert_eq!(pairs["state"], "st4te");
        assert_eq!(pairs["code_challenge"], "ch4llenge");
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert_eq!(pairs["redirect_uri"], redirect.as_str());
        assert_eq!(pairs["response_type"], "code");
        assert!(url
            .as_str()
            .starts_with("https://accounts.google.com/o/oauth2/v2/auth?"));
    }
}
