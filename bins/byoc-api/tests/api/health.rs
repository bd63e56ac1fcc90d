//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and unknown routes.

use std::time::{Duration, Instant};

use crate::helpers::{error_code, spawn_app, spawn_app_behind_proxy, spawn_app_with, STORES};

#[tokio::test]
async fn healthz_and_readyz_answer_ok_on_both_stores() {
    for store in STORES {
        let app = spawn_app_with(store, &[]).await;
        for path in ["/healthz", "/readyz"] {
            let response = app.client.get(app.url(path)).send().await.expect("sent");
            assert_eq!(response.status(), 200, "{store:?} {path}");
            let body: serde_json::Value = response.json().await.expect("json");
            assert_eq!(body["status"], "ok");
        }
    }
}

#[tokio::test]
async fn readyz_answers_503_when_the_database_is_gone() {
    let mut app = spawn_app_with(crate::helpers::Store::Postgres, &[]).await;
    app.drop_database();
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "database_unavailable");
    let live = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        live.status(),
        200,
        "liveness does not depend on the database"
    );
}

#[tokio::test]
async fn readyz_answers_503_before_the_pool_gives_up_when_postgres_is_unreachable() {
    let (app, mut proxy) = spawn_app_behind_proxy().await;
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
    proxy.cut().await;
    // New connections are refused: the pool retries until its 5 s acquire timeout, readiness stops at 2 s.
    let started = Instant::now();
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "database_unavailable");
    assert!(
        elapsed < Duration::from_millis(3_500),
        "readyz answered after {elapsed:?}"
    );
    let live = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(live.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    app.client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .expect("sent");
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/plain")));
    let text = response.text().await.expect("text");
    assert!(
        text.contains(r#"byoc_http_requests_total{method="GET",route="/healthz",status="200"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("byoc_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("byoc_audit_queue_pending 0"), "{text}");
    assert!(text.contains("byoc_legacy_fallback_uses_total 0"), "{text}");
    assert!(
        text.contains("byoc_credential_cache_lookups_total{result=\"hit\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("byoc_credential_cache_lookups_total{result=\"miss\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_document_lists_the_endpoints() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.expect("json");
    assert!(document["openapi"]
        .as_str()
        .is_some_and(|version| version.starts_with("3.")));
    // Every endpoint of the contract's table, with the method it names.
    for (method, path) in [
        ("get", "/api/organization/credentials"),
        ("post", "/api/organization/credentials/twilio"),
        ("post", "/api/organization/credentials/google_calendar"),
        ("post", "/api/organization/credentials/{id}/verify"),
        ("delete", "/api/organization/credentials/{id}"),
        ("get", "/api/organization/audit"),
        ("get", "/api/auth/google/start"),
        ("get", "/api/auth/google/callback"),
        ("post", "/api/sms/test"),
        ("post", "/api/leads"),
        ("get", "/api/calendar/availability"),
        ("post", "/api/webhooks/twilio/status"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/dashboard/settings"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn unknown_routes_answer_the_json_error_body() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.expect("sent");
    assert_eq!(response.status(), 404);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(header("x-request-id").is_some_and(|id| uuid::Uuid::parse_str(&id).is_ok()));
    assert_eq!(error_code(response).await, "not_found");

    let traced = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        traced
            .headers()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok()),
        Some("trace-42"),
        "a caller's request id is kept"
    );
}
