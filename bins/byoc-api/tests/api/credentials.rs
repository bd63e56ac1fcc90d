//! The credential endpoints: success paths on both stores, the role table, other organizations' ids, and
//! the verification outcomes recorded from a fake Twilio.

use byoc_credential_store::{Role, UserId};

use crate::helpers::{
    error_code, fake_twilio, spawn_app_with, Store, TestApp, TestOrg, STORES, TWILIO_BAD_SID,
    TWILIO_RATE_LIMITED_SID, TWILIO_SID,
};

const LIST: &str = "/api/organization/credentials";
const AUDIT: &str = "/api/organization/audit";
const AUDIT_VERIFY: &str = "/api/organization/audit/verify";

async fn app_with_fake_twilio(store: Store) -> (TestApp, wiremock::MockServer) {
    let twilio = fake_twilio().await;
    let app = spawn_app_with(store, &[("TWILIO_API_BASE", twilio.uri())]).await;
    (app, twilio)
}

/// `POST {LIST}/{id}/verify` as `token`.
async fn post_verify(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.post_json(
        &format!("{LIST}/{id}/verify"),
        token,
        &serde_json::json!({}),
    )
    .await
}

/// The JSON body of `GET path` as `token`.
async fn get_json(app: &TestApp, path: &str, token: &str) -> serde_json::Value {
    app.get(path, token).await.json().await.expect("json")
}

/// The id of a new Twilio credential added as `token`.
async fn add_twilio_id(app: &TestApp, token: &str, account_sid: &str, name: &str) -> String {
    app.add_twilio(token, account_sid, name).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// The row of credential `id` in the list `token` sees.
async fn listed_row(app: &TestApp, token: &str, id: &str) -> serde_json::Value {
    find(&get_json(app, LIST, token).await, id)
}

#[tokio::test]
async fn add_list_verify_deactivate_purge_and_audit_on_both_stores() {
    for store in STORES {
        let (app, _twilio) = app_with_fake_twilio(store).await;
        let org = app.create_org("Flow Clinic").await;
        let owner = app.token(org.id, org.owner);
        let admin = app.token(org.id, org.admin);

        let row = app.add_twilio(&admin, TWILIO_SID, "Front desk").await;
        let keys: Vec<&str> = row
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "id",
            "credential_type",
            "display_name",
            "is_active",
            "verification_status",
            "last_verified_at",
            "verification_error",
            "created_at",
            "created_by",
            "encryption_key_version",
        ] {
            assert!(keys.contains(&key), "{store:?}: row has {key}: {row}");
        }
        assert_eq!(row["credential_type"], "twilio");
        assert_eq!(row["display_name"], "Front desk");
        assert_eq!(row["is_active"], true);
        assert_eq!(row["verification_status"], "pending");
        assert_eq!(row["created_by"], org.admin.as_uuid().to_string());
        assert_eq!(row["encryption_key_version"], 1);
        assert!(
            row["public_hint"]
                .as_str()
                .is_some_and(|hint| hint.contains("cdef")),
            "{row}"
        );
        let id = row["id"].as_str().expect("id").to_owned();

        let google = app
            .post_json(
                "/api/organization/credentials/google_calendar",
                &owner,
                &serde_json::json!({
                    "clientId": "client-1.apps.googleusercontent.com",
                    "clientSecret": "google-client-secret-xyz",
                    "refreshToken": "1//google-refresh-token-xyz",
                    "calendarId": "clinic@example.com",
                    "displayName": "Clinic calendar",
                }),
            )
            .await;
        assert_eq!(google.status(), 201, "{store:?}");
        let google: serde_json::Value = google.json().await.expect("row");
        assert_eq!(google["credential_type"], "google_calendar");
        assert_eq!(google["verification_status"], "pending");

        let list: serde_json::Value = get_json(&app, LIST, &app.token(org.id, org.member)).await;
        assert_eq!(list.as_array().map(Vec::len), Some(2), "{store:?}: {list}");

        let verify = post_verify(&app, &admin, &id).await;
        assert_eq!(verify.status(), 200, "{store:?}");
        let verify: serde_json::Value = verify.json().await.expect("json");
        assert_eq!(
            verify,
            serde_json::json!({"verified": true, "verification_status": "verified", "verification_error": null})
        );
        let listed = listed_row(&app, &owner, &id).await;
        assert_eq!(listed["verification_status"], "verified");
        assert!(listed["last_verified_at"].is_string());

        let deactivate = app.delete(&format!("{LIST}/{id}"), &admin).await;
        assert_eq!(deactivate.status(), 200);
        assert_eq!(
            deactivate.json::<serde_json::Value>().await.expect("json"),
            serde_json::json!({"success": true})
        );
        let listed = listed_row(&app, &owner, &id).await;
        assert_eq!(listed["is_active"], false);
        let reverify = post_verify(&app, &admin, &id).await;
        assert_eq!(
            reverify.status(),
            409,
            "{store:?}: a deactivated credential is not used again"
        );
        assert_eq!(error_code(reverify).await, "credential_inactive");

        let purge = app.delete(&format!("{LIST}/{id}?purge=true"), &owner).await;
        assert_eq!(purge.status(), 200);
        assert_eq!(
            purge.json::<serde_json::Value>().await.expect("json"),
            serde_json::json!({"success": true})
        );
        let list: serde_json::Value = get_json(&app, LIST, &owner).await;
        assert!(
            list.as_array()
                .expect("array")
                .iter()
                .all(|row| row["id"] != id.as_str()),
            "purged"
        );

        let audit: serde_json::Value = get_json(&app, AUDIT, &app.token(org.id, org.member)).await;
        let actions: Vec<&str> = audit
            .as_array()
            .expect("array")
            .iter()
            .filter(|entry| entry["credential_id"] == id.as_str())
            .map(|entry| entry["action"].as_str().expect("action"))
            .collect();
        assert_eq!(
            actions,
            ["purged", "deactivated", "verified", "created"],
            "{store:?}: newest first"
        );
        let first = &audit[0];
        for key in [
            "id",
            "at",
            "actor",
            "action",
            "credential_id",
            "credential_type",
            "detail",
        ] {
            assert!(first.get(key).is_some(), "audit entry has {key}: {first}");
        }
        assert_eq!(first["actor"], format!("user:{}", org.owner.as_uuid()));

        let page_one: serde_json::Value = get_json(&app, &format!("{AUDIT}?limit=2"), &owner).await;
        assert_eq!(page_one.as_array().map(Vec::len), Some(2));
        let cursor = page_one[1]["id"].as_i64().expect("id");
        let page_two: serde_json::Value =
            get_json(&app, &format!("{AUDIT}?limit=2&before={cursor}"), &owner).await;
        let page_two_ids: Vec<i64> = page_two
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect();
        assert!(
            !page_two_ids.is_empty() && page_two_ids.iter().all(|entry| *entry < cursor),
            "{page_two}"
        );
    }
}

