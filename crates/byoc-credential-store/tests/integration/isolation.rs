//! Row-level security, straight in SQL as `byoc_app` (never as the superuser, who bypasses RLS), plus the
//! role's privileges, pooled-connection hygiene and concurrent migrations.

use std::str::FromStr;

use byoc_credential_store::test_support::{fresh_postgres, TestPostgres};
use byoc_credential_store::{
    AuditAction, AuditPage, CredentialRepository, CredentialType, DeliveryStatus, LoginLinkHash,
    MaskedPhone, NewAuditEvent, NewDashboardSession, NewLoginLink, NewOAuthState, NewSmsMessage,
    OAuthStateId, OrgId, PostgresStore, ProviderMessageSid, Purpose, Role, SessionIdHash,
    StoreError, Tenant, UserId,
};
use chrono::{NaiveDate, Utc};
use futures::future::join_all;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, PgConnection, Row};
use uuid::Uuid;

use crate::fixtures::{credential, envelope, org, OrgFixture};

/// Every table that holds tenant rows (organizations is keyed by `id`, the rest by `org_id`).
const TENANT_TABLES: &[&str] = &[
    "organizations",
    "organization_members",
    "organization_api_credentials",
    "credential_audit_log",
    "credential_audit_chain_heads",
    "oauth_states",
    "sms_messages",
    "provider_usage_daily",
    "dashboard_sessions",
    "credential_reverify_schedule",
    "credential_events",
    "dashboard_login_links",
    "audit_digests",
];

/// The tenant tables byoc_app may read at all (the chain heads are for the chain trigger only; settings-page
/// sessions are read only through `byoc_touch_dashboard_session`, login links only through their functions;
/// the re-verification schedule and the event outbox only through the service's functions of migration 0004, the
/// audit digests only through those of migration 0006).
fn app_readable_tables() -> impl Iterator<Item = &'static str> {
    TENANT_TABLES.iter().copied().filter(|table| {
        !matches!(
            *table,
            "credential_audit_chain_heads"
                | "dashboard_sessions"
                | "credential_reverify_schedule"
                | "credential_events"
                | "dashboard_login_links"
                | "audit_digests"
        )
    })
}

/// The column that names a table's organization.
fn org_column(table: &str) -> &'static str {
    if table == "organizations" {
        "id"
    } else {
        "org_id"
    }
}

struct Seeded {
    database: TestPostgres,
    a: OrgFixture,
    b: OrgFixture,
}

/// Two organizations with a credential, an audit event, an SMS message, a usage counter and a settings-page
/// session each.
async fn seeded() -> Seeded {
    let database = fresh_postgres().await;
    let store = database.store();
    let a = org(database.operator(), "Clinic A").await;
    let b = org(database.operator(), "Clinic B").await;
    for (fixture, name) in [(&a, "A"), (&b, "B")] {
        let new = credential(CredentialType::Twilio, &format!("Twilio {name}"));
        store.insert_credential(&fixture.owner, &new).await.unwrap();
        store
            .append_audit_event(
                &fixture.owner,
                &NewAuditEvent {
                    action: AuditAction::parse("created").unwrap(),
                    credential_id: Some(new.id),
                    credential_type: Some(CredentialType::Twilio),
                    detail: serde_json::json!({}),
                },
            )
            .await
            .unwrap();
        store
            .insert_sms_message(
                &fixture.member,
                &NewSmsMessage {
                    credential_id: Some(new.id),
                    provider_message_sid: ProviderMessageSid::parse(&format!("SM{name}")).unwrap(),
                    to_masked: MaskedPhone::parse("+1******0000").unwrap(),
                    purpose: Purpose::parse("sms:test").unwrap(),
                    status: DeliveryStatus::parse("queued").unwrap(),
                    sent_at: Utc::now(),
                },
            )
            .await
            .unwrap();
        store
            .insert_oauth_state(
                &fixture.admin,
                &NewOAuthState {
                    id: OAuthStateId::new_random(),
                    provider: CredentialType::GoogleCalendar,
                    pkce_verifier_envelope: envelope(b"sealed verifier"),
                    client_credential_id: None,
                    expires_at: Utc::now() + chrono::Duration::minutes(10),
                },
            )
            .await
            .unwrap();
        store
            .increment_usage(
                &fixture.service,
                CredentialType::Twilio,
                NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                1,
                0,
            )
            .await
            .unwrap();
        store
            .create_dashboard_session(&fixture.member, &session_of(name))
            .await
            .unwrap();
        store
            .create_dashboard_login_link(
                &fixture.member,
                &NewLoginLink {
                    link_hash: LoginLinkHash::from_digest(*session_of(name).id_hash.as_bytes()),
                    expires_at: Utc::now() + chrono::Duration::seconds(60),
                    session_expires_at: Utc::now() + chrono::Duration::hours(1),
                },
            )
            .await
            .unwrap();
    }
    Seeded { database, a, b }
}

