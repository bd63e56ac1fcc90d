//! Bearer-token authentication: Supabase-style JWTs checked with an HS256 secret or a JWKS (RS256/ES256).
//!
//! A token carries `sub` (user uuid), `org_id` (org uuid) and `exp`. When present, `aud` must name
//! `BYOC_JWT_AUDIENCE` (default `authenticated`, Supabase's), and `iat` and `nbf` may lie at most
//! [`FUTURE_LEEWAY_SECS`] in the future; `iss` must name `BYOC_JWT_ISSUER` when that is set. `email` and a name
//! (`name`, or Supabase's `user_metadata.full_name` or `user_metadata.name`) are read when they are strings, to
//! name the person on the settings page, and ignored otherwise; any other claim (`role`, …) is accepted and
//! ignored. The caller's role is never taken from the token: it comes from `organization_members`. Tokens are
//! never logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::RwLock;
use url::Url;
use uuid::Uuid;

use byoc_credential_store::MemberProfile;
use byoc_runtime::config::{AuthConfig, TokenClaimRules};

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;
/// Seconds a token's `iat` (issued at) and `nbf` (not before) may lie in the future: the issuer's clock may
/// run ahead of byoc's, but not by more.
pub const FUTURE_LEEWAY_SECS: i64 = 60;
/// How long a fetched JWKS is trusted before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// The shortest time between two fetches caused by an unknown `kid`.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);

/// The claims byoc reads from a bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user's uuid.
    pub sub: Uuid,
    /// The organization the token acts for.
    pub org_id: Uuid,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// The user's email and name, when the token carried them.
    pub profile: MemberProfile,
}

/// The claims of a token as read, before the time checks byoc does itself (`iat` and `nbf`).
#[derive(Deserialize)]
struct TokenClaims {
    sub: Uuid,
    org_id: Uuid,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    email: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<serde_json::Value>,
    #[serde(default)]
    user_metadata: Option<serde_json::Value>,
}

impl TokenClaims {
    /// The email and name the token carries as strings (others are ignored).
    fn profile(&self) -> MemberProfile {
        let metadata = |key: &str| {
            self.user_metadata
                .as_ref()
                .and_then(|metadata| metadata.get(key))
                .and_then(serde_json::Value::as_str)
        };
        let name = self
            .name
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .or_else(|| metadata("full_name"))
            .or_else(|| metadata("name"));
        MemberProfile::new(
            self.email.as_ref().and_then(serde_json::Value::as_str),
            name,
        )
    }
}

/// Why a bearer token was refused (every variant answers 401, except [`AuthError::KeysUnavailable`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("missing bearer token")]
    Missing,
    /// The token is not a well-formed JWT with the required claims.
    #[error("malformed bearer token")]
    Malformed,
    /// The signature does not verify, or the algorithm or key is not accepted.
    #[error("bearer token signature is not valid")]
    BadSignature,
    /// The token has expired.
    #[error("bearer token has expired")]
    Expired,
    /// The token's `iat` or `nbf` lies more than [`FUTURE_LEEWAY_SECS`] in the future.
    #[error("bearer token is not valid yet")]
    NotYetValid,
    /// The token's `aud` does not name `BYOC_JWT_AUDIENCE`.
    #[error("bearer token is meant for another audience")]
    WrongAudience,
    /// `BYOC_JWT_ISSUER` is set and the token's `iss` is missing or names another issuer.
    #[error("bearer token is from another issuer")]
    WrongIssuer,
    /// The JWKS could not be fetched or read.
    #[error("cannot fetch the signing keys")]
    KeysUnavailable,
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(error: jsonwebtoken::errors::Error) -> AuthError {
        use jsonwebtoken::errors::ErrorKind;
        match error.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_) => AuthError::BadSignature,
            _ => AuthError::Malformed,
        }
    }
}

/// Checks bearer tokens against the configured HS256 secret and/or JWKS.
#[derive(Clone)]
pub struct TokenVerifier {
    hs256: Option<Arc<DecodingKey>>,
    jwks: Option<Arc<JwksCache>>,
    claims: TokenClaimRules,
}

