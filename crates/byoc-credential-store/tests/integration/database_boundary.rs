//! The database boundary against its own roles: SQL run as `byoc_app` (an SQL injection, or the service's own
//! connection) and as `byoc_operator`, never as a superuser. Each test names the finding of the security review
//! it closes: definer functions that ran an attacker's temporary objects as their owner, operator functions
//! open to the runtime role, member-level functions that exceeded a member's rights, service contexts open to
//! any connection, roles shared across databases, and a schema that needed a superuser owner.

use std::str::FromStr;

use byoc_credential_store::test_support::{
    fresh_postgres, TestPostgres, OPERATOR_LOGIN, OWNER_LOGIN,
};
use byoc_credential_store::{
    CredentialRepository, CredentialType, HotLeadThreshold, NewMasterKey, OrganizationName,
    PostgresStore, StoreError, Tenant,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};
use uuid::Uuid;

use crate::fixtures::{credential, org, OrgFixture, TWILIO_ACCOUNT_SID};

/// A pool of one connection on `url` whose connection runs `SET ROLE role`, as the store's do.
async fn role_pool(url: &str, role: &'static str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .after_connect(move |connection, _meta| {
            Box::pin(async move {
                connection
                    .execute(format!("SET ROLE {role}").as_str())
                    .await?;
                Ok(())
            })
        })
        .connect_with(PgConnectOptions::from_str(url).unwrap())
        .await
        .unwrap()
}

fn sql_state(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database_error) => {
            database_error.code().unwrap_or_default().into_owned()
        }
        other => panic!("expected a database error, got {other}"),
    }
}

/// One organization with a Twilio credential of its own.
async fn one_org(database: &TestPostgres) -> (OrgFixture, Uuid) {
    let a = org(database.operator(), "Clinic A").await;
    let new = credential(CredentialType::Twilio, "Front desk");
    database
        .store()
        .insert_credential(&a.owner, &new)
        .await
        .unwrap();
    (a, new.id.as_uuid())
}

/// The statement that sets a tenant context for the rest of the session (raw SQL, as an attacker would).
fn context_sql(org_id: Uuid, user: Option<Uuid>, service: Option<&str>) -> String {
    format!(
        "SELECT set_config('byoc.org_id', '{org_id}', false), \
                set_config('byoc.user_id', '{}', false), \
                set_config('byoc.service', '{}', false)",
        user.map(|user| user.to_string()).unwrap_or_default(),
        service.unwrap_or_default()
    )
}

#[tokio::test]
async fn every_security_definer_function_pins_its_search_path() {
    let database = fresh_postgres().await;
    let superuser = database.superuser_pool(1).await;
    let definers: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p \
         WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef ORDER BY 1",
    )
    .fetch_all(&superuser)
    .await
    .unwrap();
    assert!(definers.len() >= 10, "{definers:?}");
    for (function, config) in &definers {
        assert_eq!(
            config.as_deref(),
            Some(&["search_path=pg_catalog, pg_temp".to_owned()][..]),
            "{function} pins search_path (pg_temp last) and sets nothing else"
        );
    }
    // No function of the schema sets a custom setting (a non-superuser owner could not create one).
    let custom: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p, unnest(p.proconfig) AS setting \
         WHERE p.pronamespace = 'public'::regnamespace AND setting NOT LIKE 'search_path=%'",
    )
    .fetch_all(&superuser)
    .await
    .unwrap();
    assert!(custom.is_empty(), "{custom:?}");
    superuser.close().await;
}

/// The temporary objects an attacker with TEMP creates before calling a definer function: domains named
/// like every type the functions use, whose check raises `ESCALATED to <role>` when it runs as anyone but
/// `caller`; operators named `=` and `<>`; and tables named like the schema's, holding a forged owner row.
fn shadows(caller: &str) -> Vec<String> {
    let mut statements = vec![format!(
        "CREATE FUNCTION pg_temp.spy(v pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE plpgsql AS $$ \
         BEGIN \
             IF current_user::pg_catalog.text OPERATOR(pg_catalog.<>) '{caller}' THEN \
                 RAISE EXCEPTION 'ESCALATED to %', current_user; \
             END IF; \
             RETURN true; \
         END $$"
    )];
    for type_name in [
        "text",
        "uuid",
        "bytea",
        "timestamptz",
        "jsonb",
        "int4",
        "int8",
        "bool",
        "name",
        "date",
    ] {
        statements.push(format!(
            "CREATE DOMAIN pg_temp.{type_name} AS pg_catalog.{type_name} \
             CHECK (pg_temp.spy(VALUE::pg_catalog.text))"
        ));
    }
    for (operator, left) in [
        ("=", "uuid"),
        ("=", "text"),
        ("=", "bytea"),
        ("<>", "text"),
        ("=", "int8"),
    ] {
        let function = format!("op_{}_{left}", if operator == "=" { "eq" } else { "ne" });
        statements.push(format!(
            "CREATE FUNCTION pg_temp.{function}(a pg_catalog.{left}, b pg_catalog.{left}) \
             RETURNS pg_catalog.bool LANGUAGE sql AS $$ SELECT pg_temp.spy('op') $$"
        ));
        statements.push(format!(
            "CREATE OPERATOR pg_temp.{operator} (LEFTARG = pg_catalog.{left}, \
             RIGHTARG = pg_catalog.{left}, FUNCTION = pg_temp.{function})"
        ));
    }
    for table in [
        "organization_members",
        "organization_api_credentials",
        "credential_audit_chain_heads",
        "organizations",
    ] {
        statements.push(format!(
            "CREATE TEMP TABLE {table} (org_id pg_catalog.uuid, user_id pg_catalog.uuid, \
             role pg_catalog.text, id pg_catalog.uuid)"
        ));
    }
    statements
}

