//! `POST /api/webhooks/twilio/status`: Twilio's signature checked with the organization's own auth token (good,
//! bad, missing, another organization's URL), delivery status recorded with its time.

use byoc_providers::compute_signature;
use secrecy::SecretString;

use crate::helpers::{captured_logs, error_code, Store, TestApp, STORES, TWILIO_AUTH_TOKEN};
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
