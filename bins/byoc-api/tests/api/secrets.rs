//! A full flow at debug log level: no secret appears in any response, in the captured logs, or in the
//! database outside `encrypted_data` (SQLite: anywhere in the database file).

use secrecy::ExposeSecret;

use crate::helpers::{
    captured_logs, fake_twilio, spawn_app_with, STORES, TWILIO_AUTH_TOKEN, TWILIO_BAD_SID,
    TWILIO_PHONE, TWILIO_SID,
};

const LIST: &str = "/api/organization/credentials";
const GOOGLE_CLIENT_SECRET: &str = "gcs-secret-5e4d3c2b1a09";
const GOOGLE_REFRESH_TOKEN: &str = "1//grt-secret-a1b2c3d4e5f6";

#[tokio::test]
async fn no_secret_leaves_the_service_in_clear() {
    for store in STORES {
        let twilio = fake_twilio().await;
        let app = spawn_app_with(store, &[("TWILIO_API_BASE", twilio.uri())]).await;
        let org = app.create_org("Secrets").await;
        let owner = app.token(org.id, org.owner);
        let mut responses = String::new();

        for (sid, name) in [(TWILIO_SID, "Good"), (TWILIO_BAD_SID, "Bad")] {
            let response = app
                .post_json(
                    &format!("{LIST}/twilio"),
                    &owner,
                    &serde_json::json!({"accountSid": sid, "authToken": TWILIO_AUTH_TOKEN,
                                        "phoneNumber": TWILIO_PHONE, "displayName": name}),
                )
                .await;
            assert_eq!(response.status(), 201);
            let row: serde_json::Value = response.json().await.expect("row");
            responses.push_str(&row.to_string());
            let id = row["id"].as_str().expect("id");
            let verify = app
                .post_json(
                    &format!("{LIST}/{id}/verify"),
                    &owner,
                    &serde_json::json!({}),
                )
                .await;
            assert_eq!(verify.status(), 200);
            responses.push_str(&verify.text().await.expect("text"));
        }
        let google = app
            .post_json(
                &format!("{LIST}/google_calendar"),
                &owner,
                &serde_json::json!({"clientId": "client.apps.googleusercontent.com",
                                    "clientSecret": GOOGLE_CLIENT_SECRET,
                                    "refreshToken": GOOGLE_REFRESH_TOKEN, "displayName": "Calendar"}),
            )
            .await;
        assert_eq!(google.status(), 201);
        let google: serde_json::Value = google.json().await.expect("row");
        responses.push_str(&google.to_string());
        let google_id = google["id"].as_str().expect("id").to_owned();
        let invalid = app
            .post_json(
                &format!("{LIST}/twilio"),
                &owner,
                &serde_json::json!({"accountSid": "bad", "authToken": TWILIO_AUTH_TOKEN,
                                    "phoneNumber": TWILIO_PHONE, "displayName": "Invalid"}),
            )
            .await;
        assert_eq!(invalid.status(), 422);
        responses.push_str(&invalid.text().await.expect("text"));
        responses.push_str(&app.get(LIST, &owner).await.text().await.expect("text"));
        responses.push_str(
            &app.delete(&format!("{LIST}/{google_id}"), &owner)
                .await
                .text()
                .await
                .expect("text"),
        );
        responses.push_str(
            &app.get("/api/organization/audit", &owner)
                .await
                .text()
                .await
                .expect("text"),
        );

        let logs = captured_logs();
        assert!(logs.contains("DEBUG"), "logs are captured at debug level");
        let database = app.database_text().await;
        assert!(
            database.contains("Calendar"),
            "{store:?}: the dump holds the rows"
        );
        let secrets = [
            TWILIO_AUTH_TOKEN,
            GOOGLE_CLIENT_SECRET,
            GOOGLE_REFRESH_TOKEN,
            app.jwt_secret.expose_secret(),
            app.master_key_hex.expose_secret(),
        ];
        for secret in secrets {
            assert!(
                !responses.contains(secret),
                "{store:?}: a response holds a secret"
            );
            assert!(!logs.contains(secret), "{store:?}: the logs hold a secret");
            assert!(
                !database.contains(secret),
                "{store:?}: the database holds a secret outside encrypted_data"
            );
        }
    }
}