/// Runs `calls` on `pool` (one connection holding the shadows), each in its own transaction after
/// `context`, and returns every error message that says the shadows ran as another role.
async fn escalations(pool: &PgPool, context: &str, calls: &[String]) -> Vec<String> {
    let mut escalated = Vec::new();
    for call in calls {
        let mut transaction = pool.begin().await.unwrap();
        sqlx::query(context)
            .execute(&mut *transaction)
            .await
            .unwrap();
        if let Err(error) = sqlx::query(call).execute(&mut *transaction).await {
            let message = error.to_string();
            if message.contains("ESCALATED") {
                escalated.push(format!("{call}: {message}"));
            }
        }
        transaction.rollback().await.unwrap();
    }
    escalated
}

/// Every SECURITY DEFINER function of the schema, called with NULLs of its argument types (qualified, so the
/// call itself never touches a shadow).
async fn calls_with_nulls(superuser: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT format('SELECT * FROM public.%I(%s)', p.proname, \
                coalesce(string_agg(format('NULL::%I.%I', tn.nspname, t.typname), ', ' \
                                    ORDER BY a.ordinality) FILTER (WHERE t.oid IS NOT NULL), '')) \
         FROM pg_proc p \
         LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a (type_oid, ordinality) ON true \
         LEFT JOIN pg_type t ON t.oid = a.type_oid \
         LEFT JOIN pg_namespace tn ON tn.oid = t.typnamespace \
         WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef AND p.prorettype <> 'trigger'::regtype \
         GROUP BY p.oid, p.proname",
    )
    .fetch_all(superuser)
    .await
    .unwrap()
}

