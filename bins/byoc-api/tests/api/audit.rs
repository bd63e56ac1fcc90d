//! The audit log's list (pages of up to 500) and export (`GET /api/organization/audit/export`: JSON Lines of the
//! whole filtered range, streamed, owners and admins).

use byoc_credential_store::{AuditAction, NewAuditEvent, ServiceName, Tenant};

use crate::helpers::{error_code, spawn_app, TestApp};

const LIST: &str = "/api/organization/audit";
const EXPORT: &str = "/api/organization/audit/export";

/// Appends `count` events for `org` as a service, `action` for every third one and `read` otherwise.
async fn append(app: &TestApp, org: byoc_credential_store::OrgId, count: usize, action: &str) {
    let tenant = Tenant::service(org, ServiceName::parse("test").expect("name"));
    let events: Vec<NewAuditEvent> = (0..count)
        .map(|number| NewAuditEvent {
            action: AuditAction::parse(if number % 3 == 0 { action } else { "read" })
                .expect("action"),
            credential_id: None,
            credential_type: None,
            detail: serde_json::json!({ "number": number }),
        })
        .collect();
    for batch in events.chunks(500) {
        app.repository
            .append_audit_events(&tenant, batch)
            .await
            .expect("appended");
    }
}

/// The export's lines, parsed.
async fn export(app: &TestApp, query: &str, token: &str) -> Vec<serde_json::Value> {
    let response = app.get(&format!("{EXPORT}{query}"), token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok()),
        Some("application/jsonl")
    );
    let text = response.text().await.expect("body");
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// Every event through the list, 500 at a time.
async fn listed(app: &TestApp, query: &str, token: &str) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let cursor = before.map_or(String::new(), |id| format!("&before={id}"));
        let page = app
            .get_json(&format!("{LIST}?limit=500{query}{cursor}"), token)
            .await;
        let page = page.as_array().expect("a page").clone();
        before = page.last().and_then(|event| event["id"].as_i64());
        let full = page.len() == 500;
        events.extend(page);
        if !full {
            return events;
        }
    }
}

#[tokio::test]
async fn the_export_streams_the_whole_filtered_range_as_the_list_pages_it() {
    let app = spawn_app().await;
    let org = app.create_org("Clinic").await;
    let other = app.create_org("Other clinic").await;
    append(&app, org.id, 2_501, "verified").await;
    append(&app, other.id, 10, "verified").await;
    let owner = app.token(org.id, org.owner);
    let admin = app.token(org.id, org.admin);

    let exported = export(&app, "", &owner).await;
    assert_eq!(
        exported.len(),
        2_501,
        "every event of the organization, none of another's"
    );
    let ids: Vec<i64> = exported
        .iter()
        .map(|event| event["id"].as_i64().expect("id"))
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first, no duplicates"
    );
    let seqs: Vec<i64> = exported
        .iter()
        .map(|event| event["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs.first(), Some(&2_501));
    assert_eq!(seqs.last(), Some(&1));
    assert_eq!(
        exported,
        listed(&app, "", &owner).await,
        "the same entries as the list"
    );

    let filtered = export(&app, "?action=verified", &admin).await;
    assert_eq!(filtered.len(), 834);
    assert!(filtered.iter().all(|event| event["action"] == "verified"));
    assert_eq!(filtered, listed(&app, "&action=verified", &admin).await);
    assert!(export(&app, "?from=2999-01-01T00:00:00Z", &owner)
        .await
        .is_empty());

    // Members read the list but do not export; a filter that does not parse is a 422 naming it.
    let member = app.token(org.id, org.member);
    let response = app.get(EXPORT, &member).await;
    assert_eq!(response.status(), 403);
    let response = app.get(&format!("{EXPORT}?from=yesterday"), &owner).await;
    assert_eq!(response.status(), 422);
    assert_eq!(error_code(response).await, "invalid_field");
    let response = app.get(&format!("{EXPORT}?limit=10"), &owner).await;
    assert_eq!(response.status(), 400, "the export has no pages");
}

#[tokio::test]
async fn the_list_pages_up_to_500() {
    let app = spawn_app().await;
    let org = app.create_org("Clinic").await;
    append(&app, org.id, 600, "verified").await;
    let owner = app.token(org.id, org.owner);
    let page = app.get_json(&format!("{LIST}?limit=500"), &owner).await;
    assert_eq!(page.as_array().expect("a page").len(), 500);
    let response = app.get(&format!("{LIST}?limit=501"), &owner).await;
    assert_eq!(response.status(), 422);
}