#[tokio::test]
async fn audit_list_filters_by_action_credential_actor_and_time() {
    for store in STORES {
        let (app, _twilio) = app_with_fake_twilio(store).await;
        let org = app.create_org("Filtered").await;
        let owner = app.token(org.id, org.owner);
        let admin = app.token(org.id, org.admin);
        let first = add_twilio_id(&app, &owner, TWILIO_SID, "First").await;
        let second = add_twilio_id(&app, &admin, TWILIO_SID, "Second").await;
        assert_eq!(post_verify(&app, &owner, &first).await.status(), 200);

        let ids = |list: &serde_json::Value| -> Vec<i64> {
            list.as_array()
                .expect("array")
                .iter()
                .map(|entry| entry["id"].as_i64().expect("id"))
                .collect()
        };
        let every = get_json(&app, AUDIT, &owner).await;
        let created = get_json(&app, &format!("{AUDIT}?action=created"), &owner).await;
        assert_eq!(
            created.as_array().map(Vec::len),
            Some(2),
            "{store:?} {created}"
        );
        let about_first = get_json(&app, &format!("{AUDIT}?credentialId={first}"), &owner).await;
        assert!(
            about_first
                .as_array()
                .expect("array")
                .iter()
                .all(|entry| entry["credential_id"] == first.as_str()),
            "{store:?} {about_first}"
        );
        assert!(
            ids(&about_first).len() >= 2,
            "created and verified: {about_first}"
        );
        let actor = format!("user:{}", org.admin.as_uuid());
        let by_admin = get_json(&app, &format!("{AUDIT}?actor={actor}"), &owner).await;
        assert_eq!(
            by_admin.as_array().map(Vec::len),
            Some(1),
            "{store:?} {by_admin}"
        );
        assert_eq!(by_admin[0]["credential_id"], second.as_str());

        // A window from the oldest entry's time (inclusive) to the newest's (exclusive), in RFC 3339.
        let entries = every.as_array().expect("array");
        let newest = entries[0]["at"].as_str().expect("at");
        let oldest = entries[entries.len() - 1]["at"].as_str().expect("at");
        let window = get_json(
            &app,
            &format!(
                "{AUDIT}?from={}&to={}",
                urlencode(oldest),
                urlencode(newest)
            ),
            &owner,
        )
        .await;
        let expected: Vec<i64> = entries
            .iter()
            .filter(|entry| entry["at"].as_str() != Some(newest))
            .map(|entry| entry["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(ids(&window), expected, "{store:?}");

        for (query, field) in [
            ("from=yesterday", "from"),
            ("to=2026-13-01T00:00:00Z", "to"),
            ("credentialId=nope", "credentialId"),
            ("actor=root", "actor"),
            ("action=Not%20An%20Action", "action"),
        ] {
            let response = app.get(&format!("{AUDIT}?{query}"), &owner).await;
            assert_eq!(response.status(), 422, "{store:?} {query}");
            let body: serde_json::Value = response.json().await.expect("json");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(field)),
                "{store:?} {query}: {body}"
            );
        }
    }
}