#[tokio::test]
async fn shadowed_types_operators_and_tables_never_run_as_another_role() {
    let database = fresh_postgres().await;
    let (a, credential_id) = one_org(&database).await;
    let owner = a.owner.actor.user_id().unwrap().as_uuid();
    let stranger = Uuid::new_v4();
    let superuser = database.superuser_pool(1).await;
    // The worst case: the attacker's roles may create temporary objects (the schema revokes TEMPORARY from
    // PUBLIC, so this grant is the test's, not the product's).
    superuser
        .execute(
            format!(
                "GRANT TEMPORARY ON DATABASE \"{}\" TO byoc_app, byoc_operator",
                database.database_name()
            )
            .as_str(),
        )
        .await
        .unwrap();
    let null_calls = calls_with_nulls(&superuser).await;
    assert!(null_calls.len() >= 10, "{null_calls:?}");

    // A control: a definer function that does not pin its search_path is caught by the shadows, so the
    // harness does see an escalation when there is one.
    superuser
        .execute(
            format!(
                "CREATE FUNCTION public.unpinned_control() RETURNS pg_catalog.text LANGUAGE plpgsql \
                 SECURITY DEFINER AS $$ DECLARE v text := 'x'; BEGIN RETURN v; END $$; \
                 ALTER FUNCTION public.unpinned_control() OWNER TO {OWNER_LOGIN}; \
                 GRANT EXECUTE ON FUNCTION public.unpinned_control() TO byoc_app"
            )
            .as_str(),
        )
        .await
        .unwrap();

    let app = role_pool(&database.app_url(), "byoc_app").await;
    for statement in shadows("byoc_app") {
        app.execute(statement.as_str())
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    // The forged row a shadow table would hand a function that read it unqualified.
    sqlx::query(
        "INSERT INTO pg_temp.organization_members (org_id, user_id, role) VALUES ($1, $2, 'owner')",
    )
    .bind(a.id.as_uuid())
    .bind(stranger)
    .execute(&app)
    .await
    .unwrap();

    let control = escalations(
        &app,
        &context_sql(a.id.as_uuid(), Some(owner), None),
        &["SELECT public.unpinned_control()".to_owned()],
    )
    .await;
    assert_eq!(control.len(), 1, "the harness detects an unpinned function");
    assert!(
        control[0].contains(&format!("ESCALATED to {OWNER_LOGIN}")),
        "{control:?}"
    );
    superuser
        .execute("DROP FUNCTION public.unpinned_control()")
        .await
        .unwrap();

    let a_id = a.id.as_uuid();
    let real_calls = [
        "SELECT public.byoc_ctx_member_role()".to_owned(),
        format!("SELECT public.byoc_record_verification('{credential_id}', 'failed', 'x')"),
        format!(
            "SELECT public.byoc_append_audit_events('{a_id}', ARRAY['read'], ARRAY[NULL::pg_catalog.uuid], \
             ARRAY['twilio'], ARRAY['{{\"purpose\": \"sms:test\"}}'])"
        ),
        "SELECT * FROM public.byoc_verify_audit_chain()".to_owned(),
        "SELECT * FROM public.byoc_credentials_per_key_version()".to_owned(),
        "SELECT public.byoc_record_member_profile('dana@clinic.example', 'Dana')".to_owned(),
        "SELECT public.byoc_create_dashboard_login_link(pg_catalog.decode(pg_catalog.repeat('07', 32), 'hex'), \
         pg_catalog.now(), pg_catalog.now())"
            .to_owned(),
        "SELECT * FROM public.byoc_redeem_dashboard_login_link(pg_catalog.decode(pg_catalog.repeat('07', 32), \
         'hex'), pg_catalog.decode(pg_catalog.repeat('08', 32), 'hex'), 60)"
            .to_owned(),
        format!(
            "SELECT * FROM public.byoc_replace_rotated_envelope('{credential_id}', '\\x01', \
             pg_catalog.decode(pg_catalog.repeat('01', 93), 'hex'), 16843009)"
        ),
    ];
    let mut calls: Vec<String> = real_calls.to_vec();
    calls.extend(null_calls.iter().cloned());
    for context in [
        context_sql(a_id, Some(owner), None),
        context_sql(a_id, Some(stranger), None),
        context_sql(a_id, None, Some("lead-scorer")),
    ] {
        let escalated = escalations(&app, &context, &calls).await;
        assert!(escalated.is_empty(), "{escalated:#?}");
    }
    // The forged owner row in the shadow table gave the stranger nothing.
    let mut transaction = app.begin().await.unwrap();
    sqlx::query(&context_sql(a_id, Some(stranger), None))
        .execute(&mut *transaction)
        .await
        .unwrap();
    let role: Option<String> = sqlx::query_scalar("SELECT public.byoc_ctx_member_role()")
        .fetch_one(&mut *transaction)
        .await
        .unwrap();
    assert_eq!(role, None);
    transaction.rollback().await.unwrap();
    app.close().await;

    // The service's cross-organization functions (migration 0004), called by a login granted byoc_service with
    // the same shadows (re-verification claims; the outbox, which byoc_record_verification filled above
    // through its trigger when the calls ran as byoc_app).
    let service = role_pool(&database.service_url(), "byoc_app").await;
    for statement in shadows("byoc_app") {
        service.execute(statement.as_str()).await.unwrap();
    }
    let service_calls = [
        "SELECT * FROM public.byoc_claim_due_reverifications(1, 10)".to_owned(),
        "SELECT * FROM public.byoc_claim_credential_events(10, 60)".to_owned(),
        format!("SELECT public.byoc_finish_credential_event('{stranger}', false, 5, 'HTTP 503')"),
        format!("SELECT public.byoc_finish_credential_event('{stranger}', true, 0, NULL)"),
        "SELECT public.byoc_prune_credential_events(3600)".to_owned(),
        "SELECT * FROM public.byoc_credential_status_counts()".to_owned(),
        "SELECT * FROM public.byoc_audit_digests_due(1, 10)".to_owned(),
        "SELECT * FROM public.byoc_unfiled_audit_digests(10)".to_owned(),
        format!("SELECT public.byoc_mark_audit_digest_filed('{a_id}', 1)"),
        "SELECT * FROM public.byoc_claim_audit_digest_deliveries(10, 60, 3600)".to_owned(),
        format!("SELECT public.byoc_finish_audit_digest_delivery('{stranger}', true, 0, NULL)"),
        "SELECT public.byoc_prune_audit_digests(3600)".to_owned(),
    ];
    // Recording a digest of a head that is not in the chain is refused, after the function ran with the shadows.
    let record_call = format!(
        "SELECT public.byoc_record_audit_digest('{a_id}', 1, 1, '\\x{hash}', NULL, '{{}}', '\\x{hash}', \
         '\\x{signature}', pg_catalog.now())",
        hash = "ab".repeat(32),
        signature = "cd".repeat(64)
    );
    let every_call: Vec<String> = service_calls.iter().cloned().chain([record_call]).collect();
    let escalated = escalations(&service, "SELECT 1", &every_call).await;
    assert!(escalated.is_empty(), "{escalated:#?}");
    for call in &service_calls {
        sqlx::query(call)
            .execute(&service)
            .await
            .unwrap_or_else(|error| panic!("{call}: {error}"));
    }
    service.close().await;

    // The operator's functions, called by the operator's login with the same shadows (the key rotation's
    // swap also fires the audit chain trigger, a definer function of its own).
    let operator = role_pool(&database.operator_url(), "byoc_operator").await;
    for statement in shadows("byoc_operator") {
        operator.execute(statement.as_str()).await.unwrap();
    }
    let envelope: String = sqlx::query_scalar(
        "SELECT encode(encrypted_data, 'hex') FROM organization_api_credentials WHERE id = $1",
    )
    .bind(credential_id)
    .fetch_one(&superuser)
    .await
    .unwrap();
    let operator_calls = [
        "SELECT * FROM public.byoc_operator_create_organization('Shadowed', 80)".to_owned(),
        format!("SELECT * FROM public.byoc_operator_add_member('{a_id}', '{stranger}', 'member')"),
        // An import of an account the organization has (it finds that credential) and of another (it inserts).
        format!(
            "SELECT * FROM public.byoc_operator_import_credential(gen_random_uuid(), '{a_id}', 'twilio', \
             '\\x01', 1, 'Imported again', NULL, '{TWILIO_ACCOUNT_SID}', 'service:byoc-cli', '{{}}')"
        ),
        format!(
            "SELECT * FROM public.byoc_operator_import_credential(gen_random_uuid(), '{a_id}', 'twilio', \
             '\\x01', 1, 'Imported', NULL, 'ACffffffffffffffffffffffffffffffff', 'service:byoc-cli', '{{}}')"
        ),
        "SELECT * FROM public.byoc_operator_envelope_batch(NULL, NULL, NULL, 10)".to_owned(),
        format!(
            "SELECT * FROM public.byoc_operator_swap_envelopes(ARRAY['{credential_id}'::pg_catalog.uuid], \
             ARRAY['\\x{envelope}'::pg_catalog.bytea], ARRAY[1::pg_catalog.int8], \
             ARRAY['\\x02'::pg_catalog.bytea], ARRAY[2::pg_catalog.int8], 'service:key-rotation')"
        ),
        "SELECT * FROM public.byoc_credentials_per_key_version()".to_owned(),
        "SELECT * FROM public.byoc_operator_verify_audit_chains(NULL)".to_owned(),
        format!("SELECT * FROM public.byoc_operator_audit_chain_hashes('{a_id}', ARRAY[1, 2]::pg_catalog.int8[])"),
        format!(
            "SELECT * FROM public.byoc_operator_add_master_key(7, 'alias/byoc', '\\x01', '\\x{}')",
            "ab".repeat(32)
        ),
    ];
    let escalated = escalations(&operator, "SELECT 1", &operator_calls).await;
    assert!(escalated.is_empty(), "{escalated:#?}");
    // The calls themselves did their work (rolled back): run them once more, committed, to be sure they
    // were not refused for some other reason.
    for call in &operator_calls {
        sqlx::query(call)
            .execute(&operator)
            .await
            .unwrap_or_else(|error| panic!("{call}: {error}"));
    }
    operator.close().await;
    superuser.close().await;
}

/// An import's audit event names the database login that ran it as the database knows it (`session_user`,
/// which `SET ROLE` does not change): a `session_user` in the detail the caller passes is replaced.
#[tokio::test]
async fn an_import_is_audited_with_the_login_that_ran_it() {
    let database = fresh_postgres().await;
    let a = org(database.operator(), "Clinic A").await;
    let operator = role_pool(&database.operator_url(), "byoc_operator").await;
    let credential_id = Uuid::new_v4();
    sqlx::query(
        "SELECT id FROM public.byoc_operator_import_credential($1, $2, 'twilio', '\\x01', 1, 'Imported', NULL, \
         $3, 'service:byoc-cli', $4::text::jsonb)",
    )
    .bind(credential_id)
    .bind(a.id.as_uuid())
    .bind(TWILIO_ACCOUNT_SID)
    .bind(r#"{"source": "import-env", "session_user": "somebody-else"}"#)
    .fetch_one(&operator)
    .await
    .unwrap();
    operator.close().await;
    let superuser = database.superuser_pool(1).await;
    let detail: String = sqlx::query_scalar(
        "SELECT detail::text FROM credential_audit_log WHERE credential_id = $1",
    )
    .bind(credential_id)
    .fetch_one(&superuser)
    .await
    .unwrap();
    superuser.close().await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&detail).unwrap(),
        serde_json::json!({"source": "import-env", "session_user": OPERATOR_LOGIN})
    );
}

