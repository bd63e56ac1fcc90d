//! Every error status of the contract, each with the JSON error body: 400, 404, 405, 409, 413, 415, 422, 503.

use crate::helpers::{
    error_code, spawn_app, spawn_app_behind_proxy, TestApp, TWILIO_AUTH_TOKEN, TWILIO_PHONE,
    TWILIO_SID,
};

const TWILIO: &str = "/api/organization/credentials/twilio";

fn body(overrides: &[(&str, serde_json::Value)]) -> serde_json::Value {
    let mut body = serde_json::json!({
        "accountSid": TWILIO_SID,
        "authToken": TWILIO_AUTH_TOKEN,
        "phoneNumber": TWILIO_PHONE,
        "displayName": "Main",
    });
    for (key, value) in overrides {
        if value.is_null() {
            body.as_object_mut().expect("object").remove(*key);
        } else {
            body[*key] = value.clone();
        }
    }
    body
}

/// `POST` to the Twilio add endpoint as `token` with a raw `body` of `content_type`.
async fn post_twilio_raw(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url(TWILIO))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn malformed_and_wrongly_shaped_bodies_get_400() {
    let app = spawn_app().await;
    let org = app.create_org("Errors").await;
    let token = app.token(org.id, org.admin);

    let response = post_twilio_raw(&app, &token, "application/json", "{\"accountSid\": ").await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "malformed_request");

    let cases = [
        (
            "wrong type",
            body(&[("authToken", serde_json::json!(123456789))]),
            "authToken",
        ),
        (
            "unknown field",
            body(&[("role", serde_json::json!("owner"))]),
            "role",
        ),
        (
            "missing field",
            body(&[("phoneNumber", serde_json::Value::Null)]),
            "phoneNumber",
        ),
    ];
    for (name, request, field) in cases {
        let response = app.post_json(TWILIO, &token, &request).await;
        assert_eq!(response.status(), 400, "{name}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], "invalid_body", "{name}");
        let message = error["error"]["message"].as_str().expect("message");
        assert!(message.contains(field), "{name}: {message}");
        assert!(
            !message.contains("123456789"),
            "the value is never echoed: {message}"
        );
    }
}

#[tokio::test]
async fn oversized_and_non_json_bodies_get_413_and_415() {
    let app = spawn_app().await;
    let org = app.create_org("Limits").await;
    let token = app.token(org.id, org.admin);
    let huge = body(&[("displayName", serde_json::json!("x".repeat(20 * 1024)))]);
    let response = app.post_json(TWILIO, &token, &huge).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");

    let response = post_twilio_raw(&app, &token, "text/plain", body(&[]).to_string()).await;
    assert_eq!(response.status(), 415);
    assert_eq!(error_code(response).await, "unsupported_media_type");
}