/// Percent-encodes the characters of an RFC 3339 time that a query string would change (`+`, `:`).
fn urlencode(text: &str) -> String {
    text.replace('%', "%25")
        .replace('+', "%2B")
        .replace(':', "%3A")
}

#[tokio::test]
async fn audit_verify_reports_the_chain_and_its_head() {
    for store in STORES {
        let (app, _twilio) = app_with_fake_twilio(store).await;
        let org = app.create_org("Verified").await;
        let member = app.token(org.id, org.member);
        let empty = get_json(&app, AUDIT_VERIFY, &member).await;
        assert_eq!(
            empty,
            serde_json::json!({"intact": true, "events": 0, "headSeq": null, "headHash": null}),
            "{store:?}"
        );

        let owner = app.token(org.id, org.owner);
        add_twilio_id(&app, &owner, TWILIO_SID, "One").await;
        add_twilio_id(&app, &owner, TWILIO_SID, "Two").await;
        let audit = get_json(&app, AUDIT, &member).await;
        let newest = audit.as_array().expect("array").len() as u64;
        let verified = get_json(&app, AUDIT_VERIFY, &member).await;
        assert_eq!(verified["intact"], true, "{store:?} {verified}");
        assert_eq!(verified["events"], newest, "{store:?} {verified}");
        assert_eq!(verified["headSeq"], newest, "{store:?} {verified}");
        let head_hash = verified["headHash"].as_str().expect("headHash");
        assert!(
            head_hash.len() == 64
                && head_hash
                    .chars()
                    .all(|digit| matches!(digit, '0'..='9' | 'a'..='f')),
            "{store:?} {head_hash}"
        );
        assert!(verified.get("firstBrokenSeq").is_none(), "{verified}");
        assert_eq!(
            app.get(AUDIT_VERIFY, &app.token(org.id, UserId::new_random()))
                .await
                .status(),
            403,
            "{store:?} a non-member"
        );

        if store == Store::Postgres {
            // The database's owner (here a superuser) changes the first event behind the chain's back.
            app.superuser_execute(
                "UPDATE credential_audit_log SET actor = 'service:nobody' WHERE org_id = $1 AND seq = 1",
                org.id,
            )
            .await;
            let broken = get_json(&app, AUDIT_VERIFY, &member).await;
            assert_eq!(broken["intact"], false, "{broken}");
            assert_eq!(broken["events"], 0, "{broken}");
            assert_eq!(broken["firstBrokenSeq"], 1, "{broken}");
            assert_eq!(broken["headSeq"], newest, "the head as stored: {broken}");
            assert_eq!(broken["headHash"], head_hash, "{broken}");
        }
    }
}

fn find(list: &serde_json::Value, id: &str) -> serde_json::Value {
    list.as_array()
        .expect("array")
        .iter()
        .find(|row| row["id"] == id)
        .cloned()
        .expect("the credential is listed")
}

#[tokio::test]
async fn a_refused_credential_is_recorded_as_failed() {
    let (app, _twilio) = app_with_fake_twilio(Store::Sqlite).await;
    let org = app.create_org("Refused").await;
    let admin = app.token(org.id, org.admin);
    let id = add_twilio_id(&app, &admin, TWILIO_BAD_SID, "Wrong token").await;
    let response = post_verify(&app, &admin, &id).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["verified"], false);
    assert_eq!(body["verification_status"], "failed");
    let error = body["verification_error"].as_str().expect("a reason");
    assert!(error.contains("20003"), "{error}");
    let audit: serde_json::Value = get_json(&app, AUDIT, &admin).await;
    assert_eq!(audit[0]["action"], "verification_failed");
}

