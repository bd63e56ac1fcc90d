//! `POST /api/webhooks/twilio/status`: Twilio's signature checked with the organization's own auth token (good,
//! bad, missing, another organization's URL), delivery status recorded with its time.

use byoc_providers::compute_signature;
use secrecy::SecretString;

use crate::helpers::{
    captured_logs, error_code, Store, TestApp, TestOrg, STORES, TWILIO_AUTH_TOKEN,
};
use crate::sms::{
    app_with_twilio_on, fake_twilio_accounts, message_sid, send_test, verified_twilio, RECIPIENT,
    SID_A, SID_B,
};

fn callback_params(message: &str, account: &str, status: &str) -> Vec<(String, String)> {
    [
        ("MessageSid", message),
        ("MessageStatus", status),
        ("AccountSid", account),
        ("To", RECIPIENT),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
    .collect()
}

async fn post_callback(
    app: &TestApp,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> reqwest::Response {
    let mut request = app.client.post(url).form(params);
    if let Some(signature) = signature {
        request = request.header("X-Twilio-Signature", signature);
    }
    request.send().await.expect("request sent")
}

#[tokio::test]
async fn only_a_callback_signed_with_the_organizations_auth_token_is_recorded() {
    for store in STORES {
        signed_callbacks_on(store).await;
    }
}

async fn signed_callbacks_on(store: Store) {
    let twilio = fake_twilio_accounts(&[SID_A, SID_B]).await;
    let app = app_with_twilio_on(store, &twilio, &[]).await;
    let org = app.create_org("Clinic").await;
    let other = app.create_org("Other clinic").await;
    verified_twilio(&app, &org, SID_A).await;
    verified_twilio(&app, &other, SID_B).await;
    assert_eq!(send_test(&app, &org, RECIPIENT).await.status(), 200);

    let url = format!("{}/api/webhooks/twilio/status?org={}", app.address, org.id);
    let token = SecretString::from(TWILIO_AUTH_TOKEN);
    let sent = callback_params(&message_sid(SID_A), SID_A, "sent");
    let good = compute_signature(&token, &url, &sent);

    let forged = compute_signature(&SecretString::from("not-the-token"), &url, &sent);
    let response = post_callback(&app, &url, &sent, Some(&forged)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "invalid_signature");
    let response = post_callback(&app, &url, &sent, None).await;
    assert_eq!(response.status(), 403);
    let mut tampered = sent.clone();
    tampered[1].1 = "delivered".to_owned();
    assert_eq!(
        post_callback(&app, &url, &tampered, Some(&good))
            .await
            .status(),
        403
    );
    let other_url = format!(
        "{}/api/webhooks/twilio/status?org={}",
        app.address, other.id
    );
    assert_eq!(
        post_callback(&app, &other_url, &sent, Some(&good))
            .await
            .status(),
        403,
        "another organization's URL is checked with that organization's token"
    );
    let no_org = format!("{}/api/webhooks/twilio/status", app.address);
    assert_eq!(
        post_callback(&app, &no_org, &sent, Some(&good))
            .await
            .status(),
        403
    );

    let response = post_callback(&app, &url, &sent, Some(&good)).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["recorded"], true);

    let delivered = callback_params(&message_sid(SID_A), SID_A, "delivered");
    let signature = compute_signature(&token, &url, &delivered);
    let response = post_callback(&app, &url, &delivered, Some(&signature)).await;
    assert_eq!(response.status(), 200);
    let logs = captured_logs();
    assert!(
        logs.lines().any(|line| line.contains("SMS status recorded")
            && line.contains(&message_sid(SID_A))
            && line.contains("delivery_ms")),
        "the delivery time is logged"
    );

    let unknown = callback_params("SM00000000000000000000000000000000", SID_A, "delivered");
    let signature = compute_signature(&token, &url, &unknown);
    let response = post_callback(&app, &url, &unknown, Some(&signature)).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["recorded"], false);
}