/// The operator's functions and whether byoc_app may execute them.
#[tokio::test]
async fn operator_functions_belong_to_byoc_operator_alone() {
    let database = fresh_postgres().await;
    let (a, credential_id) = one_org(&database).await;
    let superuser = database.superuser_pool(1).await;
    let privileges: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, \
                has_function_privilege('byoc_app', p.oid, 'EXECUTE'), \
                has_function_privilege('byoc_service', p.oid, 'EXECUTE'), \
                has_function_privilege('byoc_operator', p.oid, 'EXECUTE') \
         FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'byoc\\_operator\\_%' \
         ORDER BY 1",
    )
    .fetch_all(&superuser)
    .await
    .unwrap();
    assert_eq!(privileges.len(), 8, "{privileges:?}");
    for (function, app, service, operator) in &privileges {
        assert!(!app, "byoc_app may not execute {function}");
        assert!(!service, "byoc_service may not execute {function}");
        assert!(operator, "byoc_operator executes {function}");
    }
    let memberships: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT member, role, pg_has_role(member, role, 'MEMBER') FROM \
         unnest(ARRAY['byoc_app', 'byoc_app', 'byoc_service', 'byoc_operator', 'byoc_operator']) \
             WITH ORDINALITY AS m (member, n) \
         JOIN unnest(ARRAY['byoc_operator', 'byoc_service', 'byoc_operator', 'byoc_app', 'byoc_service']) \
             WITH ORDINALITY AS r (role, n) USING (n)",
    )
    .fetch_all(&superuser)
    .await
    .unwrap();
    for (member, role, is_member) in memberships {
        assert!(!is_member, "{member} must not be a member of {role}");
    }

    // Tried as byoc_app, with no context and with an owner's, as the review did: each is refused.
    let app = role_pool(&database.app_url(), "byoc_app").await;
    let a_id = a.id.as_uuid();
    let stranger = Uuid::new_v4();
    let attempts = [
        format!("SELECT * FROM byoc_operator_add_member('{a_id}', '{stranger}', 'owner')"),
        "SELECT * FROM byoc_operator_envelope_batch(NULL, NULL, NULL, 100)".to_owned(),
        format!(
            "SELECT * FROM byoc_operator_swap_envelopes(ARRAY['{credential_id}'::uuid], ARRAY['\\x01'::bytea], \
             ARRAY[1::bigint], ARRAY['\\x02'::bytea], ARRAY[2::bigint], 'user:{stranger}')"
        ),
        format!(
            "SELECT * FROM byoc_operator_import_credential(gen_random_uuid(), '{a_id}', 'twilio', '\\x01', 1, \
             'planted', NULL, NULL, 'service:x', '{{}}')"
        ),
        "SELECT * FROM byoc_operator_create_organization('rogue', 80)".to_owned(),
        "SELECT * FROM byoc_operator_verify_audit_chains(NULL)".to_owned(),
        format!("SELECT * FROM byoc_operator_audit_chain_hashes('{a_id}', ARRAY[1])"),
        format!(
            "SELECT * FROM byoc_operator_add_master_key(9, 'alias/rogue', '\\x01', '\\x{}')",
            "ab".repeat(32)
        ),
        format!(
            "INSERT INTO master_keys (key_version, kms_key_id, ciphertext, check_value) \
             VALUES (9, 'alias/rogue', '\\x01', '\\x{}')",
            "ab".repeat(32)
        ),
    ];
    let owner = a.owner.actor.user_id().unwrap().as_uuid();
    for context in ["SELECT 1".to_owned(), context_sql(a_id, Some(owner), None)] {
        for attempt in &attempts {
            let mut transaction = app.begin().await.unwrap();
            sqlx::query(&context)
                .execute(&mut *transaction)
                .await
                .unwrap();
            let error = sqlx::query(attempt)
                .execute(&mut *transaction)
                .await
                .unwrap_err();
            assert_eq!(sql_state(&error), "42501", "{attempt}");
            transaction.rollback().await.unwrap();
        }
    }
    app.close().await;

    // The store says so without asking the database; the operator's store does the work, and cannot read a
    // tenant table itself.
    let refused = database
        .store()
        .operator_create_organization(
            &OrganizationName::parse("Rogue").unwrap(),
            HotLeadThreshold::DEFAULT,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Denied { message } if message.contains("byoc_operator")),
        "{refused}"
    );
    let operator = role_pool(&database.operator_url(), "byoc_operator").await;
    let error = sqlx::query("SELECT count(*) FROM organization_api_credentials")
        .fetch_one(&operator)
        .await
        .unwrap_err();
    assert_eq!(sql_state(&error), "42501");
    // master_keys: the operator adds versions only through its function, and changes none.
    let new_key = NewMasterKey {
        key_version: std::num::NonZeroU32::new(3).unwrap(),
        kms_key_id: "alias/byoc".to_owned(),
        ciphertext: vec![1, 2, 3],
        check_value: vec![0xcd; 32],
    };
    let refused = database
        .store()
        .operator_add_master_key(&new_key)
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Denied { .. }), "{refused}");
    let added = database
        .operator()
        .operator_add_master_key(&new_key)
        .await
        .unwrap();
    assert_eq!(added.kms_key_id, "alias/byoc");
    for statement in [
        "UPDATE master_keys SET kms_key_id = 'alias/other'",
        "DELETE FROM master_keys",
    ] {
        let error = sqlx::query(statement).execute(&operator).await.unwrap_err();
        assert_eq!(sql_state(&error), "42501", "{statement}");
    }
    operator.close().await;
    // byoc_app reads the versions (the service unwraps them at start) and changes none.
    let app = role_pool(&database.app_url(), "byoc_app").await;
    let versions: Vec<i64> = sqlx::query_scalar("SELECT key_version FROM master_keys")
        .fetch_all(&app)
        .await
        .unwrap();
    assert_eq!(versions, vec![3]);
    for statement in [
        "UPDATE master_keys SET kms_key_id = 'alias/other'",
        "DELETE FROM master_keys",
    ] {
        let error = sqlx::query(statement).execute(&app).await.unwrap_err();
        assert_eq!(sql_state(&error), "42501", "{statement}");
    }
    app.close().await;
    superuser.close().await;
}

