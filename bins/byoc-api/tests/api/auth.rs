//! Bearer tokens: 401 for missing, malformed, badly signed or expired tokens; 403 for non-members; JWKS.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use byoc_credential_store::{Role, UserId};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{captured_logs, error_code, spawn_app, spawn_app_with, Store};

const LIST: &str = "/api/organization/credentials";

fn hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode")
}

#[tokio::test]
async fn missing_malformed_forged_and_expired_tokens_get_401() {
    let app = spawn_app().await;
    let org = app.create_org("Auth Clinic").await;
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64| serde_json::json!({"sub": org.owner.as_uuid(), "org_id": org.id.as_uuid(), "exp": exp});
    let secret = secrecy::ExposeSecret::expose_secret(&app.jwt_secret)
        .as_bytes()
        .to_vec();

    let response = app.client.get(app.url(LIST)).send().await.expect("sent");
    assert_eq!(response.status(), 401, "no token");
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(error_code(response).await, "unauthorized");

    let cases = [
        ("garbage", "not.a.jwt".to_owned()),
        (
            "forged",
            hs256(b"some-other-secret-some-other-secret", &claims(now + 600)),
        ),
        ("expired", hs256(&secret, &claims(now - 3600))),
        (
            "no org",
            hs256(
                &secret,
                &serde_json::json!({"sub": org.owner.as_uuid(), "exp": now + 600}),
            ),
        ),
    ];
    for (name, token) in cases {
        let response = app.get(LIST, &token).await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(error_code(response).await, "unauthorized", "{name}");
    }
    let response = app
        .client
        .get(app.url(LIST))
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401, "basic auth is not a bearer token");

    let supabase_style = hs256(
        &secret,
        &serde_json::json!({"sub": org.owner.as_uuid(), "org_id": org.id.as_uuid(), "exp": now + 600,
                            "aud": "authenticated", "role": "authenticated", "email": "a@example.com"}),
    );
    assert_eq!(
        app.get(LIST, &supabase_style).await.status(),
        200,
        "extra claims are accepted"
    );
}

#[tokio::test]
async fn a_user_who_is_not_a_member_gets_403() {
    for store in [Store::Sqlite, Store::Postgres] {
        let app = spawn_app_with(store, &[]).await;
        let org = app.create_org("Members Only").await;
        let other = app.create_org("Other Clinic").await;
        let stranger = app.token(org.id, UserId::new_random());
        let response = app.get(LIST, &stranger).await;
        assert_eq!(response.status(), 403, "{store:?}");
        assert_eq!(error_code(response).await, "not_a_member");
        let member_elsewhere = app.token(org.id, other.user(Role::Owner));
        assert_eq!(
            app.get(LIST, &member_elsewhere).await.status(),
            403,
            "{store:?}"
        );
        for role in [Role::Owner, Role::Admin, Role::Member] {
            let token = app.token(org.id, org.user(role));
            assert_eq!(
                app.get(LIST, &token).await.status(),
                200,
                "{store:?} {role:?}"
            );
        }
    }
}

/// An ES256 key pair and its public JWK.
fn es256_key() -> (EncodingKey, serde_json::Value) {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("parse");
    let public = pair.public_key().as_ref();
    let (x, y) = public[1..].split_at(32);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "test-key", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

#[tokio::test]
async fn es256_tokens_verify_against_the_jwks() {
    let (key, jwk) = es256_key();
    let jwks_server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"keys": [jwk]})))
        .expect(1)
        .mount(&jwks_server)
        .await;
    let app = spawn_app_with(
        Store::Sqlite,
        &[(
            "BYOC_JWKS_URL",
            format!("{}/.well-known/jwks.json", jwks_server.uri()),
        )],
    )
    .await;
    let org = app.create_org("JWKS Clinic").await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("test-key".to_owned());
    let claims =
        serde_json::json!({"sub": org.member.as_uuid(), "org_id": org.id.as_uuid(), "exp": exp});
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
    for _ in 0..3 {
        assert_eq!(
            app.get(LIST, &token).await.status(),
            200,
            "the JWKS is fetched once and cached"
        );
    }

    let (other_key, _) = es256_key();
    let forged = jsonwebtoken::encode(&header, &claims, &other_key).expect("sign");
    assert_eq!(
        app.get(LIST, &forged).await.status(),
        401,
        "a key not in the JWKS"
    );

    let hs = app.token(org.id, org.member);
    assert_eq!(
        app.get(LIST, &hs).await.status(),
        200,
        "the HS256 secret still works beside the JWKS"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    let logs = captured_logs();
    assert!(
        !logs.contains(&token) && !logs.contains(&hs),
        "tokens are never logged"
    );
}