impl TokenVerifier {
    /// Builds a verifier; `jwt_secret` is the HS256 secret (dev mode passes its generated one).
    pub fn new(config: &AuthConfig, http: reqwest::Client) -> TokenVerifier {
        TokenVerifier {
            hs256: config.jwt_secret.as_ref().map(|secret| {
                Arc::new(DecodingKey::from_secret(secret.expose_secret().as_bytes()))
            }),
            jwks: config
                .jwks_url
                .clone()
                .map(|url| Arc::new(JwksCache::new(url, http))),
            claims: config.claims.clone(),
        }
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.clone().ok_or(AuthError::BadSignature)?,
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::BadSignature)?;
                jwks.key_for(header.kid.as_deref(), header.alg).await?
            }
            _ => return Err(AuthError::BadSignature),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        // `nbf` is checked below with `iat`, against the wider FUTURE_LEEWAY_SECS.
        validation.validate_nbf = false;
        // A token without `aud` passes; one with `aud` must name the configured audience.
        validation.set_audience(&[&self.claims.audience]);
        match &self.claims.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                validation.set_required_spec_claims(&["exp", "sub", "iss"]);
            }
            None => validation.set_required_spec_claims(&["exp", "sub"]),
        }
        let claims = jsonwebtoken::decode::<TokenClaims>(token, &key, &validation)?.claims;
        let latest_acceptable = chrono::Utc::now()
            .timestamp()
            .saturating_add(FUTURE_LEEWAY_SECS);
        if [claims.iat, claims.nbf]
            .into_iter()
            .flatten()
            .any(|time| time > latest_acceptable)
        {
            return Err(AuthError::NotYetValid);
        }
        Ok(Claims {
            sub: claims.sub,
            org_id: claims.org_id,
            exp: claims.exp,
            profile: claims.profile(),
        })
    }
}

/// A fetched JWKS, refreshed after [`JWKS_TTL`] or when a token names an unknown `kid`.
struct JwksCache {
    url: Url,
    http: reqwest::Client,
    state: RwLock<Option<FetchedKeys>>,
}

struct FetchedKeys {
    keys: JwkSet,
    fetched_at: Instant,
}

impl JwksCache {
    fn new(url: Url, http: reqwest::Client) -> JwksCache {
        JwksCache {
            url,
            http,
            state: RwLock::new(None),
        }
    }

    async fn key_for(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Arc<DecodingKey>, AuthError> {
        {
            let state = self.state.read().await;
            if let Some(fetched) = state.as_ref() {
                let fresh = fetched.fetched_at.elapsed() < JWKS_TTL;
                match find_key(&fetched.keys, kid, algorithm) {
                    Some(key) if fresh => return key,
                    None if fetched.fetched_at.elapsed() < JWKS_MIN_REFETCH => {
                        return Err(AuthError::BadSignature)
                    }
                    _ => {}
                }
            }
        }
        let mut state = self.state.write().await;
        let needs_fetch = match state.as_ref() {
            Some(fetched) => {
                fetched.fetched_at.elapsed() >= JWKS_MIN_REFETCH
                    && (fetched.fetched_at.elapsed() >= JWKS_TTL
                        || find_key(&fetched.keys, kid, algorithm).is_none())
            }
            None => true,
        };
        if needs_fetch {
            let keys = self.fetch().await?;
            *state = Some(FetchedKeys {
                keys,
                fetched_at: Instant::now(),
            });
        }
        let fetched = state.as_ref().ok_or(AuthError::KeysUnavailable)?;
        find_key(&fetched.keys, kid, algorithm).unwrap_or(Err(AuthError::BadSignature))
    }

    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        let response = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "fetching the JWKS failed");
                AuthError::KeysUnavailable
            })?;
        let response = response.error_for_status().map_err(|error| {
            tracing::warn!(error = %error, "the JWKS endpoint answered an error");
            AuthError::KeysUnavailable
        })?;
        response.json::<JwkSet>().await.map_err(|error| {
            tracing::warn!(error = %error, "the JWKS is not a valid key set");
            AuthError::KeysUnavailable
        })
    }
}