/// The settings-page session seeded for organization `name` (its hash is the name's bytes, padded).
fn session_of(name: &str) -> NewDashboardSession {
    let mut digest = [0_u8; 32];
    digest[..name.len()].copy_from_slice(name.as_bytes());
    NewDashboardSession {
        id_hash: SessionIdHash::from_digest(digest),
        idle_timeout: std::time::Duration::from_secs(1800),
        expires_at: Utc::now() + chrono::Duration::hours(1),
    }
}

/// Sets the tenant context for the current transaction, as the store does.
async fn set_context(connection: &mut PgConnection, tenant: &Tenant) {
    let (user, service) = match tenant.actor.user_id() {
        Some(user) => (user.to_string(), String::new()),
        None => (
            String::new(),
            tenant
                .actor
                .to_string()
                .trim_start_matches("service:")
                .to_owned(),
        ),
    };
    sqlx::query(
        "SELECT set_config('byoc.org_id', $1, true), set_config('byoc.user_id', $2, true), \
                set_config('byoc.service', $3, true)",
    )
    .bind(tenant.org_id.to_string())
    .bind(user)
    .bind(service)
    .execute(&mut *connection)
    .await
    .unwrap();
}

/// The org ids of every row of a table that the connection can see.
async fn visible_orgs(connection: &mut PgConnection, table: &str) -> Vec<Uuid> {
    sqlx::query_scalar(&format!("SELECT {} FROM {table}", org_column(table)))
        .fetch_all(&mut *connection)
        .await
        .unwrap()
}

fn sql_state(error: sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database_error) => {
            database_error.code().unwrap_or_default().into_owned()
        }
        other => panic!("expected a database error, got {other}"),
    }
}

/// A pool of one connection on `url` that takes the role byoc_app, as the store's connections do.
async fn app_pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .after_connect(|connection, _meta| {
            Box::pin(async move {
                connection.execute("SET ROLE byoc_app").await?;
                Ok(())
            })
        })
        .connect_with(PgConnectOptions::from_str(url).unwrap())
        .await
        .unwrap()
}

async fn current_user(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_store_works_as_byoc_app_and_byoc_app_is_least_privileged() {
    let database = fresh_postgres().await;
    let app = database.store().pool();
    assert_eq!(
        current_user(app).await,
        "byoc_app",
        "SET ROLE ran on connect although the URL names the owner"
    );

    let owner = database.superuser_pool(1).await;
    let role = sqlx::query(
        "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'byoc_app'",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    for attribute in [
        "rolsuper",
        "rolbypassrls",
        "rolcanlogin",
        "rolcreaterole",
        "rolcreatedb",
    ] {
        assert!(
            !role.get::<bool, _>(attribute),
            "byoc_app must not have {attribute}"
        );
    }
    let owned: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_class WHERE relowner = 'byoc_app'::regrole) \
              + (SELECT count(*) FROM pg_proc WHERE proowner = 'byoc_app'::regrole)",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(owned, 0, "byoc_app owns nothing");

    for table in TENANT_TABLES {
        let flags = sqlx::query(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass",
        )
        .bind(table)
        .fetch_one(&owner)
        .await
        .unwrap();
        assert!(
            flags.get::<bool, _>("relrowsecurity"),
            "RLS enabled on {table}"
        );
        assert!(
            flags.get::<bool, _>("relforcerowsecurity"),
            "RLS forced on {table}"
        );
    }
    // Every table with an org_id column is in the list above.
    let with_org_id: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND column_name = 'org_id' ORDER BY 1",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    for table in &with_org_id {
        assert!(
            TENANT_TABLES.contains(&table.as_str()),
            "{table} has org_id but is not covered"
        );
    }
    owner.close().await;
}

