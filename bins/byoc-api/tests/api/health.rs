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
        ("post", "/api/organization/credentials/stripe"),
        ("post", "/api/organization/credentials/hubspot"),
        ("post", "/api/organization/credentials/{id}/verify"),
        ("delete", "/api/organization/credentials/{id}"),
        ("get", "/api/organization/audit"),
        ("get", "/api/auth/google/start"),
        ("get", "/api/auth/google/callback"),
        ("post", "/api/sms/test"),
        ("post", "/api/leads"),
        ("get", "/api/calendar/availability"),
        ("post", "/api/calendar/bookings"),
        ("delete", "/api/calendar/bookings/{eventId}"),
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

#[tokio::test]
async fn metrics_stay_bounded_under_invented_methods_and_paths() {
    let app = spawn_app().await;
    let invented = |round: usize| {
        let noise = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let method = reqwest::Method::from_bytes(format!("X{}", &noise[..8]).as_bytes())
            .expect("letters and digits make a method token");
        let path = format!("/{}/{round}/{}", &noise[8..20], &noise[20..]);
        (method, path)
    };
    let send = |method: reqwest::Method, path: String| {
        let request = app.client.request(method, app.url(&path));
        async move { request.send().await.expect("sent").status() }
    };
    // Warm-up: one request of each kind (a scrape too) creates the series the flood will count in.
    let (method, path) = invented(0);
    assert_eq!(send(method, path.clone()).await, 404);
    assert_eq!(send(reqwest::Method::GET, path).await, 404);
    app.metrics_text().await;
    let before = app.metrics_text().await.len();

    for round in 1..=1000 {
        let (method, path) = invented(round);
        let method = if round % 2 == 0 {
            method
        } else {
            reqwest::Method::GET
        };
        assert_eq!(send(method, path).await, 404, "round {round}");
    }
    let after = app.metrics_text().await;
    assert!(
        after.len() < before + 1024,
        "/metrics grew from {before} to {} bytes",
        after.len()
    );
    assert!(
        after.contains(
            r#"byoc_http_requests_total{method="other",route="unmatched",status="404"} 501"#
        ),
        "{after}"
    );
    assert!(
        after.contains(
            r#"byoc_http_requests_total{method="GET",route="unmatched",status="404"} 501"#
        ),
        "{after}"
    );
}

#[tokio::test]
async fn organization_ids_are_served_only_with_the_metrics_token() {
    let twilio = crate::sms::fake_twilio_accounts(&[crate::sms::SID_A]).await;
    let app = crate::sms::app_with_twilio(
        &twilio,
        &[("BYOC_METRICS_TOKEN", crate::sms::METRICS_TOKEN.to_owned())],
    )
    .await;
    let org = app.create_org("Metrics Clinic").await;
    crate::sms::verified_twilio(&app, &org, crate::sms::SID_A).await;
    let sent = crate::sms::send_test(&app, &org, crate::sms::RECIPIENT).await;
    assert_eq!(sent.status(), 200);
    let org_label = format!(r#"org_id="{}""#, org.id);

    let scrape = |token: Option<&str>| {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("sent") }
    };
    // The day's counter is written behind the request: wait until the token holder sees it.
    let mut with_token = String::new();
    for _ in 0..50 {
        let response = scrape(Some(crate::sms::METRICS_TOKEN)).await;
        assert_eq!(response.status(), 200);
        with_token = response.text().await.expect("text");
        if with_token.contains(&org_label) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        with_token.contains(&format!(
            r#"byoc_provider_calls_total{{{org_label},provider="twilio"}} 1"#
        )),
        "{with_token}"
    );

    let public = scrape(None).await;
    assert_eq!(public.status(), 200);
    let public = public.text().await.expect("text");
    assert!(!public.contains(&org.id.to_string()), "{public}");
    assert!(!public.contains("byoc_provider_calls_total"), "{public}");
    assert!(public.contains("byoc_http_requests_total"), "{public}");

    let wrong = scrape(Some("not-the-metrics-token-not-the-metrics-token")).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(error_code(wrong).await, "unauthorized");
}

#[tokio::test]
async fn without_a_metrics_token_no_organization_series_are_served() {
    let twilio = crate::sms::fake_twilio_accounts(&[crate::sms::SID_A]).await;
    let app = crate::sms::app_with_twilio(&twilio, &[]).await;
    let org = app.create_org("Tokenless Clinic").await;
    crate::sms::verified_twilio(&app, &org, crate::sms::SID_A).await;
    assert_eq!(
        crate::sms::send_test(&app, &org, crate::sms::RECIPIENT)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = app.metrics_text().await;
    assert!(!text.contains(&org.id.to_string()), "{text}");
    let guessed = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("")
        .send()
        .await
        .expect("sent");
    assert_eq!(guessed.status(), 401);
}
