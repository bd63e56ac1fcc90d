//! `POST /api/leads`: the hot-lead threshold boundary (79 / 80 by default, per-organization thresholds), the
//! alert text, and field errors.

use byoc_credential_store::{HotLeadThreshold, Tenant};

use crate::helpers::error_code;
use crate::sms::{
    app_with_twilio, fake_twilio_accounts, message_sid, verified_twilio, RECIPIENT, SID_A,
};

/// The bodies of the messages the fake Twilio was asked to send.
pub async fn messages_sent(twilio: &wiremock::MockServer) -> Vec<String> {
    twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path().ends_with("/Messages.json"))
        .map(|request| String::from_utf8_lossy(&request.body).into_owned())
        .collect()
}

/// A lead named `name` scored `score`, alerts going to `RECIPIENT`.
fn lead(name: &str, score: u8) -> serde_json::Value {
    serde_json::json!({"name": name, "score": score, "notifyPhone": RECIPIENT})
}

#[tokio::test]
async fn a_score_at_the_threshold_sends_the_alert_and_one_below_does_not() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let app = app_with_twilio(&twilio, &[]).await;
    let org = app.create_org("Clinic").await;
    verified_twilio(&app, &org, SID_A).await;
    let token = app.token(org.id, org.member);

    let response = app.post_json("/api/leads", &token, &lead("Bea", 79)).await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"hot": false, "sms": null}));
    assert!(messages_sent(&twilio).await.is_empty());

    let response = app.post_json("/api/leads", &token, &lead("Ada", 80)).await;
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["hot"], true);
    assert_eq!(body["sms"]["sid"], message_sid(SID_A));
    let sent = messages_sent(&twilio).await;
    assert_eq!(sent.len(), 1);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(sent[0].as_bytes())
        .into_owned()
        .collect();
    assert!(form.contains(&(
        "Body".to_owned(),
        "🔥 Hot Lead! Ada just expressed high interest in booking.".to_owned()
    )));

    app.repository
        .set_hot_lead_threshold(
            &Tenant::user(org.id, org.owner),
            HotLeadThreshold::new(90).expect("valid"),
        )
        .await
        .expect("set threshold");
    let response = app.post_json("/api/leads", &token, &lead("Cy", 89)).await;
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["hot"], false);
    let response = app.post_json("/api/leads", &token, &lead("Di", 90)).await;
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["hot"], true);
    assert_eq!(messages_sent(&twilio).await.len(), 2);
}

#[tokio::test]
async fn bad_fields_are_named_and_a_hot_lead_without_twilio_is_409() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let app = app_with_twilio(&twilio, &[]).await;
    let org = app.create_org("Clinic").await;
    let token = app.token(org.id, org.member);
    for (body, field) in [
        (lead(" ", 90), "name"),
        (lead("Ada", 101), "score"),
        (
            serde_json::json!({"name": "Ada", "score": 90, "notifyPhone": "12"}),
            "notifyPhone",
        ),
    ] {
        let response = app.post_json("/api/leads", &token, &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let error: serde_json::Value = response.json().await.expect("json");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with(field)),
            "{error}"
        );
    }
    let response = app.post_json("/api/leads", &token, &lead("Ada", 95)).await;
    assert_eq!(error_code(response).await, "credential_not_configured");
    let response = app.post_json("/api/leads", &token, &lead("Ada", 10)).await;
    assert_eq!(
        response.status(),
        201,
        "a cold lead needs no Twilio credential"
    );
}