/// The organization's audit events (the API writes queued events before listing them).
async fn audit_actions(app: &TestApp, org: &TestOrg) -> Vec<String> {
    let events = app
        .get_json(
            "/api/organization/audit?limit=200",
            &app.token(org.id, org.member),
        )
        .await;
    events
        .as_array()
        .expect("array")
        .iter()
        .map(|event| event["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A counter's value in `/metrics` (0 when absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn unsigned_forged_or_foreign_callbacks_decrypt_nothing_and_write_no_audit_event() {
    for store in STORES {
        refused_callbacks_leave_no_trace_on(store).await;
    }
}

async fn refused_callbacks_leave_no_trace_on(store: Store) {
    let twilio = fake_twilio_accounts(&[SID_A, SID_B]).await;
    let app = app_with_twilio_on(store, &twilio, &[]).await;
    let org = app.create_org("Clinic").await;
    verified_twilio(&app, &org, SID_A).await;
    assert_eq!(send_test(&app, &org, RECIPIENT).await.status(), 200);
    let url = format!("{}/api/webhooks/twilio/status?org={}", app.address, org.id);
    let token = SecretString::from(TWILIO_AUTH_TOKEN);
    let events_before = audit_actions(&app, &org).await;
    let metrics_before = app.metrics_text().await;
    let lookups = |metrics: &str| {
        counter(
            metrics,
            r#"byoc_credential_cache_lookups_total{result="hit"}"#,
        ) + counter(
            metrics,
            r#"byoc_credential_cache_lookups_total{result="miss"}"#,
        )
    };

    // Refused before anything is decrypted: no signature, or another account than the stored one.
    let delivered = callback_params(&message_sid(SID_A), SID_A, "delivered");
    for _ in 0..20 {
        let response = post_callback(&app, &url, &delivered, None).await;
        assert_eq!(response.status(), 403);
        assert_eq!(error_code(response).await, "invalid_signature");
    }
    let foreign = callback_params(&message_sid(SID_A), SID_B, "delivered");
    let foreign_signature = compute_signature(&token, &url, &foreign);
    for _ in 0..20 {
        let response = post_callback(&app, &url, &foreign, Some(&foreign_signature)).await;
        assert_eq!(response.status(), 403);
    }
    let metrics = app.metrics_text().await;
    assert_eq!(
        lookups(&metrics),
        lookups(&metrics_before),
        "no credential was looked up or decrypted"
    );

    // Decrypted to check the signature, but a bad one is not audited.
    let forged = compute_signature(&SecretString::from("not-the-token"), &url, &delivered);
    for _ in 0..20 {
        let response = post_callback(&app, &url, &delivered, Some(&forged)).await;
        assert_eq!(response.status(), 403);
    }
    assert_eq!(
        audit_actions(&app, &org).await,
        events_before,
        "60 refused callbacks added no audit event"
    );
    let metrics = app.metrics_text().await;
    for (reason, count) in [
        ("missing_signature", 20.0),
        ("account_mismatch", 20.0),
        ("bad_signature", 20.0),
        ("rate_limited", 0.0),
    ] {
        let series = format!(r#"byoc_twilio_webhook_refusals_total{{reason="{reason}"}}"#);
        assert_eq!(counter(&metrics, &series), count, "{series}");
        assert!(metrics.contains(&series), "{series} is always exposed");
    }

    // The genuine callback is recorded and audited once.
    let signature = compute_signature(&token, &url, &delivered);
    let response = post_callback(&app, &url, &delivered, Some(&signature)).await;
    assert_eq!(response.status(), 200);
    let events_after = audit_actions(&app, &org).await;
    assert_eq!(events_after.len(), events_before.len() + 1);
    assert_eq!(events_after[0], "read");

    // A replayed `sent` after `delivered` does not set the status back.
    let sent = callback_params(&message_sid(SID_A), SID_A, "sent");
    let signature = compute_signature(&token, &url, &sent);
    let response = post_callback(&app, &url, &sent, Some(&signature)).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["recorded"], false, "{store:?}");
    let tenant = byoc_credential_store::Tenant::service(
        org.id,
        byoc_credential_store::ServiceName::parse("twilio-webhook").expect("name"),
    );
    let again = byoc_credential_store::SmsStatusUpdate {
        provider_message_sid: byoc_credential_store::ProviderMessageSid::parse(&message_sid(SID_A))
            .expect("sid"),
        status: byoc_credential_store::DeliveryStatus::parse("queued").expect("status"),
        error_code: None,
        at: chrono::Utc::now(),
    };
    let stored = app
        .repository
        .update_sms_status(&tenant, &again)
        .await
        .expect("message");
    assert_eq!(stored.status, "delivered", "{store:?}");
}

#[tokio::test]
async fn callbacks_are_rate_limited_per_organization_before_any_lookup() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let app = app_with_twilio_on(
        Store::Sqlite,
        &twilio,
        &[("BYOC_TWILIO_WEBHOOK_PER_MINUTE", "3".to_owned())],
    )
    .await;
    let org = app.create_org("Clinic").await;
    let other = app.create_org("Other").await;
    verified_twilio(&app, &org, SID_A).await;
    let url = format!("{}/api/webhooks/twilio/status?org={}", app.address, org.id);
    let params = callback_params(&message_sid(SID_A), SID_A, "sent");
    for _ in 0..3 {
        let response = post_callback(&app, &url, &params, Some("Zm9yZ2Vk")).await;
        assert_eq!(response.status(), 403);
    }
    let limited = post_callback(&app, &url, &params, Some("Zm9yZ2Vk")).await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(limited).await, "rate_limited");
    let other_url = format!(
        "{}/api/webhooks/twilio/status?org={}",
        app.address, other.id
    );
    assert_eq!(
        post_callback(&app, &other_url, &params, Some("Zm9yZ2Vk"))
            .await
            .status(),
        403,
        "another organization has its own budget"
    );
    let metrics = app.metrics_text().await;
    assert_eq!(
        counter(
            &metrics,
            r#"byoc_twilio_webhook_refusals_total{reason="rate_limited"}"#
        ),
        1.0
    );
}