/// The key for `kid` (or the only key when the token names none), if the set has one usable for `algorithm`.
fn find_key(
    keys: &JwkSet,
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Option<Result<Arc<DecodingKey>, AuthError>> {
    let jwk = match kid {
        Some(kid) => keys.find(kid)?,
        None if keys.keys.len() == 1 => keys.keys.first()?,
        None => return None,
    };
    let key_algorithm_matches = jwk
        .common
        .key_algorithm
        .is_none_or(|declared| declared.to_string() == format!("{algorithm:?}"));
    if !key_algorithm_matches {
        return Some(Err(AuthError::BadSignature));
    }
    Some(
        DecodingKey::from_jwk(jwk)
            .map(Arc::new)
            .map_err(|_| AuthError::BadSignature),
    )
}

/// Reads the token from an `Authorization: Bearer …` header value.
pub fn bearer_token(header_value: Option<&str>) -> Result<&str, AuthError> {
    let value = header_value.ok_or(AuthError::Missing)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use byoc_runtime::tokens::mint_token;
    use jsonwebtoken::{EncodingKey, Header};
    use secrecy::SecretString;

    const SECRET: &str = "unit-test-jwt-secret-0123456789abcdef";

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(
            &AuthConfig {
                jwt_secret: Some(SecretString::from(SECRET)),
                jwks_url: None,
                claims: TokenClaimRules::default(),
            },
            reqwest::Client::new(),
        )
    }

    #[tokio::test]
    async fn minted_tokens_verify() {
        let org = Uuid::new_v4();
        let user = Uuid::new_v4();
        let token = mint_token(
            &SecretString::from(SECRET),
            &TokenClaimRules::default(),
            org,
            user,
            Duration::from_secs(60),
        )
        .expect("mint");
        let claims = verifier().verify(&token).await.expect("valid");
        assert_eq!((claims.org_id, claims.sub), (org, user));
    }

    #[tokio::test]
    async fn email_and_name_are_read_when_they_are_strings() {
        let sign = |extra: serde_json::Value| {
            let mut claims = serde_json::json!({"sub": Uuid::new_v4(), "org_id": Uuid::new_v4(),
                "exp": chrono::Utc::now().timestamp() + 60});
            if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
                claims.extend(extra.clone());
            }
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .expect("encode")
        };
        let supabase = sign(serde_json::json!({"email": "dana@clinic.example",
            "user_metadata": {"full_name": "Dana Scully"}}));
        let profile = verifier().verify(&supabase).await.expect("valid").profile;
        assert_eq!(profile.email(), Some("dana@clinic.example"));
        assert_eq!(profile.name(), Some("Dana Scully"));

        // Claims of another type are ignored, and the token still verifies.
        let odd = sign(serde_json::json!({"email": 42, "name": ["x"], "user_metadata": "none"}));
        let profile = verifier().verify(&odd).await.expect("valid").profile;
        assert!(profile.is_empty());
    }

    #[tokio::test]
    async fn wrong_secret_expired_and_garbage_are_refused() {
        let org = Uuid::new_v4();
        let user = Uuid::new_v4();
        let other = mint_token(
            &SecretString::from("another-secret-another-secret-0123"),
            &TokenClaimRules::default(),
            org,
            user,
            Duration::from_secs(60),
        )
        .expect("mint");
        assert!(matches!(
            verifier().verify(&other).await,
            Err(AuthError::BadSignature)
        ));

        let expired_claims = serde_json::json!({"sub": user, "org_id": org, "exp": chrono::Utc::now().timestamp() - 3600});
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired_claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encode");
        assert!(matches!(
            verifier().verify(&expired).await,
            Err(AuthError::Expired)
        ));

        assert!(matches!(
            verifier().verify("not-a-jwt").await,
            Err(AuthError::Malformed)
        ));

        let missing_org = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": user, "exp": chrono::Utc::now().timestamp() + 60}),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encode");
        assert!(matches!(
            verifier().verify(&missing_org).await,
            Err(AuthError::Malformed)
        ));
    }

    #[tokio::test]
    async fn hs256_is_refused_without_a_secret() {
        let verifier = TokenVerifier::new(&AuthConfig::default(), reqwest::Client::new());
        let token = mint_token(
            &SecretString::from(SECRET),
            &TokenClaimRules::default(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Duration::from_secs(60),
        )
        .expect("mint");
        assert!(matches!(
            verifier.verify(&token).await,
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")).ok(), Some("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")).ok(), Some("abc"));
        assert!(matches!(bearer_token(None), Err(AuthError::Missing)));
        assert!(matches!(
            bearer_token(Some("Basic abc")),
            Err(AuthError::Malformed)
        ));
        assert!(matches!(
            bearer_token(Some("Bearer")),
            Err(AuthError::Malformed)
        ));
    }
}