#[tokio::test]
async fn settings_page_sessions_are_reached_only_through_their_definer_functions() {
    let seeded = seeded().await;
    let pool = seeded.database.store().pool();

    // byoc_app cannot read, change or delete sessions, even in the context of their own user.
    for statement in [
        "SELECT count(*) FROM dashboard_sessions",
        "UPDATE dashboard_sessions SET expires_at = now() + interval '1 year'",
        "DELETE FROM dashboard_sessions",
    ] {
        let mut transaction = pool.begin().await.unwrap();
        set_context(&mut transaction, &seeded.a.member).await;
        let error = sqlx::query(statement)
            .execute(&mut *transaction)
            .await
            .unwrap_err();
        assert_eq!(sql_state(error), "42501", "{statement}");
        transaction.rollback().await.unwrap();
    }

    // A session is created only for the context user, a member of the context organization.
    let insert =
        "INSERT INTO dashboard_sessions (id_hash, org_id, user_id, idle_timeout_secs, expires_at) \
                  VALUES ($1, $2, $3, 1800, now() + interval '1 hour')";
    for (context, org, user) in [
        (
            &seeded.a.member,
            seeded.b.id,
            seeded.a.member.actor.user_id(),
        ),
        (
            &seeded.a.member,
            seeded.a.id,
            seeded.a.owner.actor.user_id(),
        ),
        (
            &seeded.a.outsider,
            seeded.a.id,
            seeded.a.outsider.actor.user_id(),
        ),
    ] {
        let mut transaction = pool.begin().await.unwrap();
        set_context(&mut transaction, context).await;
        let error = sqlx::query(insert)
            .bind(&[7_u8; 32][..])
            .bind(org.as_uuid())
            .bind(user.unwrap().as_uuid())
            .execute(&mut *transaction)
            .await
            .unwrap_err();
        assert_eq!(sql_state(error), "42501", "{org} {user:?}");
        transaction.rollback().await.unwrap();
    }

    // The lookup needs no context and returns the session's organization and user.
    let store = seeded.database.store();
    let found = store
        .touch_dashboard_session(&session_of("A").id_hash)
        .await
        .unwrap()
        .expect("A's session");
    assert_eq!(found.org_id, seeded.a.id);
    assert_eq!(Some(found.user_id), seeded.a.member.actor.user_id());

    // The session functions are SECURITY DEFINER and pin their search_path.
    let owner = seeded.database.owner_pool(1).await;
    let settings: Vec<(String, bool, Vec<String>)> = sqlx::query_as(
        "SELECT p.proname::text, p.prosecdef, coalesce(p.proconfig, '{}') FROM pg_proc p \
         WHERE p.pronamespace = 'public'::regnamespace AND p.proname IN ('byoc_touch_dashboard_session', \
               'byoc_end_dashboard_session', 'byoc_delete_expired_dashboard_sessions', \
               'byoc_operator_import_credential') ORDER BY 1",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(settings.len(), 4, "{settings:?}");
    for (name, definer, config) in settings {
        assert!(definer, "{name} is SECURITY DEFINER");
        assert_eq!(
            config,
            vec!["search_path=pg_catalog, pg_temp".to_owned()],
            "{name}"
        );
    }
    let public_may_execute: bool = sqlx::query_scalar(
        "SELECT bool_or(has_function_privilege('public', p.oid, 'EXECUTE')) FROM pg_proc p \
         WHERE p.proname LIKE 'byoc\\_%dashboard\\_session%'",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert!(!public_may_execute, "the session functions are not PUBLIC");
    owner.close().await;
}

#[tokio::test]
async fn with_one_orgs_context_a_query_without_where_sees_only_that_org() {
    let seeded = seeded().await;
    // The service's login, which may act for users and as a service.
    let pool = app_pool(&seeded.database.service_url()).await;
    let mut transaction = pool.begin().await.unwrap();
    for tenant in [&seeded.a.owner, &seeded.a.member, &seeded.a.service] {
        set_context(&mut transaction, tenant).await;
        for table in app_readable_tables() {
            let orgs = visible_orgs(&mut transaction, table).await;
            // An OAuth state is visible only to the user who started it (A's admin here).
            assert!(
                !orgs.is_empty() || table == "oauth_states",
                "{table} shows A's rows to {:?}",
                tenant.actor
            );
            assert!(
                orgs.iter().all(|org| *org == seeded.a.id.as_uuid()),
                "{table} shows only A's rows"
            );
        }
    }
    transaction.rollback().await.unwrap();
}

#[tokio::test]
async fn without_a_context_every_tenant_table_shows_no_rows() {
    let seeded = seeded().await;
    let mut connection = seeded.database.store().pool().acquire().await.unwrap();
    for table in app_readable_tables() {
        assert!(
            visible_orgs(&mut connection, table).await.is_empty(),
            "{table} without context"
        );
    }
    // Empty or partial contexts also show nothing, and never raise a cast error.
    let org_a = seeded.a.id.to_string();
    let stranger = UserId::new_random().to_string();
    let partial_contexts = [
        ("", ""),
        (org_a.as_str(), ""),
        (org_a.as_str(), stranger.as_str()),
    ];
    for (org_id, user_id) in partial_contexts {
        let mut transaction = seeded.database.store().pool().begin().await.unwrap();
        sqlx::query(
            "SELECT set_config('byoc.org_id', $1, true), set_config('byoc.user_id', $2, true)",
        )
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *transaction)
        .await
        .unwrap();
        for table in app_readable_tables() {
            assert!(
                visible_orgs(&mut transaction, table).await.is_empty(),
                "{table} with ({org_id:?}, {user_id:?})"
            );
        }
        transaction.rollback().await.unwrap();
    }
    // A malformed context (only a bug could set one) fails the statement: closed, not open.
    let mut transaction = seeded.database.store().pool().begin().await.unwrap();
    sqlx::query("SELECT set_config('byoc.org_id', 'not-a-uuid', true)")
        .execute(&mut *transaction)
        .await
        .unwrap();
    let error = sqlx::query("SELECT count(*) FROM organization_api_credentials")
        .fetch_one(&mut *transaction)
        .await
        .unwrap_err();
    assert_eq!(sql_state(error), "22P02");
}

#[tokio::test]
async fn inserting_a_row_for_another_org_fails() {
    let seeded = seeded().await;
    let mut transaction = seeded.database.store().pool().begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.owner).await;
    let error = sqlx::query(
        "INSERT INTO organization_api_credentials \
             (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, created_by) \
         VALUES (gen_random_uuid(), $1, 'twilio', '\\x01', 1, 'sneaky', $2)",
    )
    .bind(seeded.b.id.as_uuid())
    .bind(seeded.a.owner.actor.user_id().unwrap().as_uuid())
    .execute(&mut *transaction)
    .await
    .unwrap_err();
    assert_eq!(
        sql_state(error),
        "42501",
        "row-level security refuses the row"
    );
}