#[tokio::test]
async fn member_level_functions_keep_to_the_members_rights() {
    let database = fresh_postgres().await;
    let (a, credential_id) = one_org(&database).await;
    let app = role_pool(&database.app_url(), "byoc_app").await;
    let a_id = a.id.as_uuid();
    let member = a.member.actor.user_id().unwrap().as_uuid();
    let admin = a.admin.actor.user_id().unwrap().as_uuid();
    let owner = a.owner.actor.user_id().unwrap().as_uuid();
    let as_member = context_sql(a_id, Some(member), None);

    // Verifying is an admin's action: a member's context records no outcome, not even `failed`.
    for status in ["verified", "failed"] {
        let mut transaction = app.begin().await.unwrap();
        sqlx::query(&as_member)
            .execute(&mut *transaction)
            .await
            .unwrap();
        let error = sqlx::query("SELECT byoc_record_verification($1, $2, NULL)")
            .bind(credential_id)
            .bind(status)
            .execute(&mut *transaction)
            .await
            .unwrap_err();
        assert_eq!(sql_state(&error), "42501", "{status}");
        transaction.rollback().await.unwrap();
    }
    let mut transaction = app.begin().await.unwrap();
    sqlx::query(&context_sql(a_id, Some(admin), None))
        .execute(&mut *transaction)
        .await
        .unwrap();
    let recorded: bool =
        sqlx::query_scalar("SELECT byoc_record_verification($1, 'verified', NULL)")
            .bind(credential_id)
            .fetch_one(&mut *transaction)
            .await
            .unwrap();
    assert!(recorded, "an admin records an outcome");
    transaction.rollback().await.unwrap();

    // The review's forged event: a back-dated `purged` naming another user. There is no way to name an actor
    // or a time any more, and `purged` needs the owner.
    let old_signature: Option<String> = sqlx::query_scalar(
        "SELECT to_regprocedure('byoc_append_audit_events(uuid, timestamptz[], text[], text[], uuid[], \
         text[], text[])')::text",
    )
    .fetch_one(&app)
    .await
    .unwrap();
    assert_eq!(old_signature, None);
    let append = |action: &str| {
        format!(
            "SELECT byoc_append_audit_events('{a_id}', ARRAY['{action}'], ARRAY[$1::uuid], ARRAY['twilio'], \
             ARRAY['{{}}'])"
        )
    };
    for (context, action) in [
        (&as_member, "purged"),
        (&as_member, "created"),
        (&as_member, "deactivated"),
        (&as_member, "verified"),
        (&context_sql(a_id, Some(admin), None), "purged"),
    ] {
        let mut transaction = app.begin().await.unwrap();
        sqlx::query(context)
            .execute(&mut *transaction)
            .await
            .unwrap();
        let error = sqlx::query(&append(action))
            .bind(credential_id)
            .execute(&mut *transaction)
            .await
            .unwrap_err();
        assert_eq!(sql_state(&error), "42501", "{action}");
        transaction.rollback().await.unwrap();
    }
    for (user, action) in [(member, "read"), (owner, "purged")] {
        let mut transaction = app.begin().await.unwrap();
        sqlx::query(&context_sql(a_id, Some(user), None))
            .execute(&mut *transaction)
            .await
            .unwrap();
        sqlx::query(&append(action))
            .bind(credential_id)
            .execute(&mut *transaction)
            .await
            .unwrap();
        let row = sqlx::query(
            "SELECT actor, action, abs(extract(epoch FROM at - clock_timestamp())) < 5 AS now_ish \
             FROM credential_audit_log ORDER BY seq DESC LIMIT 1",
        )
        .fetch_one(&mut *transaction)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>("actor"), format!("user:{user}"));
        assert_eq!(row.get::<String, _>("action"), action);
        assert!(row.get::<bool, _>("now_ish"), "the server's time");
        transaction.commit().await.unwrap();
    }
    app.close().await;
}