#[tokio::test]
async fn tokens_from_the_future_or_for_another_audience_get_401() {
    let app = spawn_app().await;
    let org = app.create_org("Claims Clinic").await;
    let now = chrono::Utc::now().timestamp();
    let secret = secrecy::ExposeSecret::expose_secret(&app.jwt_secret)
        .as_bytes()
        .to_vec();
    let token = |extra: serde_json::Value| {
        let mut claims = serde_json::json!({
            "sub": org.owner.as_uuid(), "org_id": org.id.as_uuid(), "exp": now + 600,
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            claims.extend(extra.clone());
        }
        hs256(&secret, &claims)
    };

    for (name, extra) in [
        (
            "iat two minutes ahead",
            serde_json::json!({"iat": now + 120}),
        ),
        (
            "nbf two minutes ahead",
            serde_json::json!({"nbf": now + 120}),
        ),
        (
            "another audience",
            serde_json::json!({"aud": "someone-else"}),
        ),
        (
            "another audience among several",
            serde_json::json!({"aud": ["someone-else", "another"]}),
        ),
    ] {
        let response = app.get(LIST, &token(extra)).await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(error_code(response).await, "unauthorized", "{name}");
    }

    for (name, extra) in [
        ("no aud, iat or nbf", serde_json::json!({})),
        (
            "iat and nbf within the minute of leeway",
            serde_json::json!({"iat": now + 30, "nbf": now + 30}),
        ),
        (
            "the default audience",
            serde_json::json!({"aud": "authenticated"}),
        ),
        (
            "the audience among several",
            serde_json::json!({"aud": ["other", "authenticated"]}),
        ),
        (
            "any issuer when none is configured",
            serde_json::json!({"iss": "https://anyone.example"}),
        ),
    ] {
        assert_eq!(app.get(LIST, &token(extra)).await.status(), 200, "{name}");
    }
}

#[tokio::test]
async fn the_configured_audience_and_issuer_are_required() {
    const ISSUER: &str = "https://project.supabase.example/auth/v1";
    let app = spawn_app_with(
        Store::Sqlite,
        &[
            ("BYOC_JWT_AUDIENCE", "byoc-clinics".to_owned()),
            ("BYOC_JWT_ISSUER", ISSUER.to_owned()),
        ],
    )
    .await;
    let org = app.create_org("Issuer Clinic").await;
    let now = chrono::Utc::now().timestamp();
    let secret = secrecy::ExposeSecret::expose_secret(&app.jwt_secret)
        .as_bytes()
        .to_vec();
    let token = |aud: Option<&str>, iss: Option<&str>| {
        let mut claims = serde_json::json!({
            "sub": org.owner.as_uuid(), "org_id": org.id.as_uuid(), "exp": now + 600,
        });
        if let Some(aud) = aud {
            claims["aud"] = aud.into();
        }
        if let Some(iss) = iss {
            claims["iss"] = iss.into();
        }
        hs256(&secret, &claims)
    };
    for (name, aud, iss, status) in [
        (
            "right audience and issuer",
            Some("byoc-clinics"),
            Some(ISSUER),
            200,
        ),
        ("no audience, right issuer", None, Some(ISSUER), 200),
        (
            "Supabase's default audience",
            Some("authenticated"),
            Some(ISSUER),
            401,
        ),
        ("no issuer", Some("byoc-clinics"), None, 401),
        (
            "another issuer",
            Some("byoc-clinics"),
            Some("https://evil.example/auth/v1"),
            401,
        ),
    ] {
        let response = app.get(LIST, &token(aud, iss)).await;
        assert_eq!(response.status(), status, "{name}");
        if status == 401 {
            assert_eq!(error_code(response).await, "unauthorized", "{name}");
        }
    }
}