#[tokio::test]
async fn org_id_cannot_be_changed_by_any_role() {
    let seeded = seeded().await;
    // As a superuser (row-level security does not even apply): the trigger refuses.
    let owner = seeded.database.superuser_pool(1).await;
    // A's credentials get a re-verification schedule and an event, and A an audit digest, so that those tables
    // have rows of A too.
    for statement in [
        "INSERT INTO audit_digests (org_id, digest_seq, head_seq, head_hash, payload, payload_hash, signature, \
                                    issued_at) \
         VALUES ($1, 1, 1, sha256('head'), '{}', sha256('{}'), decode(repeat('00', 64), 'hex'), now())",
        "INSERT INTO credential_reverify_schedule (credential_id, org_id, due_at) \
         SELECT id, org_id, now() FROM organization_api_credentials WHERE org_id = $1",
        "INSERT INTO credential_events (org_id, credential_id, credential_type, display_name, event_type, \
                                        verification_status) \
         SELECT org_id, id, credential_type, display_name, 'credential.verified', 'verified' \
         FROM organization_api_credentials WHERE org_id = $1",
    ] {
        let inserted = sqlx::query(statement)
            .bind(seeded.a.id.as_uuid())
            .execute(&owner)
            .await
            .unwrap()
            .rows_affected();
        assert!(inserted > 0, "{statement}");
    }
    for table in TENANT_TABLES
        .iter()
        .filter(|table| **table != "organizations")
    {
        let error = sqlx::query(&format!("UPDATE {table} SET org_id = $1 WHERE org_id = $2"))
            .bind(seeded.b.id.as_uuid())
            .bind(seeded.a.id.as_uuid())
            .execute(&owner)
            .await
            .unwrap_err();
        assert_eq!(
            sql_state(error),
            "23000",
            "{table}: org_id is immutable for the owner"
        );
    }
    owner.close().await;

    // As byoc_app in A's owner context: org_id is not even an updatable column.
    let mut transaction = seeded.database.store().pool().begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.owner).await;
    let error = sqlx::query("UPDATE organization_api_credentials SET org_id = $1")
        .bind(seeded.b.id.as_uuid())
        .execute(&mut *transaction)
        .await
        .unwrap_err();
    assert_eq!(sql_state(error), "42501");
}

#[tokio::test]
async fn a_member_cannot_insert_and_an_admin_cannot_delete() {
    let seeded = seeded().await;
    let pool = seeded.database.store().pool();

    let mut transaction = pool.begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.member).await;
    let error = sqlx::query(
        "INSERT INTO organization_api_credentials \
             (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, created_by) \
         VALUES (gen_random_uuid(), $1, 'stripe', '\\x01', 1, 'member try', $2)",
    )
    .bind(seeded.a.id.as_uuid())
    .bind(seeded.a.member.actor.user_id().unwrap().as_uuid())
    .execute(&mut *transaction)
    .await
    .unwrap_err();
    assert_eq!(sql_state(error), "42501", "a member cannot insert");
    transaction.rollback().await.unwrap();

    let mut transaction = pool.begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.member).await;
    let updated = sqlx::query("UPDATE organization_api_credentials SET is_active = false")
        .execute(&mut *transaction)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 0, "a member cannot update");
    transaction.rollback().await.unwrap();

    let mut transaction = pool.begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.admin).await;
    let deleted = sqlx::query("DELETE FROM organization_api_credentials")
        .execute(&mut *transaction)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0, "an admin cannot delete");
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM organization_api_credentials")
        .fetch_one(&mut *transaction)
        .await
        .unwrap();
    assert_eq!(
        visible, 1,
        "the admin still sees the row it could not delete"
    );
    transaction.rollback().await.unwrap();

    let mut transaction = pool.begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.owner).await;
    let deleted = sqlx::query("DELETE FROM organization_api_credentials")
        .execute(&mut *transaction)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 1, "the owner can delete, and only A's row");
    transaction.rollback().await.unwrap();
}

#[tokio::test]
async fn being_admin_elsewhere_grants_nothing_here() {
    // The plan's policy compared `org_id = org_id` (always true): an admin of B passed everywhere.
    let seeded = seeded().await;
    let admin_of_b = seeded.b.admin.actor.user_id().unwrap();
    let mut transaction = seeded.database.store().pool().begin().await.unwrap();
    set_context(&mut transaction, &Tenant::user(seeded.a.id, admin_of_b)).await;
    assert!(
        visible_orgs(&mut transaction, "organization_api_credentials")
            .await
            .is_empty()
    );
    let error = sqlx::query(
        "INSERT INTO organization_api_credentials \
             (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, created_by) \
         VALUES (gen_random_uuid(), $1, 'twilio', '\\x01', 1, 'cross-org admin', $2)",
    )
    .bind(seeded.a.id.as_uuid())
    .bind(admin_of_b.as_uuid())
    .execute(&mut *transaction)
    .await
    .unwrap_err();
    assert_eq!(sql_state(error), "42501");
}