#[tokio::test]
async fn a_service_context_needs_a_login_granted_byoc_service() {
    let database = fresh_postgres().await;
    let (a, credential_id) = one_org(&database).await;
    let as_service = context_sql(a.id.as_uuid(), None, Some("lead-scorer"));

    // The user-request login sets a service context: it sees nothing and may do nothing.
    let app = role_pool(&database.app_url(), "byoc_app").await;
    let mut transaction = app.begin().await.unwrap();
    sqlx::query(&as_service)
        .execute(&mut *transaction)
        .await
        .unwrap();
    let (visible, is_service): (i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM organization_api_credentials), byoc_ctx_is_service()",
    )
    .fetch_one(&mut *transaction)
    .await
    .unwrap();
    assert_eq!((visible, is_service), (0, false));
    for refused in [
        "SELECT byoc_record_verification($1, 'failed', 'x')",
        "SELECT byoc_append_audit_events(current_setting('byoc.org_id')::uuid, ARRAY['read'], \
         ARRAY[$1::uuid], ARRAY['twilio'], ARRAY['{}'])",
    ] {
        let mut savepoint = sqlx::Connection::begin(&mut *transaction).await.unwrap();
        let error = sqlx::query(refused)
            .bind(credential_id)
            .execute(&mut *savepoint)
            .await
            .unwrap_err();
        assert_eq!(sql_state(&error), "42501", "{refused}");
        savepoint.rollback().await.unwrap();
    }
    transaction.rollback().await.unwrap();
    app.close().await;

    // The service's login may.
    let service = role_pool(&database.service_url(), "byoc_app").await;
    let mut transaction = service.begin().await.unwrap();
    sqlx::query(&as_service)
        .execute(&mut *transaction)
        .await
        .unwrap();
    let (visible, is_service): (i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM organization_api_credentials), byoc_ctx_is_service()",
    )
    .fetch_one(&mut *transaction)
    .await
    .unwrap();
    assert_eq!((visible, is_service), (1, true));
    transaction.rollback().await.unwrap();
    service.close().await;

    // Through the store: a store with only the user-request login refuses a service tenant with the grant it
    // lacks; the test store (a service login of its own) serves it.
    let users_only = PostgresStore::connect(&database.app_url()).await.unwrap();
    let report = users_only.login_report().await.unwrap();
    assert!(
        !report.acts_as_service && !report.superuser && !report.operator,
        "{report:?}"
    );
    for refusal in [
        users_only
            .get_active_credential(&a.service, CredentialType::Twilio)
            .await
            .map(|_| ()),
        users_only.list_credentials(&a.service).await.map(|_| ()),
    ] {
        assert!(
            matches!(&refusal, Err(StoreError::Denied { message }) if message.contains("byoc_service")),
            "{refusal:?}"
        );
    }
    users_only.close().await;
    let both = database.store().login_report().await.unwrap();
    assert_eq!(
        both.service_login.as_deref(),
        Some(byoc_credential_store::test_support::SERVICE_LOGIN)
    );
    assert!(database
        .store()
        .get_active_credential(&a.service, CredentialType::Twilio)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn a_login_made_for_one_database_cannot_connect_to_another() {
    let first = fresh_postgres().await;
    let second = fresh_postgres().await;
    let superuser = first.superuser_pool(1).await;
    for database in [&first, &second] {
        let pool = database.superuser_pool(1).await;
        let public: Vec<String> = sqlx::query_scalar(
            "SELECT privilege_type FROM pg_database, aclexplode(datacl) \
             WHERE datname = current_database() AND grantee = 0",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(public.is_empty(), "PUBLIC may not {public:?}");
        pool.close().await;
    }
    // A login for the first database, granted the cluster-wide byoc_app as the docs say.
    let login = format!("byoc_test_cross_{}", Uuid::new_v4().simple());
    superuser
        .execute(
            format!(
                "CREATE ROLE {login} LOGIN IN ROLE byoc_app; \
                 GRANT CONNECT ON DATABASE \"{}\" TO {login}",
                first.database_name()
            )
            .as_str(),
        )
        .await
        .unwrap();
    let url = |database: &TestPostgres| {
        let mut url = url::Url::parse(&database.app_url()).unwrap();
        url.set_username(&login).unwrap();
        url.to_string()
    };
    let connected = PostgresStore::connect(&url(&first)).await;
    assert!(connected.is_ok(), "{:?}", connected.err());
    connected.unwrap().close().await;
    let refused = PostgresStore::connect(&url(&second)).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("permission denied for database"),
        "{refused}"
    );
    superuser
        .execute(
            format!(
                "REVOKE CONNECT ON DATABASE \"{}\" FROM {login}; DROP ROLE {login}",
                first.database_name()
            )
            .as_str(),
        )
        .await
        .unwrap();
    superuser.close().await;
}

#[tokio::test]
async fn the_owner_is_no_superuser_and_sees_no_tenant_rows() {
    let database = fresh_postgres().await;
    one_org(&database).await;
    let owner = database.owner_pool(1).await;
    let (superuser, creates_roles, in_app): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreaterole, pg_has_role(current_user, 'byoc_app', 'MEMBER') \
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!((superuser, creates_roles, in_app), (false, true, false));
    let owners: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT pg_get_userbyid(relowner)::text FROM pg_class \
         WHERE relnamespace = 'public'::regnamespace \
         UNION SELECT DISTINCT pg_get_userbyid(proowner)::text FROM pg_proc \
         WHERE pronamespace = 'public'::regnamespace",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    assert_eq!(owners, [OWNER_LOGIN]);
    for table in [
        "organizations",
        "organization_members",
        "organization_api_credentials",
        "credential_audit_log",
        "credential_audit_chain_heads",
        "sms_messages",
    ] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&owner)
            .await
            .unwrap();
        assert_eq!(
            rows, 0,
            "forced row-level security binds the owner's own session on {table}"
        );
    }
    owner.close().await;
}