#[tokio::test]
async fn invalid_fields_get_422_naming_the_field() {
    let app = spawn_app().await;
    let org = app.create_org("Validation").await;
    let token = app.token(org.id, org.admin);
    let cases = [
        (
            "accountSid",
            body(&[("accountSid", serde_json::json!("AC123"))]),
        ),
        (
            "phoneNumber",
            body(&[("phoneNumber", serde_json::json!("555-0123"))]),
        ),
        ("authToken", body(&[("authToken", serde_json::json!(""))])),
        (
            "displayName",
            body(&[("displayName", serde_json::json!("   "))]),
        ),
    ];
    for (field, request) in cases {
        let response = app.post_json(TWILIO, &token, &request).await;
        assert_eq!(response.status(), 422, "{field}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], "invalid_field");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{field}: {error}"
        );
    }
    let response = app
        .post_json(
            "/api/organization/credentials/google_calendar",
            &token,
            &serde_json::json!({"clientId": "c", "clientSecret": "s", "refreshToken": "r",
                                "redirectUrl": "ftp://nope", "displayName": "G"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.expect("text").contains("redirectUrl"));
}

#[tokio::test]
async fn display_names_with_bidirectional_overrides_or_zero_width_characters_get_422() {
    let app = spawn_app().await;
    let org = app.create_org("Look-alikes").await;
    let token = app.token(org.id, org.admin);
    app.add_twilio(&token, TWILIO_SID, "B main").await;
    for name in [
        "B main\u{200B}",
        "B\u{200D} main",
        "\u{FEFF}B main",
        "B main\u{202E}",
        "\u{202D}B main",
        "B \u{2066}main\u{2069}",
    ] {
        let response = app
            .post_json(
                TWILIO,
                &token,
                &body(&[("displayName", serde_json::json!(name))]),
            )
            .await;
        assert_eq!(response.status(), 422, "{name:?}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert_eq!(error["error"]["code"], "invalid_field", "{name:?}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("displayName:")),
            "{name:?}: {error}"
        );
    }
    let listed = app.get_json("/api/organization/credentials", &token).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
}

#[tokio::test]
async fn duplicate_display_name_gets_409() {
    let app = spawn_app().await;
    let org = app.create_org("Duplicates").await;
    let token = app.token(org.id, org.admin);
    app.add_twilio(&token, TWILIO_SID, "Same name").await;
    let response = app
        .post_json(
            TWILIO,
            &token,
            &body(&[("displayName", serde_json::json!("Same name"))]),
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "duplicate_display_name");
}

#[tokio::test]
async fn bad_ids_and_query_strings_get_404_400_and_422() {
    let app = spawn_app().await;
    let org = app.create_org("Queries").await;
    let owner = app.token(org.id, org.owner);
    let response = app
        .delete("/api/organization/credentials/not-a-uuid", &owner)
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
    let response = app
        .post_json(
            "/api/organization/credentials/not-a-uuid/verify",
            &owner,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(response.status(), 404);

    let id = uuid::Uuid::new_v4();
    for path in [
        format!("/api/organization/credentials/{id}?purge=maybe"),
        format!("/api/organization/credentials/{id}?force=true"),
    ] {
        let response = app.delete(&path, &owner).await;
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(error_code(response).await, "invalid_body");
    }
    let response = app.get("/api/organization/audit?limit=abc", &owner).await;
    assert_eq!(response.status(), 400);
    for path in [
        "/api/organization/audit?limit=0",
        "/api/organization/audit?limit=501",
        "/api/organization/audit?before=0",
    ] {
        let response = app.get(path, &owner).await;
        assert_eq!(response.status(), 422, "{path}");
        assert_eq!(error_code(response).await, "invalid_field");
    }
}

#[tokio::test]
async fn an_unreachable_database_gets_503() {
    let (app, mut proxy) = spawn_app_behind_proxy().await;
    let org = app.create_org("Outage").await;
    let owner = app.token(org.id, org.owner);
    let credential = app
        .add_twilio(&owner, TWILIO_SID, "Before the outage")
        .await;
    let id = credential["id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.get("/api/organization/credentials", &owner)
            .await
            .status(),
        200
    );
    proxy.cut().await;
    // Reads, writes and uses alike: 503 with the contract's body, never a 500. They wait for the pool together.
    let sms = serde_json::json!({"to": "+14155550124"});
    let empty = serde_json::json!({});
    let added = body(&[("displayName", serde_json::json!("During the outage"))]);
    let verify = format!("/api/organization/credentials/{id}/verify");
    let deactivate = format!("/api/organization/credentials/{id}");
    let (list, audit, add, verified, deactivated, sent, ready) = tokio::join!(
        app.get("/api/organization/credentials", &owner),
        app.get("/api/organization/audit", &owner),
        app.post_json(TWILIO, &owner, &added),
        app.post_json(&verify, &owner, &empty),
        app.delete(&deactivate, &owner),
        app.post_json("/api/sms/test", &owner, &sms),
        app.client.get(app.url("/readyz")).send(),
    );
    let ready = ready.expect("sent");
    for (what, response) in [
        ("list", list),
        ("audit", audit),
        ("add", add),
        ("verify", verified),
        ("deactivate", deactivated),
        ("sms", sent),
        ("readyz", ready),
    ] {
        assert_eq!(response.status(), 503, "{what}");
        assert_eq!(error_code(response).await, "database_unavailable", "{what}");
    }
}

#[tokio::test]
async fn form_endpoints_answer_json_errors_for_large_unreadable_or_mistyped_bodies() {
    let app = spawn_app().await;
    let org = app.create_org("Forms").await;
    let webhook = format!("/api/webhooks/twilio/status?org={}", org.id);
    let large_form = format!("MessageSid=SM1&Body={}", "x".repeat(40 * 1024));
    for path in [webhook.as_str(), "/dashboard/session", "/dashboard/signout"] {
        let response = app
            .client
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", "c2lnbmF0dXJl")
            .body(large_form.clone())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 413, "{path}");
        assert_eq!(error_code(response).await, "payload_too_large", "{path}");

        let response = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .header("x-twilio-signature", "c2lnbmF0dXJl")
            .body(r#"{"token": "t"}"#)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 415, "{path}");
        assert_eq!(
            error_code(response).await,
            "unsupported_media_type",
            "{path}"
        );
    }
    for path in ["/dashboard/session", "/dashboard/signout"] {
        let response = app
            .client
            .post(app.url(path))
            .form(&[("unexpected", "field")])
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(error_code(response).await, "invalid_body", "{path}");
    }
}

#[tokio::test]
async fn a_wrong_method_answers_the_json_error_body() {
    let app = spawn_app().await;
    for (method, path) in [
        (reqwest::Method::PUT, "/healthz"),
        (reqwest::Method::DELETE, "/dashboard/settings"),
        (reqwest::Method::GET, "/dashboard/session"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("sent");
        assert!(
            response.status().is_client_error(),
            "{method} {path}: {}",
            response.status()
        );
        error_code(response).await;
    }
}

/// actix-http answers a request head it cannot hold (over 96 headers, or over 128 KiB) with 431 before the
/// application sees the request, so that answer has no body at all (not JSON, not text either).
#[tokio::test]
async fn an_oversized_request_head_is_refused_with_an_empty_431() {
    let app = spawn_app().await;
    let mut request = app.client.get(app.url("/healthz"));
    for index in 0..120 {
        request = request.header(format!("x-filler-{index}"), "1");
    }
    let response = request.send().await.expect("sent");
    assert_eq!(response.status(), 431);
    assert!(response.bytes().await.unwrap_or_default().is_empty());
}

/// Every served path answers its own methods (never 404 or 405), and any other method with 405, an `Allow`
/// header naming exactly the served methods, and the JSON error body; an unknown path stays 404.
#[tokio::test]
async fn a_known_path_asked_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    let table = byoc_api::startup::route_table();
    let id = uuid::Uuid::new_v4();
    let paths = [
        "/api/organization/credentials".to_owned(),
        "/api/organization/credentials/twilio".to_owned(),
        "/api/organization/credentials/google_calendar".to_owned(),
        "/api/organization/credentials/stripe".to_owned(),
        "/api/organization/credentials/hubspot".to_owned(),
        format!("/api/organization/credentials/{id}"),
        format!("/api/organization/credentials/{id}/verify"),
        "/api/organization/audit".to_owned(),
        "/api/sms/test".to_owned(),
        "/api/leads".to_owned(),
        "/api/calendar/availability".to_owned(),
        "/api/calendar/bookings".to_owned(),
        "/api/calendar/bookings/0123456789abcdefghijklmnopqrstuv".to_owned(),
        "/api/auth/google/start".to_owned(),
        "/api/auth/google/callback".to_owned(),
        "/api/webhooks/twilio/status".to_owned(),
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/metrics".to_owned(),
        "/openapi.json".to_owned(),
        "/dashboard/settings".to_owned(),
        "/dashboard/session".to_owned(),
        "/dashboard/signout".to_owned(),
        "/dashboard/assets/settings.css".to_owned(),
        "/dashboard/assets/settings.js".to_owned(),
    ];
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ];
    for path in &paths {
        let served = table.methods_at(path);
        assert!(!served.is_empty(), "{path} is not in the route table");
        let mut allow = served.iter().map(|m| m.as_str()).collect::<Vec<_>>();
        if allow.contains(&"GET") {
            allow.push("HEAD");
            allow.sort_unstable();
        }
        for method in &methods {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            if served.iter().any(|m| m.as_str() == method.as_str()) {
                assert!(
                    status != 404 && status != 405,
                    "{method} {path} is in the table but answered {status}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path}");
                let header = response
                    .headers()
                    .get("allow")
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                assert_eq!(
                    header.as_deref(),
                    Some(allow.join(", ").as_str()),
                    "{method} {path}"
                );
                assert_eq!(error_code(response).await, "method_not_allowed");
            }
        }
    }
    let response = app
        .client
        .get(app.url("/api/nothing-here"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "not_found");
}