#[tokio::test]
async fn byoc_app_cannot_change_audit_rows_or_reach_internals() {
    let seeded = seeded().await;
    let pool = seeded.database.store().pool();
    let statements = [
        "DELETE FROM credential_audit_log",
        "UPDATE credential_audit_log SET action = 'nothing'",
        "UPDATE credential_audit_chain_heads SET last_seq = 0",
        "SELECT * FROM credential_audit_chain_heads",
        "UPDATE organization_api_credentials SET verification_status = 'verified'",
        "INSERT INTO organizations (name) VALUES ('rogue')",
    ];
    for statement in statements {
        let mut transaction = pool.begin().await.unwrap();
        set_context(&mut transaction, &seeded.a.owner).await;
        let error = sqlx::query(statement)
            .execute(&mut *transaction)
            .await
            .unwrap_err();
        assert_eq!(sql_state(error), "42501", "{statement}");
        transaction.rollback().await.unwrap();
    }
    // Audit rows are appended only through byoc_append_audit_events, which chains them: byoc_app cannot
    // insert one itself, not even with links of its own; and the function works in the context organization
    // only.
    let refusals = [
        (
            "INSERT INTO credential_audit_log (org_id, actor, action) VALUES ($1, 'forger', 'read')",
            seeded.a.id,
            "a direct insert",
        ),
        (
            "INSERT INTO credential_audit_log (org_id, seq, actor, action, prev_hash, hash) \
             VALUES ($1, 99, 'forger', 'read', '\\x00', '\\x00')",
            seeded.a.id,
            "a direct insert with links of its own",
        ),
        (
            "SELECT byoc_append_audit_events($1, ARRAY['read'], ARRAY[NULL::uuid], ARRAY[NULL::text], \
             ARRAY['{}'])",
            seeded.b.id,
            "appending to another organization's chain",
        ),
    ];
    for (statement, org_id, what) in refusals {
        let mut transaction = pool.begin().await.unwrap();
        set_context(&mut transaction, &seeded.a.owner).await;
        let error = sqlx::query(statement)
            .bind(org_id.as_uuid())
            .execute(&mut *transaction)
            .await
            .unwrap_err();
        assert_eq!(sql_state(error), "42501", "{what}");
        transaction.rollback().await.unwrap();
    }

    let mut transaction = pool.begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.owner).await;
    let error = sqlx::query("SELECT * FROM byoc_audit_chain_check($1)")
        .bind(seeded.b.id.as_uuid())
        .execute(&mut *transaction)
        .await
        .unwrap_err();
    assert_eq!(
        sql_state(error),
        "42501",
        "the any-org chain check is for operators only"
    );
}

#[tokio::test]
async fn a_service_context_reads_and_records_but_cannot_manage() {
    let seeded = seeded().await;
    // On the service's login (a member of byoc_service); the user-request login cannot act as a service
    // (database_boundary::a_service_context_needs_a_login_granted_byoc_service).
    let pool = app_pool(&seeded.database.service_url()).await;
    let mut transaction = pool.begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.service).await;
    let credential_ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM organization_api_credentials")
            .fetch_all(&mut *transaction)
            .await
            .unwrap();
    assert_eq!(credential_ids.len(), 1);
    let recorded: bool =
        sqlx::query_scalar("SELECT byoc_record_verification($1, 'failed', 'invalid_grant')")
            .bind(credential_ids[0])
            .fetch_one(&mut *transaction)
            .await
            .unwrap();
    assert!(recorded, "a service may mark its org's credential failed");
    let seq: i64 = sqlx::query_scalar(
        "SELECT byoc_append_audit_events($1, ARRAY['read'], ARRAY[NULL::uuid], ARRAY[NULL::text], \
         ARRAY['{}'])",
    )
    .bind(seeded.a.id.as_uuid())
    .fetch_one(&mut *transaction)
    .await
    .unwrap();
    assert!(seq > 0, "a service may append audit events in its org");
    let deactivated = sqlx::query("UPDATE organization_api_credentials SET is_active = false")
        .execute(&mut *transaction)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deactivated, 0, "a service cannot manage credentials");
    let error = sqlx::query(
        "INSERT INTO organization_api_credentials \
             (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name) \
         VALUES (gen_random_uuid(), $1, 'twilio', '\\x01', 1, 'service try')",
    )
    .bind(seeded.a.id.as_uuid())
    .execute(&mut *transaction)
    .await
    .unwrap_err();
    assert_eq!(sql_state(error), "42501");
}

#[tokio::test]
async fn recording_a_verification_stays_in_the_context_org() {
    let seeded = seeded().await;
    let pool = seeded.database.store().pool();
    let b_credential: Uuid = {
        let owner = seeded.database.superuser_pool(1).await;
        let id =
            sqlx::query_scalar("SELECT id FROM organization_api_credentials WHERE org_id = $1")
                .bind(seeded.b.id.as_uuid())
                .fetch_one(&owner)
                .await
                .unwrap();
        owner.close().await;
        id
    };
    let mut transaction = pool.begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.owner).await;
    let recorded: bool = sqlx::query_scalar("SELECT byoc_record_verification($1, 'failed', 'x')")
        .bind(b_credential)
        .fetch_one(&mut *transaction)
        .await
        .unwrap();
    assert!(!recorded, "B's credential is out of reach from A's context");
    transaction.rollback().await.unwrap();

    let error = sqlx::query("SELECT byoc_record_verification($1, 'failed', 'x')")
        .bind(b_credential)
        .fetch_one(pool)
        .await
        .unwrap_err();
    assert_eq!(sql_state(error), "42501", "no context, no update");
}