#[tokio::test]
async fn migrating_names_its_cause_in_one_line() {
    let database = fresh_postgres().await;
    let admin = database.superuser_pool(1).await;
    let name = format!("byoc_test_{}", Uuid::new_v4().simple());
    let stranger = format!("byoc_test_stranger_{}", Uuid::new_v4().simple());
    for statement in [
        format!("CREATE DATABASE {name}"),
        format!("CREATE ROLE {stranger} LOGIN CREATEROLE"),
        format!("GRANT byoc_app TO {stranger}"),
    ] {
        admin.execute(statement.as_str()).await.unwrap();
    }
    let url = |login: &str| {
        let mut url = url::Url::parse(&database.owner_url()).unwrap();
        url.set_username(login).unwrap();
        url.set_path(&name);
        url.to_string()
    };
    // A database owned by someone else.
    let error = byoc_credential_store::migrate(&url(OWNER_LOGIN))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("must run as the owner of database") && !error.contains('\n'),
        "{error}"
    );
    // An owner that is a member of byoc_app.
    admin
        .execute(format!("ALTER DATABASE {name} OWNER TO {stranger}").as_str())
        .await
        .unwrap();
    let error = byoc_credential_store::migrate(&url(&stranger))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("must not be a member of byoc_app")
            && error.contains("REVOKE byoc_app")
            && !error.contains('\n'),
        "{error}"
    );
    for statement in [
        format!("DROP DATABASE {name}"),
        format!("DROP ROLE {stranger}"),
    ] {
        admin.execute(statement.as_str()).await.unwrap();
    }
    admin.close().await;
}