#[tokio::test]
async fn an_unreachable_provider_answers_424_and_records_nothing() {
    let app = spawn_app_with(
        Store::Sqlite,
        &[("TWILIO_API_BASE", "http://127.0.0.1:9".to_owned())],
    )
    .await;
    let org = app.create_org("Offline").await;
    let admin = app.token(org.id, org.admin);
    let id = add_twilio_id(&app, &admin, TWILIO_SID, "Offline").await;
    let response = post_verify(&app, &admin, &id).await;
    assert_eq!(response.status(), 424);
    assert_eq!(error_code(response).await, "provider_unavailable");
    let listed = listed_row(&app, &admin, &id).await;
    assert_eq!(listed["verification_status"], "pending");
}

#[tokio::test]
async fn a_provider_rate_limit_answers_429_with_retry_after() {
    let (app, _twilio) = app_with_fake_twilio(Store::Sqlite).await;
    let org = app.create_org("Busy").await;
    let admin = app.token(org.id, org.admin);
    let id = add_twilio_id(&app, &admin, TWILIO_RATE_LIMITED_SID, "Busy").await;
    let response = post_verify(&app, &admin, &id).await;
    assert_eq!(response.status(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("120")
    );
    assert_eq!(error_code(response).await, "rate_limited");
    let listed = listed_row(&app, &admin, &id).await;
    assert_eq!(
        listed["verification_status"], "pending",
        "a rate limit says nothing about the credential"
    );
}

/// Every endpoint, as each role: the status the contract's role table gives.
#[tokio::test]
async fn role_table_for_every_endpoint() {
    for store in STORES {
        let (app, _twilio) = app_with_fake_twilio(store).await;
        let org = app.create_org("Roles").await;
        for (role, can_manage, can_purge) in [
            (Role::Member, false, false),
            (Role::Admin, true, false),
            (Role::Owner, true, true),
        ] {
            let token = app.token(org.id, org.user(role));
            let setup = app
                .add_twilio(
                    &app.token(org.id, org.owner),
                    TWILIO_SID,
                    &format!("for {role}"),
                )
                .await;
            let id = setup["id"].as_str().expect("id").to_owned();
            let expect = |allowed: bool, success: u16| if allowed { success } else { 403 };

            assert_eq!(
                app.get(LIST, &token).await.status(),
                200,
                "{store:?} {role} list"
            );
            assert_eq!(
                app.get(AUDIT, &token).await.status(),
                200,
                "{store:?} {role} audit"
            );
            assert_eq!(
                app.get(AUDIT_VERIFY, &token).await.status(),
                200,
                "{store:?} {role} audit verify"
            );
            let name = format!("added by {role}");
            for (kind, label, body) in [
                ("twilio", "twilio", twilio_body(&name)),
                ("google_calendar", "google", google_body(&name)),
                ("stripe", "stripe", stripe_body(&name)),
                ("hubspot", "hubspot", hubspot_body(&name)),
            ] {
                let added = app
                    .post_json(&format!("{LIST}/{kind}"), &token, &body)
                    .await;
                assert_eq!(
                    added.status(),
                    expect(can_manage, 201),
                    "{store:?} {role} add {label}"
                );
            }
            let verified = post_verify(&app, &token, &id).await;
            assert_eq!(
                verified.status(),
                expect(can_manage, 200),
                "{store:?} {role} verify"
            );
            let purged = app.delete(&format!("{LIST}/{id}?purge=true"), &token).await;
            assert_eq!(
                purged.status(),
                expect(can_purge, 200),
                "{store:?} {role} purge"
            );
            if !can_purge {
                assert_eq!(error_code(purged).await, "insufficient_role");
                let deactivated = app.delete(&format!("{LIST}/{id}"), &token).await;
                assert_eq!(
                    deactivated.status(),
                    expect(can_manage, 200),
                    "{store:?} {role} deactivate"
                );
            }
        }
    }
}

fn twilio_body(display_name: &str) -> serde_json::Value {
    serde_json::json!({
        "accountSid": TWILIO_SID,
        "authToken": crate::helpers::TWILIO_AUTH_TOKEN,
        "phoneNumber": crate::helpers::TWILIO_PHONE,
        "displayName": display_name,
    })
}

fn google_body(display_name: &str) -> serde_json::Value {
    serde_json::json!({
        "clientId": "client.apps.googleusercontent.com",
        "clientSecret": "google-secret",
        "refreshToken": "1//refresh",
        "displayName": display_name,
    })
}

fn stripe_body(display_name: &str) -> serde_json::Value {
    serde_json::json!({"secretKey": "sk_test_51Habcdefghijkl1234", "displayName": display_name})
}

fn hubspot_body(display_name: &str) -> serde_json::Value {
    serde_json::json!({
        "accessToken": "pat-na1-11111111-2222-3333-4444-555555555555",
        "displayName": display_name,
    })
}

/// Another organization's credential is answered exactly like a missing one, for every verb, and stays as
/// it was.
#[tokio::test]
async fn other_organizations_ids_are_not_found_and_unchanged() {
    for store in STORES {
        let (app, _twilio) = app_with_fake_twilio(store).await;
        let victim: TestOrg = app.create_org("Victim").await;
        let attacker: TestOrg = app.create_org("Attacker").await;
        let victim_owner = app.token(victim.id, victim.owner);
        let id = add_twilio_id(&app, &victim_owner, TWILIO_SID, "Victim's").await;
        let missing = uuid::Uuid::new_v4();
        let attacker_owner = app.token(attacker.id, attacker.owner);
        for target in [id.clone(), missing.to_string()] {
            let verify = post_verify(&app, &attacker_owner, &target).await;
            assert_eq!(verify.status(), 404, "{store:?} verify");
            let verify_body: serde_json::Value = verify.json().await.expect("json");
            let deactivate = app
                .delete(&format!("{LIST}/{target}"), &attacker_owner)
                .await;
            assert_eq!(deactivate.status(), 404, "{store:?} deactivate");
            let deactivate_body: serde_json::Value = deactivate.json().await.expect("json");
            let purge = app
                .delete(&format!("{LIST}/{target}?purge=true"), &attacker_owner)
                .await;
            assert_eq!(purge.status(), 404, "{store:?} purge");
            let purge_body: serde_json::Value = purge.json().await.expect("json");
            if target == id {
                let missing_verify: serde_json::Value =
                    post_verify(&app, &attacker_owner, &missing.to_string())
                        .await
                        .json()
                        .await
                        .expect("json");
                assert_eq!(
                    verify_body, missing_verify,
                    "indistinguishable from a missing id"
                );
                assert_eq!(deactivate_body, purge_body);
            }
        }
        let attacker_list: serde_json::Value = get_json(&app, LIST, &attacker_owner).await;
        assert_eq!(attacker_list, serde_json::json!([]));
        let attacker_audit: serde_json::Value = get_json(&app, AUDIT, &attacker_owner).await;
        assert_eq!(attacker_audit, serde_json::json!([]));

        let row = listed_row(&app, &victim_owner, &id).await;
        assert_eq!(row["is_active"], true, "{store:?}");
        assert_eq!(row["verification_status"], "pending", "{store:?}");
        let audit: serde_json::Value = get_json(&app, AUDIT, &victim_owner).await;
        assert_eq!(
            audit.as_array().map(Vec::len),
            Some(1),
            "{store:?}: only the creation: {audit}"
        );
    }
}

#[tokio::test]
async fn verify_asks_the_provider_once_and_is_rate_limited_per_organization() {
    use crate::sms::{app_with_twilio, fake_twilio_accounts, SID_A, SID_B};
    let twilio = fake_twilio_accounts(&[SID_A, SID_B]).await;
    let app = app_with_twilio(&twilio, &[("BYOC_VERIFY_PER_MINUTE", "3".to_owned())]).await;
    let org = app.create_org("Verify Clinic").await;
    let other = app.create_org("Other Clinic").await;
    let token = app.token(org.id, org.admin);
    let row = app.add_twilio(&token, SID_A, "Front desk").await;
    let verify_path = format!(
        "/api/organization/credentials/{}/verify",
        row["id"].as_str().expect("id")
    );
    let provider_requests = || async {
        twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|request| request.url.path().starts_with("/2010-04-01/"))
            .count()
    };

    for attempt in 1..=3 {
        let response = app
            .post_json(&verify_path, &token, &serde_json::json!({}))
            .await;
        assert_eq!(response.status(), 200, "verify {attempt}");
        assert_eq!(
            provider_requests().await,
            attempt,
            "one provider request per verification"
        );
    }
    let limited = app
        .post_json(&verify_path, &token, &serde_json::json!({}))
        .await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(limited).await, "rate_limited");
    assert_eq!(
        provider_requests().await,
        3,
        "the limited one never reached Twilio"
    );

    let other_token = app.token(other.id, other.admin);
    let other_row = app.add_twilio(&other_token, SID_B, "Front desk").await;
    let response = app
        .post_json(
            &format!(
                "/api/organization/credentials/{}/verify",
                other_row["id"].as_str().expect("id")
            ),
            &other_token,
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(
        response.status(),
        200,
        "another organization has its own budget"
    );
}