#[tokio::test]
async fn a_pool_of_one_connection_never_leaks_a_context() {
    let seeded = seeded().await;
    // The service's login serves users and services alike.
    let options = PgConnectOptions::from_str(&seeded.database.service_url()).unwrap();
    let single = PostgresStore::connect_with(options, 1).await.unwrap();
    let a_credentials = single.list_credentials(&seeded.a.owner).await.unwrap();
    assert!(a_credentials
        .iter()
        .all(|metadata| metadata.org_id == seeded.a.id));
    single
        .get_credential(&seeded.a.owner, a_credentials[0].id)
        .await
        .unwrap();
    single.list_members(&seeded.a.owner).await.unwrap();

    // The same (only) connection, with no context: nothing.
    let mut connection = single.pool().acquire().await.unwrap();
    for table in app_readable_tables() {
        assert!(
            visible_orgs(&mut connection, table).await.is_empty(),
            "{table} after A's calls"
        );
    }
    drop(connection);

    // A failed transaction in A's context does not leave the context behind either.
    let mut transaction = single.pool().begin().await.unwrap();
    set_context(&mut transaction, &seeded.a.owner).await;
    assert!(sqlx::query("SELECT 1/0")
        .execute(&mut *transaction)
        .await
        .is_err());
    drop(transaction);

    let b_credentials = single.list_credentials(&seeded.b.owner).await.unwrap();
    assert_eq!(b_credentials.len(), 1);
    assert!(b_credentials
        .iter()
        .all(|metadata| metadata.org_id == seeded.b.id));
    assert!(single
        .get_credential(&seeded.b.owner, a_credentials[0].id)
        .await
        .is_err());
    let mut connection = single.pool().acquire().await.unwrap();
    for table in app_readable_tables() {
        assert!(
            visible_orgs(&mut connection, table).await.is_empty(),
            "{table} after B's calls"
        );
    }
    let context: Option<String> = sqlx::query_scalar("SELECT current_setting('byoc.org_id', true)")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    assert_eq!(
        context.unwrap_or_default(),
        "",
        "the org context is transaction-local"
    );
    assert_eq!(
        sqlx::query_scalar::<_, String>("SELECT current_user::text")
            .fetch_one(&mut *connection)
            .await
            .unwrap(),
        "byoc_app"
    );
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let database = fresh_postgres().await;
    byoc_credential_store::postgres::migrate(&database.owner_url())
        .await
        .unwrap();
    byoc_credential_store::migrate(&database.owner_url())
        .await
        .unwrap();
    let organization = database
        .operator()
        .operator_create_organization(
            &byoc_credential_store::OrganizationName::parse("After re-migrate").unwrap(),
            byoc_credential_store::HotLeadThreshold::DEFAULT,
        )
        .await
        .unwrap();
    database
        .operator()
        .operator_add_member(organization.id, UserId::new_random(), Role::Owner)
        .await
        .unwrap();
}

#[tokio::test]
async fn many_databases_migrate_at_once_and_race_to_create_one_role() {
    // Many fresh databases created and migrated concurrently (byoc_app already exists by now, or is created
    // by whichever wins).
    let databases = join_all((0..6).map(|_| fresh_postgres())).await;
    for database in &databases {
        database.store().ping().await.unwrap();
    }

    // The creation race itself, on roles that do not exist yet: the baseline's role block, renamed, run in
    // every database at the same moment by its owner (CREATEROLE, not a superuser). Roles are cluster-wide;
    // advisory locks are per database.
    let migration = include_str!("../../../../migrations/postgres/0001_baseline.sql");
    let start = migration.find("DO $roles$").unwrap();
    let end = migration.find("$roles$;").unwrap() + "$roles$;".len();
    let race = format!("byoc_race_{}", Uuid::new_v4().simple());
    let renamed: Vec<String> = ["app", "service", "operator"]
        .iter()
        .map(|part| format!("{race}_{part}"))
        .collect();
    let block = migration[start..end]
        .replace("byoc_app", &renamed[0])
        .replace("byoc_service", &renamed[1])
        .replace("byoc_operator", &renamed[2]);
    let pools = join_all(databases.iter().map(|database| database.owner_pool(1))).await;
    let outcomes = join_all(pools.iter().map(|pool| async {
        let mut transaction = pool.begin().await?;
        transaction.execute(block.as_str()).await?;
        transaction.commit().await
    }))
    .await;
    let admin = databases[0].superuser_pool(1).await;
    let created: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)")
        .bind(&renamed)
        .fetch_one(&admin)
        .await
        .unwrap();
    for role in &renamed {
        admin
            .execute(format!("DROP ROLE IF EXISTS {role}").as_str())
            .await
            .unwrap();
    }
    for outcome in outcomes {
        outcome.unwrap();
    }
    assert_eq!(created, 3);
    for pool in pools {
        pool.close().await;
    }
    admin.close().await;
}

