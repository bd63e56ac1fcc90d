//! Minting bearer tokens (`byoc token`, dev mode's printed token): HS256, Supabase-style claims.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;

use crate::config::TokenClaimRules;

/// The claims byoc writes when it mints a token (Supabase-style: `role` is `authenticated`; `aud` and `iss` are
/// the ones the verifier expects).
#[derive(Debug, Serialize)]
struct MintedClaims<'a> {
    sub: Uuid,
    org_id: Uuid,
    exp: i64,
    iat: i64,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    role: &'a str,
}

/// Mints an HS256 bearer token for `user` acting in `org`, valid for `ttl`, naming the audience and issuer of
/// `rules`.
pub fn mint_token(
    secret: &SecretString,
    rules: &TokenClaimRules,
    org: Uuid,
    user: Uuid,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = chrono::Utc::now().timestamp();
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = MintedClaims {
        sub: user,
        org_id: org,
        exp: now.saturating_add(ttl_secs),
        iat: now,
        aud: &rules.audience,
        iss: rules.issuer.as_deref(),
        role: "authenticated",
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}