#[tokio::test]
async fn the_service_refuses_a_login_that_cannot_take_its_role() {
    let database = fresh_postgres().await;
    // The owner is not a member of byoc_app (by design): the service refuses it with the grant it lacks.
    let refused = PostgresStore::connect(&database.owner_url())
        .await
        .unwrap_err();
    let message = refused.to_string();
    assert!(
        message.contains(&format!(
            "the login {OWNER_LOGIN} cannot take the role byoc_app"
        )) && message.contains("GRANT byoc_app"),
        "{message}"
    );
    // And a user-request login cannot take the operator's role.
    let refused = PostgresStore::connect_operator(&database.app_url())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("byoc_operator"), "{refused}");
    let tenant = Tenant::user(
        byoc_credential_store::OrgId::new_random(),
        byoc_credential_store::UserId::new_random(),
    );
    assert!(database.store().list_credentials(&tenant).await.is_err());
}

#[tokio::test]
async fn a_members_email_and_name_are_written_only_by_its_definer_function() {
    let database = fresh_postgres().await;
    let (a, _) = one_org(&database).await;
    let app = role_pool(&database.app_url(), "byoc_app").await;
    let a_id = a.id.as_uuid();
    let member = a.member.actor.user_id().unwrap().as_uuid();
    let owner = a.owner.actor.user_id().unwrap().as_uuid();

    // Not even an owner may write the columns directly (byoc_app has no UPDATE on them).
    for user in [member, owner] {
        let mut transaction = app.begin().await.unwrap();
        sqlx::query(&context_sql(a_id, Some(user), None))
            .execute(&mut *transaction)
            .await
            .unwrap();
        let error = sqlx::query(
            "UPDATE organization_members SET email = 'forged@example.com' WHERE org_id = $1",
        )
        .bind(a_id)
        .execute(&mut *transaction)
        .await
        .unwrap_err();
        assert_eq!(sql_state(&error), "42501", "{user}");
        transaction.rollback().await.unwrap();
    }

    // The function writes the context user's own row only.
    let mut transaction = app.begin().await.unwrap();
    sqlx::query(&context_sql(a_id, Some(member), None))
        .execute(&mut *transaction)
        .await
        .unwrap();
    let changed: bool =
        sqlx::query_scalar("SELECT byoc_record_member_profile('dana@example.com', 'Dana')")
            .fetch_one(&mut *transaction)
            .await
            .unwrap();
    assert!(changed);
    transaction.commit().await.unwrap();
    let superuser = database.superuser_pool(1).await;
    let emails: Vec<(Uuid, Option<String>)> =
        sqlx::query_as("SELECT user_id, email FROM organization_members WHERE email IS NOT NULL")
            .fetch_all(&superuser)
            .await
            .unwrap();
    assert_eq!(emails, vec![(member, Some("dana@example.com".to_owned()))]);
    superuser.close().await;

    // A service context is refused.
    let mut transaction = app.begin().await.unwrap();
    sqlx::query(&context_sql(a_id, None, Some("lead-scorer")))
        .execute(&mut *transaction)
        .await
        .unwrap();
    let error = sqlx::query("SELECT byoc_record_member_profile('x@example.com', NULL)")
        .execute(&mut *transaction)
        .await
        .unwrap_err();
    assert_eq!(sql_state(&error), "42501");
    transaction.rollback().await.unwrap();
}

/// The service's cross-organization work (re-verification claims, the outbox of credential events) needs a login
/// granted byoc_service: byoc_app on the user-request login is refused, whatever context it sets.
#[tokio::test]
async fn claiming_reverifications_and_events_needs_a_service_login() {
    let database = fresh_postgres().await;
    let (a, _) = one_org(&database).await;
    let app = role_pool(&database.app_url(), "byoc_app").await;
    for call in [
        "SELECT * FROM public.byoc_claim_due_reverifications(1, 10)",
        "SELECT * FROM public.byoc_claim_credential_events(10, 60)",
        "SELECT public.byoc_finish_credential_event(gen_random_uuid(), true, 0, NULL)",
        "SELECT public.byoc_prune_credential_events(1)",
        "SELECT * FROM public.byoc_audit_digests_due(1, 10)",
        "SELECT * FROM public.byoc_unfiled_audit_digests(10)",
        "SELECT public.byoc_mark_audit_digest_filed(gen_random_uuid(), 1)",
        "SELECT * FROM public.byoc_claim_audit_digest_deliveries(10, 60, 3600)",
        "SELECT public.byoc_finish_audit_digest_delivery(gen_random_uuid(), true, 0, NULL)",
        "SELECT public.byoc_prune_audit_digests(1)",
        "SELECT public.byoc_record_audit_digest(gen_random_uuid(), 1, 1, '\\x00', NULL, '{}', '\\x00', '\\x00', \
         now())",
    ] {
        for context in [
            "SELECT 1".to_owned(),
            context_sql(a.id.as_uuid(), None, Some("reverify")),
        ] {
            sqlx::query(&context).execute(&app).await.unwrap();
            let error = sqlx::query(call)
                .execute(&app)
                .await
                .expect_err("refused without a service login");
            assert!(
                error.to_string().contains("byoc_service"),
                "{call}: {error}"
            );
        }
    }
    // Counts carry no ids: the runtime role may read them.
    sqlx::query("SELECT * FROM public.byoc_credential_status_counts()")
        .execute(&app)
        .await
        .unwrap();
    // No table privilege on either table.
    for table in [
        "credential_events",
        "credential_reverify_schedule",
        "audit_digests",
    ] {
        let error = sqlx::query(&format!("SELECT * FROM public.{table}"))
            .execute(&app)
            .await
            .expect_err("no privilege");
        assert!(error.to_string().contains("permission denied"), "{error}");
    }
    app.close().await;
}