#[tokio::test]
async fn a_second_org_id_never_shows_through_the_repository() {
    let seeded = seeded().await;
    let store = seeded.database.store();
    let someone_elses = Tenant::user(OrgId::new_random(), seeded.a.owner.actor.user_id().unwrap());
    assert!(store.list_credentials(&someone_elses).await.is_err());
    let credentials = store.list_credentials(&seeded.a.owner).await.unwrap();
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0].org_id, seeded.a.id);
}

/// On the only connection of a pool: no tenant context is set and, as byoc_app, no tenant row is visible.
async fn assert_no_context_left(store: &PostgresStore, after: &str) {
    let mut connection = store.pool().acquire().await.unwrap();
    let settings: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT unnest(ARRAY[current_setting('byoc.org_id', true), \
                             current_setting('byoc.user_id', true), \
                             current_setting('byoc.service', true)])",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    assert!(
        settings
            .iter()
            .all(|setting| setting.as_deref().unwrap_or_default().is_empty()),
        "context {settings:?} left after {after}"
    );
    for table in app_readable_tables() {
        assert!(
            visible_orgs(&mut connection, table).await.is_empty(),
            "{table} after {after}"
        );
    }
}

/// The plan nodes of an EXPLAIN (FORMAT JSON) tree, each with the relationship to its parent.
fn plan_nodes<'a>(plan: &'a serde_json::Value, into: &mut Vec<&'a serde_json::Value>) {
    into.push(plan);
    for child in plan["Plans"].as_array().into_iter().flatten() {
        plan_nodes(child, into);
    }
}

/// The tenant reads are single statements on the pool (context CTE joined LATERAL to the read). Proves, on a
/// pool of one connection: the answers (row, not found, forbidden) stay right across the server's switch
/// from custom to generic plans; the context never outlives the statement; and the plan the server uses
/// puts the context CTE on the outer side of a nested loop with every table scan and every policy initplan
/// on its inner side, so nothing reads the context before it is set.
#[tokio::test]
async fn single_statement_tenant_reads_set_the_context_first_and_leave_none_behind() {
    let seeded = seeded().await;
    let options = PgConnectOptions::from_str(&seeded.database.service_url()).unwrap();
    let single = PostgresStore::connect_with(options, 1).await.unwrap();
    let a_id = single.list_credentials(&seeded.a.owner).await.unwrap()[0].id;
    let b_id = single.list_credentials(&seeded.b.owner).await.unwrap()[0].id;
    let missing = byoc_credential_store::CredentialId::new_random();
    let not_found =
        |result: Result<_, StoreError>| matches!(result, Err(StoreError::NotFound { .. }));
    let forbidden =
        |result: Result<_, StoreError>| matches!(result, Err(StoreError::Forbidden { .. }));
    // Eight rounds: after five executions the server may plan a prepared statement generically.
    for round in 0..8 {
        for tenant in [&seeded.a.owner, &seeded.a.member, &seeded.a.service] {
            assert_eq!(single.list_credentials(tenant).await.unwrap()[0].id, a_id);
            let page = AuditPage {
                before: None,
                limit: 10,
            };
            let events = single.list_audit_events(tenant, page).await.unwrap();
            assert!(events.iter().all(|event| event.org_id == seeded.a.id));
            assert!(!events.is_empty());
            assert_eq!(
                single
                    .get_credential(tenant, a_id)
                    .await
                    .unwrap()
                    .metadata
                    .id,
                a_id
            );
            let winner = single
                .get_active_credential(tenant, CredentialType::Twilio)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(winner.metadata.id, a_id);
            assert!(single
                .get_active_credential(tenant, CredentialType::Stripe)
                .await
                .unwrap()
                .is_none());
            assert!(not_found(
                single.get_credential(tenant, missing).await.map(|_| ())
            ));
            assert!(
                not_found(single.get_credential(tenant, b_id).await.map(|_| ())),
                "another org's credential is simply not there"
            );
            assert_eq!(
                single.get_organization(tenant).await.unwrap().id,
                seeded.a.id
            );
        }
        assert_eq!(
            single.member_role(&seeded.a.admin).await.unwrap(),
            Some(Role::Admin)
        );
        let outsider = &seeded.a.outsider;
        assert_eq!(single.member_role(outsider).await.unwrap(), None);
        assert!(forbidden(
            single.get_credential(outsider, a_id).await.map(|_| ())
        ));
        assert!(forbidden(
            single.get_credential(outsider, missing).await.map(|_| ())
        ));
        assert!(forbidden(
            single
                .get_active_credential(outsider, CredentialType::Twilio)
                .await
                .map(|_| ())
        ));
        assert!(forbidden(
            single.get_organization(outsider).await.map(|_| ())
        ));
        assert!(forbidden(
            single.list_credentials(outsider).await.map(|_| ())
        ));
        let page = AuditPage {
            before: None,
            limit: 10,
        };
        assert!(forbidden(
            single.list_audit_events(outsider, page).await.map(|_| ())
        ));
        // A's owner is an outsider in B.
        let a_owner_in_b = Tenant::user(seeded.b.id, seeded.a.owner.actor.user_id().unwrap());
        assert!(forbidden(
            single.get_credential(&a_owner_in_b, b_id).await.map(|_| ())
        ));
        assert_no_context_left(&single, &format!("round {round}")).await;
    }

    // The plans the server now uses for the store's own prepared statements.
    let mut connection = single.pool().acquire().await.unwrap();
    let statements: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT name, statement, parameter_types::text[] FROM pg_prepared_statements \
         WHERE statement LIKE 'WITH ctx AS MATERIALIZED (SELECT pg_catalog.set_config(%' ORDER BY name",
    )
    .fetch_all(&mut *connection)
    .await
    .unwrap();
    assert_eq!(
        statements.len(),
        6,
        "by id, winning credential, organization, member role, credentials list, audit page"
    );
    let owner = seeded.a.owner.actor.user_id().unwrap().as_uuid();
    for (name, statement, types) in &statements {
        let key = match types.get(3).map(String::as_str) {
            Some("uuid") => format!(", '{}'", a_id.as_uuid()),
            Some("text") => ", 'twilio'".to_owned(),
            // The audit page: no cursor, ten events, and its filters (action, credential, actor, from, to) off.
            Some("bigint") => format!(
                ", NULL, 10{}",
                ", NULL".repeat(types.len().saturating_sub(5))
            ),
            _ => String::new(),
        };
        let explain = format!(
            "EXPLAIN (FORMAT JSON) EXECUTE {name}('{}', '{owner}', NULL{key})",
            seeded.a.id.as_uuid()
        );
        let row = sqlx::raw_sql(&explain)
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        let text: String = row.try_get_unchecked(0).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let top = &json[0]["Plan"];
        let top_children: Vec<&serde_json::Value> =
            top["Plans"].as_array().unwrap().iter().collect();
        let context_cte = top_children
            .iter()
            .find(|child| child["Parent Relationship"] == "InitPlan")
            .unwrap_or_else(|| panic!("{statement}: no context CTE in {json}"));
        assert_eq!(context_cte["Subplan Name"], "CTE ctx", "{json}");
        // The many-row reads sort the join's output; the join itself sits below the sort.
        let root = if top["Node Type"] == "Sort" {
            top_children
                .iter()
                .find(|child| child["Parent Relationship"] == "Outer")
                .copied()
                .unwrap_or_else(|| panic!("{statement}: a sort of nothing in {json}"))
        } else {
            top
        };
        let mut children: Vec<&serde_json::Value> =
            root["Plans"].as_array().unwrap().iter().collect();
        if root != top {
            children.insert(0, context_cte);
        }
        if statement.ends_with("AS role FROM ctx") {
            // The member role: the CTE scan itself, the lookup in its projection (after the row).
            assert_eq!(root["Node Type"], "CTE Scan", "{json}");
            assert_eq!(children.len(), 1, "{json}");
            continue;
        }
        assert_eq!(root["Node Type"], "Nested Loop", "{statement}: {json}");
        assert_eq!(root["Join Type"], "Left", "{json}");
        let relationships: Vec<&str> = children
            .iter()
            .map(|child| child["Parent Relationship"].as_str().unwrap())
            .collect();
        assert_eq!(relationships, ["InitPlan", "Outer", "Inner"], "{json}");
        assert_eq!(children[1]["Node Type"], "CTE Scan", "{json}");
        assert_eq!(children[1]["CTE Name"], "ctx", "{json}");
        let mut inner = Vec::new();
        plan_nodes(children[2], &mut inner);
        let relations: Vec<&str> = inner
            .iter()
            .filter_map(|node| node["Relation Name"].as_str())
            .collect();
        assert!(
            relations == ["organization_api_credentials"]
                || relations == ["organizations"]
                || relations == ["credential_audit_log"],
            "{json}"
        );
        assert!(
            inner
                .iter()
                .any(|node| node["Parent Relationship"] == "InitPlan"),
            "the policies' initplans sit on the inner side: {json}"
        );
    }
}

#[tokio::test]
async fn login_links_are_reached_only_through_their_definer_functions() {
    let seeded = seeded().await;
    let pool = seeded.database.store().pool();
    for tenant in [&seeded.a.owner, &seeded.a.member] {
        for statement in [
            "SELECT count(*) FROM dashboard_login_links",
            "DELETE FROM dashboard_login_links",
            "INSERT INTO dashboard_login_links (link_hash, org_id, user_id, expires_at, session_expires_at) \
             VALUES (decode(repeat('01', 32), 'hex'), byoc_ctx_org(), byoc_ctx_user(), now(), now())",
        ] {
            let mut transaction = pool.begin().await.unwrap();
            set_context(&mut transaction, tenant).await;
            let error = sqlx::query(statement)
                .execute(&mut *transaction)
                .await
                .unwrap_err();
            assert_eq!(sql_state(error), "42501", "{statement}");
        }
    }
}
