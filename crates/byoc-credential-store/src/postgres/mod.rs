//! The Postgres backend: all work as `byoc_app` under row-level security, with the tenant context set per
//! transaction.

mod notify;
mod payload;

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{ConnectOptions, Connection, Executor, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::access::{audit_action_need, check, check_grant, clip_verification_error, Need};
use crate::digests::{AuditDigestDelivery, AuditDigestDue, NewAuditDigest, StoredAuditDigest};
use crate::error::{StoreError, StoreResult};
use crate::health::{
    limit_for_db, whole_seconds, CredentialEvent, CredentialEventId, CredentialStatusCount,
    DueReverification, EventDelivery,
};
use crate::model::{
    delivery_rank, delivery_rank_sql, AuditChainHead, AuditChainReport, AuditChainStatus,
    AuditEvent, AuditFilter, AuditPage, CredentialMetadata, CredentialRecord, CredentialType,
    DashboardSession, EncryptedEnvelope, EnvelopeCursor, EnvelopeSwap, HotLeadThreshold, Imported,
    KeyVersionCount, LoginLinkHash, LoginLinkRedemption, Member, MemberProfile, NewAuditEvent,
    NewCredential, NewDashboardSession, NewLoginLink, NewOAuthState, NewSmsMessage, OAuthState,
    OperatorEnvelope, Organization, OrganizationAuditChain, OrganizationName, Role, SessionIdHash,
    SmsMessage, SmsStatusUpdate, StoredKeyCheckValue, UsageCounter, VerificationOutcome, DELIVERED,
    FINAL_DELIVERY_RANK,
};
use crate::model::{NewMasterKey, StoredMasterKey};
use crate::repository::{ChangeListener, CredentialRepository};
use crate::tenant::{Actor, CredentialId, OAuthStateId, OrgId, ServiceName, Tenant, UserId};

use crate::rows::{
    self, audit_digest_delivery, audit_digest_due, audit_event, credential_event,
    credential_metadata, credential_record, credential_status_count, due_reverification,
    key_check_value, master_key, member, oauth_state, operator_envelope, organization,
    role_from_row, sms_message, stored_audit_digest, usage_counter, ReadRow, CREDENTIAL_COLUMNS,
    MASTER_KEY_COLUMNS, SMS_COLUMNS,
};

crate::rows::impl_read_row!(
    PgRow,
    uuid = |row, column| Ok(row.try_get::<Uuid, _>(column)?),
    opt_uuid = |row, column| Ok(row.try_get::<Option<Uuid>, _>(column)?)
);

/// The columns of a membership row, as [`member`] reads them.
const MEMBER_COLUMNS: &str = "org_id, user_id, role, created_at, email, name";

/// Organization columns (the threshold widened to bigint for [`rows::ReadRow::int`]).
const ORGANIZATION_COLUMNS: &str =
    "id, name, hot_lead_threshold::bigint AS hot_lead_threshold, created_at, updated_at";

/// Audit columns (`detail` as text: the store hands JSON around as text).
const AUDIT_COLUMNS: &str =
    "id, org_id, seq, at, actor, action, credential_id, credential_type, detail::text AS detail";

/// The start of every tenant read: a MATERIALIZED CTE `ctx` that sets the transaction-local tenant context
/// (`$1` organization, `$2` user, `$3` service; an absent one is set empty) and yields the organization as
/// `ctx.org_id`. Each read then takes its rows from a LATERAL subquery that references `ctx.org_id` and
/// cannot be pulled up (LIMIT), so the only plan is a nested loop with `ctx` on the outer side: the context
/// is set before the subquery runs and before the policies' initplans are first evaluated (they are
/// evaluated lazily). The statement runs on the pool, outside any transaction block, in an implicit
/// transaction that ends with it, which discards the context (isolation tests check that nothing leaks to the
/// next statement on the connection).
macro_rules! tenant_context {
    () => {
        "WITH ctx AS MATERIALIZED (\
             SELECT pg_catalog.set_config('byoc.org_id', $1::uuid::text, true)::uuid AS org_id, \
                    pg_catalog.set_config('byoc.user_id', coalesce($2::uuid::text, ''), true) AS user_id, \
                    pg_catalog.set_config('byoc.service', coalesce($3::text, ''), true) AS service) "
    };
}

/// `ctx_allowed` of a tenant read: whether the actor may read in the organization (a member or a calling
/// service), and `ctx_matched`: whether a row matched. Allowed is true whenever a row came back (the policies
/// let it through); otherwise asked explicitly, after the context is set (the projection of the join runs after
/// its outer side). `c` is the read's subquery.
macro_rules! ctx_allowed {
    () => {
        "CASE WHEN c.id IS NOT NULL THEN true \
              ELSE public.byoc_ctx_is_service() OR public.byoc_ctx_member_role() IS NOT NULL END AS ctx_allowed, \
         c.id IS NOT NULL AS ctx_matched"
    };
}

/// The columns of a credential read with its envelope, from the subquery `c`.
macro_rules! credential_record_columns {
    () => {
        "c.id, c.org_id, c.credential_type, c.display_name, c.public_hint, c.provider_account_id, \
         c.is_active, c.verification_status, c.last_verified_at, c.verification_error, c.created_at, \
         c.updated_at, c.created_by, c.encryption_key_version, c.encrypted_data"
    };
}

/// Tenant read of one credential by id (`$4`), with its envelope.
const TENANT_CREDENTIAL_BY_ID: &str = concat!(
    tenant_context!(),
    "SELECT ",
    ctx_allowed!(),
    ", ",
    credential_record_columns!(),
    " FROM ctx LEFT JOIN LATERAL (\
         SELECT * FROM public.organization_api_credentials c \
         WHERE c.org_id = ctx.org_id AND c.id = $4 LIMIT 1) c ON true"
);

/// Tenant read of the credential of a type (`$4`) that wins: active, verified first, newest, largest id
/// (read in that order off `organization_api_credentials_winner_idx`, migration 0008).
const TENANT_WINNING_CREDENTIAL: &str = concat!(
    tenant_context!(),
    "SELECT ",
    ctx_allowed!(),
    ", ",
    credential_record_columns!(),
    " FROM ctx LEFT JOIN LATERAL (\
         SELECT * FROM public.organization_api_credentials c \
         WHERE c.org_id = ctx.org_id AND c.credential_type = $4 AND c.is_active \
         ORDER BY (c.verification_status = 'verified') DESC, c.created_at DESC, c.id DESC LIMIT 1) c ON true"
);

/// Tenant read of the organization itself.
const TENANT_ORGANIZATION: &str = concat!(
    tenant_context!(),
    "SELECT ",
    ctx_allowed!(),
    ", c.id, c.name, c.hot_lead_threshold::bigint AS hot_lead_threshold, c.created_at, c.updated_at \
     FROM ctx LEFT JOIN LATERAL (\
         SELECT * FROM public.organizations c WHERE c.id = ctx.org_id LIMIT 1) c ON true"
);

/// The context user's role in the context organization (NULL for none), in one statement.
const TENANT_MEMBER_ROLE: &str = concat!(
    tenant_context!(),
    "SELECT public.byoc_ctx_member_role() AS role FROM ctx"
);

/// Tenant read of every credential of the organization, newest first, metadata only. The LATERAL subquery is
/// kept from being pulled up by `OFFSET 0` (as the one-row reads are by `LIMIT 1`), so the context is set first.
/// Returns one row with `id` NULL when there is none.
static TENANT_CREDENTIAL_LIST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{context}SELECT {allowed}, c.* FROM ctx LEFT JOIN LATERAL (\
             SELECT {CREDENTIAL_COLUMNS} FROM public.organization_api_credentials \
             WHERE org_id = ctx.org_id ORDER BY created_at DESC, id DESC OFFSET 0) c ON true \
         ORDER BY c.created_at DESC, c.id DESC",
        context = tenant_context!(),
        allowed = ctx_allowed!(),
    )
});

/// Tenant read of one page of the organization's audit events, newest first: before the event id `$4` (the
/// largest bigint for the first page), at most `$5`, and of those only the ones with action `$6`, credential `$7`, actor `$8`, at or
/// after `$9` and before `$10` (each condition off when NULL). Returns one row with `id` NULL when there is none.
/// The cursor is never NULL, and compared plainly (`id < $4`): only so is it an index condition in the generic
/// plan of the prepared statement (`$4 IS NULL OR id < $4` and `coalesce` are filters), and a page deep in a long
/// log starts at its cursor instead of scanning every newer event (an export reads a million events a thousand at
/// a time: 284 ms against 1.6 ms for a page near the millionth event).
static TENANT_AUDIT_PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{context}SELECT {allowed}, c.* FROM ctx LEFT JOIN LATERAL (\
             SELECT {AUDIT_COLUMNS} FROM public.credential_audit_log \
             WHERE org_id = ctx.org_id AND id < $4::bigint \
               AND ($6::text IS NULL OR action = $6) AND ($7::uuid IS NULL OR credential_id = $7) \
               AND ($8::text IS NULL OR actor = $8) AND ($9::timestamptz IS NULL OR at >= $9) \
               AND ($10::timestamptz IS NULL OR at < $10) \
             ORDER BY id DESC LIMIT $5) c ON true \
         ORDER BY c.id DESC",
        context = tenant_context!(),
        allowed = ctx_allowed!(),
    )
});

pub use notify::{CredentialChangeListener, CREDENTIAL_CHANGES_CHANNEL};

/// The Postgres migrations (`migrations/postgres`), embedded.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Default number of pooled connections.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// How long to wait for a pooled connection before reporting the database unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle this long is pinged before it is handed out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Applies the Postgres migrations with the owner's URL (`byoc migrate`). Idempotent; safe to run from many
/// processes and against many databases of one cluster at once.
pub async fn migrate(owner_url: &str) -> StoreResult<()> {
    let options = PgConnectOptions::from_str(owner_url).map_err(invalid_url)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
    // sqlx creates its bookkeeping table before the first migration runs, so a login that does not own the
    // database would fail there with only "permission denied for schema public": say what is wrong first.
    let owns: Option<(bool, String, String)> = sqlx::query_as(
        "SELECT pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE'), d.datname::text, \
                pg_catalog.pg_get_userbyid(d.datdba)::text \
         FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
    )
    .fetch_optional(&pool)
    .await?;
    if let Some((false, database, owner)) = owns {
        pool.close().await;
        return Err(StoreError::Denied {
            message: format!(
                "byoc migrate must run as the owner of database {database} (owned by {owner}): use the \
                 owner's URL, or ALTER DATABASE {database} OWNER TO <the role in DATABASE_URL>"
            ),
        });
    }
    let outcome = MIGRATOR.run(&pool).await;
    pool.close().await;
    outcome.map_err(crate::error::from_migrate_error)?;
    tracing::info!(
        migrations = MIGRATOR.iter().count(),
        "postgres schema is up to date"
    );
    Ok(())
}

fn invalid_url(error: sqlx::Error) -> StoreError {
    StoreError::Internal {
        context: "DATABASE_URL is not a valid Postgres URL".to_owned(),
        source: Some(error),
    }
}

/// Which of the schema's roles a store's connections act as: every new connection runs `SET ROLE` to it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseRole {
    /// `byoc_app`: tenant work under row-level security (the service, and services using this crate).
    App,
    /// `byoc_operator`: the cross-organization operator functions (`byoc` CLI, rotation, `keys check`).
    Operator,
}

impl DatabaseRole {
    /// The role's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            DatabaseRole::App => "byoc_app",
            DatabaseRole::Operator => "byoc_operator",
        }
    }
}

/// Where and as whom a [`PostgresStore`] connects.
#[derive(Clone, Debug)]
pub struct PostgresConnectOptions {
    /// The login for user requests (and for everything when `services` is `None`).
    pub login: PgConnectOptions,
    /// A separate login for work in a service context (a member of `byoc_service`), so that the login that
    /// serves users' requests cannot act as a service whatever SQL it runs.
    pub service_login: Option<PgConnectOptions>,
    /// Connections per pool.
    pub max_connections: u32,
    /// The role every connection takes.
    pub role: DatabaseRole,
}

impl PostgresConnectOptions {
    /// One login from a URL, as `role`, with [`DEFAULT_MAX_CONNECTIONS`].
    pub fn from_url(database_url: &str, role: DatabaseRole) -> StoreResult<Self> {
        Ok(PostgresConnectOptions {
            login: PgConnectOptions::from_str(database_url).map_err(invalid_url)?,
            service_login: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            role,
        })
    }

    /// Uses a separate login (URL) for work in a service context.
    pub fn with_service_url(mut self, service_url: &str) -> StoreResult<Self> {
        self.service_login = Some(PgConnectOptions::from_str(service_url).map_err(invalid_url)?);
        Ok(self)
    }
}

/// What the store's logins may do, read from the database at connect; for the start-up log and for checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginReport {
    /// The login that serves user requests (`session_user`).
    pub login: String,
    /// Whether that login is a superuser (row-level security does not bind it; fine for development only).
    pub superuser: bool,
    /// Whether that login may act as a calling service (a member of `byoc_service`).
    pub acts_as_service: bool,
    /// Whether that login may take the operator role (a member of `byoc_operator`).
    pub operator: bool,
    /// The login used for service contexts, when it is another one.
    pub service_login: Option<String>,
}

/// The Postgres store. Every pooled connection runs `SET ROLE byoc_app` (or `byoc_operator` for the operator's
/// store) once when opened, so row-level security holds whichever login the URL names; a login that cannot take
/// the role is refused at connect with the grant it lacks.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    /// Connections for user requests (and for everything without a separate service login).
    pool: PgPool,
    /// Connections for service contexts, when they have a login of their own.
    service_pool: Option<PgPool>,
    role: DatabaseRole,
}

impl PostgresStore {
    /// Connects as `byoc_app` with one login and up to [`DEFAULT_MAX_CONNECTIONS`] connections.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        Self::connect_with_options(PostgresConnectOptions::from_url(
            database_url,
            DatabaseRole::App,
        )?)
        .await
    }

    /// Connects as `byoc_operator` (the operator CLI, rotation and `keys check`).
    pub async fn connect_operator(database_url: &str) -> StoreResult<Self> {
        Self::connect_with_options(PostgresConnectOptions::from_url(
            database_url,
            DatabaseRole::Operator,
        )?)
        .await
    }

    /// Connects as `byoc_app` with one login, explicit options and pool size.
    pub async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> StoreResult<Self> {
        Self::connect_with_options(PostgresConnectOptions {
            login: options,
            service_login: None,
            max_connections,
            role: DatabaseRole::App,
        })
        .await
    }

    /// Connects with everything explicit.
    pub async fn connect_with_options(options: PostgresConnectOptions) -> StoreResult<Self> {
        let pool = open_pool(options.login, options.max_connections, options.role).await?;
        let service_pool = match options.service_login {
            Some(service_login) => {
                match open_pool(service_login, options.max_connections, options.role).await {
                    Ok(service_pool) => Some(service_pool),
                    Err(error) => {
                        pool.close().await;
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        Ok(Self {
            pool,
            service_pool,
            role: options.role,
        })
    }

    /// The pool for user requests (every connection already in the store's role), for `LISTEN`/`NOTIFY` and
    /// benchmarks. Queries on it outside a tenant transaction see no tenant rows.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The role the store's connections act as.
    pub fn role(&self) -> DatabaseRole {
        self.role
    }

    /// What the store's logins may do (one query per pool).
    pub async fn login_report(&self) -> StoreResult<LoginReport> {
        let row = sqlx::query(LOGIN_REPORT).fetch_one(&self.pool).await?;
        let service_login = match &self.service_pool {
            Some(service_pool) => Some(
                sqlx::query(LOGIN_REPORT)
                    .fetch_one(service_pool)
                    .await?
                    .try_get("login")?,
            ),
            None => None,
        };
        Ok(LoginReport {
            login: row.try_get("login")?,
            superuser: row.try_get("superuser")?,
            acts_as_service: row.try_get("acts_as_service")?,
            operator: row.try_get("operator")?,
            service_login,
        })
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(service_pool) = &self.service_pool {
            service_pool.close().await;
        }
    }

    /// The pool a tenant's work runs on: the service login's for a service context.
    fn pool_for(&self, tenant: &Tenant) -> &PgPool {
        match (&tenant.actor, &self.service_pool) {
            (Actor::Service(_), Some(service_pool)) => service_pool,
            _ => &self.pool,
        }
    }

    /// The pool for the service's own cross-organization work (the service login's when it has one).
    fn service_work_pool(&self) -> &PgPool {
        self.service_pool.as_ref().unwrap_or(&self.pool)
    }

    /// Refuses an operator command on a store that did not connect as the operator.
    fn require_operator(&self) -> StoreResult<()> {
        match self.role {
            DatabaseRole::Operator => Ok(()),
            DatabaseRole::App => Err(StoreError::Denied {
                message: "operator commands need a store connected as byoc_operator \
                          (PostgresStore::connect_operator, with a login granted byoc_operator)"
                    .to_owned(),
            }),
        }
    }

    /// Opens a transaction with the tenant context set and returns the actor's role (users only).
    async fn begin(
        &self,
        tenant: &Tenant,
    ) -> StoreResult<(Transaction<'static, Postgres>, Option<Role>)> {
        let mut transaction = self.pool_for(tenant).begin().await?;
        let (user, service) = context_args(&tenant.actor);
        // byoc_enter_context is set_config('byoc.org_id' | 'byoc.user_id' | 'byoc.service', …, true); the
        // materialized CTE runs it before the role lookup reads the context.
        let row = sqlx::query(
            "WITH ctx AS MATERIALIZED (SELECT byoc_enter_context($1, $2, $3)) \
             SELECT byoc_ctx_member_role() AS role, byoc_ctx_is_service() AS service FROM ctx",
        )
        .bind(tenant.org_id.as_uuid())
        .bind(user)
        .bind(service)
        .fetch_one(&mut *transaction)
        .await?;
        if matches!(tenant.actor, Actor::Service(_)) && !row.try_get::<bool, _>("service")? {
            return Err(service_refused());
        }
        let role = role_from_row(&row)?;
        Ok((transaction, role))
    }

    /// Opens a tenant transaction and checks the actor against `need`.
    async fn begin_checked(
        &self,
        tenant: &Tenant,
        need: Need,
    ) -> StoreResult<(Transaction<'static, Postgres>, Option<Role>)> {
        let (transaction, role) = self.begin(tenant).await?;
        check(&tenant.actor, role, need)?;
        Ok((transaction, role))
    }

    /// Reads through one of the `TENANT_*` statements: context, membership check and row in one prepared
    /// round trip on the pool (never inside a transaction, see [`tenant_context!`]). The statement returns
    /// exactly one row: `ctx_allowed` (a member or a service of the org) and, when something matched, the
    /// row's columns (`id` NULL otherwise). `key` is bound as `$4` when given. Only for reads any member or
    /// service may do.
    async fn tenant_read(
        &self,
        tenant: &Tenant,
        sql: &'static str,
        key: Option<TenantReadKey>,
    ) -> StoreResult<Option<PgRow>> {
        let query = self.tenant_query(tenant, sql);
        let query = match key {
            Some(TenantReadKey::Id(id)) => query.bind(id.as_uuid()),
            Some(TenantReadKey::Type(credential_type)) => query.bind(credential_type.as_str()),
            None => query,
        };
        let row = query.fetch_one(self.pool_for(tenant)).await?;
        matched_row(tenant, row)
    }

    /// A tenant statement (one of the `TENANT_*`) with the context bound as `$1` to `$3`.
    fn tenant_query<'q>(
        &self,
        tenant: &'q Tenant,
        sql: &'q str,
    ) -> Query<'q, Postgres, PgArguments> {
        let (user, service) = context_args(&tenant.actor);
        sqlx::query(sql)
            .bind(tenant.org_id.as_uuid())
            .bind(user)
            .bind(service)
    }

    /// Runs a tenant statement that may match many rows, in one round trip on the pool (as
    /// [`Self::tenant_read`]): the matched rows, none when the statement's one row has `id` NULL.
    async fn tenant_rows(
        &self,
        tenant: &Tenant,
        query: Query<'_, Postgres, PgArguments>,
    ) -> StoreResult<Vec<PgRow>> {
        let mut matched = Vec::new();
        for row in query.fetch_all(self.pool_for(tenant)).await? {
            matched.extend(matched_row(tenant, row)?);
        }
        Ok(matched)
    }
}

/// A row of a tenant statement: refused when the actor may not read in the organization (`ctx_allowed` false),
/// `None` when nothing matched (`id` NULL).
fn matched_row(tenant: &Tenant, row: PgRow) -> StoreResult<Option<PgRow>> {
    if !row.try_get::<bool, _>("ctx_allowed")? {
        return Err(match tenant.actor {
            Actor::User(_) => StoreError::Forbidden {
                reason: "the user is not a member of this organization",
            },
            Actor::Service(_) => service_refused(),
        });
    }
    let matched = row.try_get::<bool, _>("ctx_matched")?;
    Ok(matched.then_some(row))
}

/// What the login of a pool may do (see [`LoginReport`]).
const LOGIN_REPORT: &str = "SELECT session_user::text AS login, \
     (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) AS superuser, \
     pg_catalog.pg_has_role(session_user, 'byoc_service', 'MEMBER') AS acts_as_service, \
     pg_catalog.pg_has_role(session_user, 'byoc_operator', 'MEMBER') AS operator";

/// A service context the database did not accept: the login is not a member of `byoc_service`.
fn service_refused() -> StoreError {
    StoreError::Denied {
        message:
            "this database login may not act as a calling service: grant it byoc_service, or give \
                  service contexts their own login (BYOC_SERVICE_DATABASE_URL)"
                .to_owned(),
    }
}

/// Opens a pool whose connections all take `role`. The login is tried once first, so that one that cannot
/// connect or cannot take the role is refused at once with the cause (the pool itself would retry until its
/// acquire timeout and report only that).
async fn open_pool(
    options: PgConnectOptions,
    max_connections: u32,
    role: DatabaseRole,
) -> StoreResult<PgPool> {
    let set_role: &'static str = match role {
        DatabaseRole::App => "SET ROLE byoc_app",
        DatabaseRole::Operator => "SET ROLE byoc_operator",
    };
    let mut probe = options.connect().await?;
    let took_role = probe.execute(set_role).await;
    // Closing the probe is best effort: the answer above is what counts.
    let _ = probe.close().await;
    took_role.map_err(|error| match StoreError::from_sqlx(error) {
        StoreError::Denied { message } => StoreError::Denied {
            message: format!(
                "the login {login} cannot take the role {role}: {message} (GRANT {role} TO {login}; the \
                 schema's owner is never the service's login)",
                login = options.get_username(),
                role = role.name(),
            ),
        },
        other => other,
    })?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |connection, _meta| {
            Box::pin(async move {
                connection.execute(set_role).await?;
                Ok(())
            })
        })
        // Pinging on every acquire would add a round trip to every call; only a connection idle for a
        // while is pinged (and replaced if the server dropped it meanwhile).
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await?)
}

/// The `$4` of a tenant read: a credential id or type.
#[derive(Clone, Copy)]
enum TenantReadKey {
    Id(CredentialId),
    Type(CredentialType),
}

/// The user and service arguments of a tenant read for an actor (the other one is NULL).
fn context_args(actor: &Actor) -> (Option<Uuid>, Option<&str>) {
    match actor {
        Actor::User(user_id) => (Some(user_id.as_uuid()), None),
        Actor::Service(name) => (None, Some(name.as_str())),
    }
}

/// Binds `$1`–`$5` of a `byoc_append_audit_events` call: the organization, then one array per event column,
/// in event order (the actor and time are the database's to set).
fn bind_audit_events<'q>(
    query: Query<'q, Postgres, PgArguments>,
    org_id: OrgId,
    events: &[NewAuditEvent],
) -> Query<'q, Postgres, PgArguments> {
    let mut actions = Vec::with_capacity(events.len());
    let mut credential_ids = Vec::with_capacity(events.len());
    let mut credential_types = Vec::with_capacity(events.len());
    let mut details = Vec::with_capacity(events.len());
    for event in events {
        actions.push(event.action.as_str().to_owned());
        credential_ids.push(event.credential_id.map(|id| id.as_uuid()));
        credential_types.push(event.credential_type.map(|kind| kind.as_str().to_owned()));
        details.push(event.detail.to_string());
    }
    query
        .bind(org_id.as_uuid())
        .bind(actions)
        .bind(credential_ids)
        .bind(credential_types)
        .bind(details)
}

/// The columns of a chain check row (`byoc_audit_chain_check`, migration 0002): Postgres checks chains in SQL.
const CHAIN_CHECK_COLUMNS: &str = "intact, events, first_broken_seq, problem, head_seq, head_hash";

/// A chain check row: its [`CHAIN_CHECK_COLUMNS`].
fn chain_report(row: &PgRow) -> StoreResult<AuditChainReport> {
    let events = rows::count(row.int("events")?)?;
    let status = if row.flag("intact")? {
        AuditChainStatus::Intact { events }
    } else {
        AuditChainStatus::Broken {
            events_checked: events,
            first_broken_seq: row.int("first_broken_seq")?,
            problem: row.opt_text("problem")?.unwrap_or_default(),
        }
    };
    let head = AuditChainHead::from_stored(row.try_get("head_seq")?, row.try_get("head_hash")?);
    Ok(AuditChainReport { status, head })
}

/// A delivery outcome as the finishing functions take it: delivered, seconds until the next attempt, the reason.
fn delivery_arguments(outcome: &EventDelivery) -> (bool, i32, Option<&str>) {
    match outcome {
        EventDelivery::Delivered => (true, 0, None),
        EventDelivery::Retry { after, error } => {
            (false, whole_seconds(*after), Some(error.as_str()))
        }
    }
}

fn key_version_to_db(version: NonZeroU32) -> i64 {
    i64::from(version.get())
}

fn not_found(what: &'static str) -> StoreError {
    StoreError::NotFound { what }
}

/// Maps a foreign-key violation (the organization does not exist) to `NotFound`.
fn missing_org(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database_error) if database_error.is_foreign_key_violation() => {
            not_found("organization")
        }
        _ => StoreError::from_sqlx(error),
    }
}

#[async_trait]
impl CredentialRepository for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn listen_for_changes(&self) -> StoreResult<Option<Box<dyn ChangeListener>>> {
        Ok(Some(Box::new(self.listen_credential_changes().await?)))
    }

    async fn operator_create_organization(
        &self,
        name: &OrganizationName,
        hot_lead_threshold: HotLeadThreshold,
    ) -> StoreResult<Organization> {
        self.require_operator()?;
        let row = sqlx::query(&format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM byoc_operator_create_organization($1, $2)"
        ))
        .bind(name.as_str())
        .bind(i32::from(hot_lead_threshold.get()))
        .fetch_one(&self.pool)
        .await?;
        organization(&row)
    }

    async fn get_organization(&self, tenant: &Tenant) -> StoreResult<Organization> {
        let row = self.tenant_read(tenant, TENANT_ORGANIZATION, None).await?;
        row.as_ref()
            .map(organization)
            .transpose()?
            .ok_or_else(|| not_found("organization"))
    }

    async fn set_hot_lead_threshold(
        &self,
        tenant: &Tenant,
        threshold: HotLeadThreshold,
    ) -> StoreResult<Organization> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::Manager).await?;
        let row = sqlx::query(&format!(
            "UPDATE organizations SET hot_lead_threshold = $2 WHERE id = $1 RETURNING {ORGANIZATION_COLUMNS}"
        ))
        .bind(tenant.org_id.as_uuid())
        .bind(i32::from(threshold.get()))
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| not_found("organization"))?;
        transaction.commit().await?;
        organization(&row)
    }

    async fn operator_add_member(
        &self,
        org_id: OrgId,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<Member> {
        self.require_operator()?;
        let row = sqlx::query(&format!(
            "SELECT {MEMBER_COLUMNS} FROM byoc_operator_add_member($1, $2, $3)"
        ))
        .bind(org_id.as_uuid())
        .bind(user_id.as_uuid())
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(missing_org)?;
        member(&row)
    }

    async fn add_member(
        &self,
        tenant: &Tenant,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<Member> {
        let (mut transaction, actor_role) = self.begin(tenant).await?;
        check_grant(&tenant.actor, actor_role, role)?;
        let row = sqlx::query(&format!(
            "INSERT INTO organization_members (org_id, user_id, role) VALUES ($1, $2, $3) \
             RETURNING {MEMBER_COLUMNS}"
        ))
        .bind(tenant.org_id.as_uuid())
        .bind(user_id.as_uuid())
        .bind(role.as_str())
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        member(&row)
    }

    async fn member_role(&self, tenant: &Tenant) -> StoreResult<Option<Role>> {
        let Some(user_id) = tenant.actor.user_id() else {
            return Ok(None);
        };
        let row = sqlx::query(TENANT_MEMBER_ROLE)
            .bind(tenant.org_id.as_uuid())
            .bind(user_id.as_uuid())
            .bind(None::<&str>)
            .fetch_one(&self.pool)
            .await?;
        role_from_row(&row)
    }

    async fn list_members(&self, tenant: &Tenant) -> StoreResult<Vec<Member>> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberUser).await?;
        let rows = sqlx::query(&format!(
            "SELECT {MEMBER_COLUMNS} FROM organization_members WHERE org_id = $1 ORDER BY user_id"
        ))
        .bind(tenant.org_id.as_uuid())
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        rows.iter().map(member).collect()
    }

    async fn record_member_profile(
        &self,
        tenant: &Tenant,
        profile: &MemberProfile,
    ) -> StoreResult<bool> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberUser).await?;
        let changed: bool = sqlx::query_scalar("SELECT byoc_record_member_profile($1, $2)")
            .bind(profile.email())
            .bind(profile.name())
            .fetch_one(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(changed)
    }

    async fn insert_credential(
        &self,
        tenant: &Tenant,
        credential: &NewCredential,
    ) -> StoreResult<CredentialMetadata> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::Manager).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO organization_api_credentials \
                 (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, public_hint, \
                  created_by, provider_account_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(credential.id.as_uuid())
        .bind(tenant.org_id.as_uuid())
        .bind(credential.credential_type.as_str())
        .bind(credential.encrypted_data.as_bytes())
        .bind(key_version_to_db(credential.encryption_key_version))
        .bind(credential.display_name.as_str())
        .bind(credential.public_hint.as_ref().map(|hint| hint.as_str()))
        .bind(tenant.actor.user_id().map(|user_id| user_id.as_uuid()))
        .bind(
            credential
                .provider_account_id
                .as_ref()
                .map(|account| account.as_str()),
        )
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        credential_metadata(&row)
    }

    async fn operator_import_credential(
        &self,
        org_id: OrgId,
        credential: &NewCredential,
        actor: &ServiceName,
        detail: &serde_json::Value,
    ) -> StoreResult<Imported> {
        self.require_operator()?;
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} \
             FROM byoc_operator_import_credential($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)"
        ))
        .bind(credential.id.as_uuid())
        .bind(org_id.as_uuid())
        .bind(credential.credential_type.as_str())
        .bind(credential.encrypted_data.as_bytes())
        .bind(key_version_to_db(credential.encryption_key_version))
        .bind(credential.display_name.as_str())
        .bind(credential.public_hint.as_ref().map(|hint| hint.as_str()))
        .bind(
            credential
                .provider_account_id
                .as_ref()
                .map(|account| account.as_str()),
        )
        .bind(Actor::Service(actor.clone()).to_string())
        .bind(detail.to_string())
        .fetch_one(&self.pool)
        .await
        .map_err(missing_org)?;
        let metadata = credential_metadata(&row)?;
        // The function returns the new row (with the id it was given) or the one already there.
        Ok(if metadata.id == credential.id {
            Imported::Created(metadata)
        } else {
            Imported::AlreadyPresent(metadata)
        })
    }

    async fn list_credentials(&self, tenant: &Tenant) -> StoreResult<Vec<CredentialMetadata>> {
        let query = self.tenant_query(tenant, &TENANT_CREDENTIAL_LIST);
        let rows = self.tenant_rows(tenant, query).await?;
        rows.iter().map(credential_metadata).collect()
    }

    async fn get_credential(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> StoreResult<CredentialRecord> {
        let row = self
            .tenant_read(tenant, TENANT_CREDENTIAL_BY_ID, Some(TenantReadKey::Id(id)))
            .await?;
        row.as_ref()
            .map(credential_record)
            .transpose()?
            .ok_or_else(|| not_found("credential"))
    }

    async fn get_active_credential(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> StoreResult<Option<CredentialRecord>> {
        let row = self
            .tenant_read(
                tenant,
                TENANT_WINNING_CREDENTIAL,
                Some(TenantReadKey::Type(credential_type)),
            )
            .await?;
        row.as_ref().map(credential_record).transpose()
    }

    async fn record_verification(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        outcome: &VerificationOutcome,
    ) -> StoreResult<CredentialMetadata> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::ManagerOrService).await?;
        let found: bool = sqlx::query_scalar("SELECT byoc_record_verification($1, $2, $3)")
            .bind(id.as_uuid())
            .bind(outcome.status.as_str())
            .bind(clip_verification_error(outcome.error.as_deref()))
            .fetch_one(&mut *transaction)
            .await?;
        if !found {
            return Err(not_found("credential"));
        }
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM organization_api_credentials WHERE id = $1 AND org_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(tenant.org_id.as_uuid())
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| not_found("credential"))?;
        transaction.commit().await?;
        credential_metadata(&row)
    }

    async fn deactivate_credential(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> StoreResult<CredentialMetadata> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::Manager).await?;
        let row = sqlx::query(&format!(
            "UPDATE organization_api_credentials SET is_active = false WHERE id = $1 AND org_id = $2 \
             RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(tenant.org_id.as_uuid())
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| not_found("credential"))?;
        transaction.commit().await?;
        credential_metadata(&row)
    }

    async fn purge_credential(&self, tenant: &Tenant, id: CredentialId) -> StoreResult<()> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::Owner).await?;
        let deleted =
            sqlx::query("DELETE FROM organization_api_credentials WHERE id = $1 AND org_id = $2")
                .bind(id.as_uuid())
                .bind(tenant.org_id.as_uuid())
                .execute(&mut *transaction)
                .await?
                .rows_affected();
        if deleted == 0 {
            return Err(not_found("credential"));
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn update_envelope(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        encrypted_data: &EncryptedEnvelope,
        encryption_key_version: NonZeroU32,
    ) -> StoreResult<CredentialMetadata> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::Manager).await?;
        let row = sqlx::query(&format!(
            "UPDATE organization_api_credentials SET encrypted_data = $3, encryption_key_version = $4 \
             WHERE id = $1 AND org_id = $2 RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(tenant.org_id.as_uuid())
        .bind(encrypted_data.as_bytes())
        .bind(key_version_to_db(encryption_key_version))
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| not_found("credential"))?;
        transaction.commit().await?;
        credential_metadata(&row)
    }

    async fn replace_rotated_envelope(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        expected: &EncryptedEnvelope,
        replacement: &EncryptedEnvelope,
        encryption_key_version: NonZeroU32,
    ) -> StoreResult<Option<CredentialMetadata>> {
        self.replace_rotated_envelope_row(tenant, id, expected, replacement, encryption_key_version)
            .await
    }

    async fn append_audit_event(
        &self,
        tenant: &Tenant,
        event: &NewAuditEvent,
    ) -> StoreResult<AuditEvent> {
        let (mut transaction, role) = self.begin_checked(tenant, Need::MemberOrService).await?;
        check(&tenant.actor, role, audit_action_need(&event.action))?;
        let seq: i64 = bind_audit_events(
            sqlx::query(
                "SELECT byoc_append_audit_events($1, $2::text[], $3::uuid[], $4::text[], $5::text[]) AS seq",
            ),
            tenant.org_id,
            std::slice::from_ref(event),
        )
        .fetch_one(&mut *transaction)
        .await?
        .try_get("seq")?;
        let row = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM credential_audit_log WHERE org_id = $1 AND seq = $2"
        ))
        .bind(tenant.org_id.as_uuid())
        .bind(seq)
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        audit_event(&row)
    }

    async fn append_audit_events(
        &self,
        tenant: &Tenant,
        events: &[NewAuditEvent],
    ) -> StoreResult<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        // One statement in its own implicit transaction: the context first (see `tenant_context!`), then the
        // chaining function, which checks it (the store's own check of each action's role is the function's).
        let (user, service) = context_args(&tenant.actor);
        bind_audit_events(
            sqlx::query(
                "WITH ctx AS MATERIALIZED (SELECT byoc_enter_context($1, $6, $7)) \
                 SELECT byoc_append_audit_events($1, $2::text[], $3::uuid[], $4::text[], $5::text[]) FROM ctx",
            ),
            tenant.org_id,
            events,
        )
        .bind(user)
        .bind(service)
        .execute(self.pool_for(tenant))
        .await
        .map_err(|error| match StoreError::from_sqlx(error) {
            StoreError::Denied { .. } => StoreError::Forbidden {
                reason: "the actor may not append these audit events (an action needs another role, or the \
                         login may not act as a service)",
            },
            other => other,
        })?;
        Ok(u64::try_from(events.len()).unwrap_or(u64::MAX))
    }

    async fn list_matching_audit_events(
        &self,
        tenant: &Tenant,
        filter: &AuditFilter,
        page: AuditPage,
    ) -> StoreResult<Vec<AuditEvent>> {
        let query = self
            .tenant_query(tenant, &TENANT_AUDIT_PAGE)
            .bind(page.before.map_or(i64::MAX, |id| id.0))
            .bind(i64::from(page.limit.clamp(1, 1000)))
            .bind(
                filter
                    .action
                    .as_ref()
                    .map(|action| action.as_str().to_owned()),
            )
            .bind(filter.credential_id.map(|id| id.as_uuid()))
            .bind(filter.actor.as_ref().map(ToString::to_string))
            .bind(filter.from)
            .bind(filter.to);
        let rows = self.tenant_rows(tenant, query).await?;
        rows.iter().map(audit_event).collect()
    }

    async fn verify_audit_chain(&self, tenant: &Tenant) -> StoreResult<AuditChainReport> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberOrService).await?;
        let row = sqlx::query(&format!(
            "SELECT {CHAIN_CHECK_COLUMNS} FROM byoc_verify_audit_chain()"
        ))
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        chain_report(&row)
    }

    async fn operator_verify_audit_chains(
        &self,
        org_id: Option<OrgId>,
    ) -> StoreResult<Vec<OrganizationAuditChain>> {
        self.require_operator()?;
        let rows = sqlx::query(&format!(
            "SELECT org_id, {CHAIN_CHECK_COLUMNS} FROM byoc_operator_verify_audit_chains($1)"
        ))
        .bind(org_id.map(|id| id.as_uuid()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| -> StoreResult<OrganizationAuditChain> {
                Ok(OrganizationAuditChain {
                    org_id: OrgId::from_uuid(row.uuid("org_id")?),
                    report: chain_report(row)?,
                })
            })
            .collect()
    }

    async fn key_check_values(&self) -> StoreResult<Vec<StoredKeyCheckValue>> {
        let rows = sqlx::query(
            "SELECT key_version, check_value, created_at FROM encryption_key_checks ORDER BY key_version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_check_value).collect()
    }

    async fn master_keys(&self) -> StoreResult<Vec<StoredMasterKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {MASTER_KEY_COLUMNS} FROM master_keys ORDER BY key_version"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(master_key).collect()
    }

    async fn operator_add_master_key(&self, key: &NewMasterKey) -> StoreResult<StoredMasterKey> {
        self.require_operator()?;
        key.check()?;
        let row = sqlx::query(&format!(
            "SELECT {MASTER_KEY_COLUMNS} FROM byoc_operator_add_master_key($1, $2, $3, $4)"
        ))
        .bind(key_version_to_db(key.key_version))
        .bind(&key.kms_key_id)
        .bind(&key.ciphertext)
        .bind(&key.check_value)
        .fetch_one(&self.pool)
        .await?;
        master_key(&row)
    }

    async fn insert_key_check_value_if_absent(
        &self,
        key_version: NonZeroU32,
        check_value: &[u8],
    ) -> StoreResult<StoredKeyCheckValue> {
        if check_value.is_empty() {
            return Err(crate::model::InvalidValue {
                field: "check_value",
                reason: "must not be empty",
            }
            .into());
        }
        sqlx::query(
            "INSERT INTO encryption_key_checks (key_version, check_value) VALUES ($1, $2) \
             ON CONFLICT (key_version) DO NOTHING",
        )
        .bind(key_version_to_db(key_version))
        .bind(check_value)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT key_version, check_value, created_at FROM encryption_key_checks WHERE key_version = $1",
        )
        .bind(key_version_to_db(key_version))
        .fetch_one(&self.pool)
        .await?;
        key_check_value(&row)
    }

    async fn insert_oauth_state(&self, tenant: &Tenant, state: &NewOAuthState) -> StoreResult<()> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::Manager).await?;
        let user_id = tenant.actor.user_id().ok_or(StoreError::Forbidden {
            reason: "a service may not do this",
        })?;
        sqlx::query(
            "INSERT INTO oauth_states \
                 (id, org_id, user_id, provider, pkce_verifier_envelope, client_credential_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(state.id.as_uuid())
        .bind(tenant.org_id.as_uuid())
        .bind(user_id.as_uuid())
        .bind(state.provider.as_str())
        .bind(state.pkce_verifier_envelope.as_bytes())
        .bind(state.client_credential_id.map(|id| id.as_uuid()))
        .bind(state.expires_at)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn consume_oauth_state(
        &self,
        tenant: &Tenant,
        id: OAuthStateId,
        now: DateTime<Utc>,
    ) -> StoreResult<OAuthState> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberUser).await?;
        let user_id = tenant.actor.user_id().ok_or(StoreError::Forbidden {
            reason: "a service may not do this",
        })?;
        // Deleting is what makes it single use; an expired state is deleted too, and reported as missing.
        let row = sqlx::query(
            "DELETE FROM oauth_states WHERE id = $1 AND org_id = $2 AND user_id = $3 \
             RETURNING id, org_id, user_id, provider, pkce_verifier_envelope, client_credential_id, created_at, \
                       expires_at",
        )
        .bind(id.as_uuid())
        .bind(tenant.org_id.as_uuid())
        .bind(user_id.as_uuid())
        .fetch_optional(&mut *transaction)
        .await?;
        transaction.commit().await?;
        let state = row
            .as_ref()
            .map(oauth_state)
            .transpose()?
            .ok_or_else(|| not_found("OAuth state"))?;
        if state.expires_at <= now {
            return Err(not_found("OAuth state"));
        }
        Ok(state)
    }

    async fn insert_sms_message(
        &self,
        tenant: &Tenant,
        message: &NewSmsMessage,
    ) -> StoreResult<SmsMessage> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberOrService).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO sms_messages \
                 (org_id, credential_id, provider_message_sid, to_masked, purpose, status, sent_at, \
                  status_updated_at, delivered_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, CASE WHEN $6 = '{DELIVERED}' THEN $7 END) \
             RETURNING {SMS_COLUMNS}"
        ))
        .bind(tenant.org_id.as_uuid())
        .bind(message.credential_id.map(|id| id.as_uuid()))
        .bind(message.provider_message_sid.as_str())
        .bind(message.to_masked.as_str())
        .bind(message.purpose.as_str())
        .bind(message.status.as_str())
        .bind(message.sent_at)
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        sms_message(&row)
    }

    async fn update_sms_status(
        &self,
        tenant: &Tenant,
        update: &SmsStatusUpdate,
    ) -> StoreResult<SmsMessage> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberOrService).await?;
        // The rank condition is re-checked on the latest row version when two callbacks race (READ COMMITTED
        // re-evaluates the WHERE of a blocked UPDATE), so the higher status wins whatever the order.
        let rank = delivery_rank_sql("status");
        let updated = sqlx::query(&format!(
            "UPDATE sms_messages SET status = $3, error_code = $4, status_updated_at = $5, \
                 delivered_at = CASE WHEN $3 = '{DELIVERED}' THEN coalesce(delivered_at, $5) ELSE delivered_at END \
             WHERE org_id = $1 AND provider_message_sid = $2 \
               AND {rank} < {FINAL_DELIVERY_RANK} AND {rank} <= $6 \
             RETURNING {SMS_COLUMNS}"
        ))
        .bind(tenant.org_id.as_uuid())
        .bind(update.provider_message_sid.as_str())
        .bind(update.status.as_str())
        .bind(update.error_code.as_ref().map(|code| code.as_str()))
        .bind(update.at)
        .bind(delivery_rank(update.status.as_str()))
        .fetch_optional(&mut *transaction)
        .await?;
        let row = match updated {
            Some(row) => row,
            None => sqlx::query(&format!(
                "SELECT {SMS_COLUMNS} FROM sms_messages WHERE org_id = $1 AND provider_message_sid = $2"
            ))
            .bind(tenant.org_id.as_uuid())
            .bind(update.provider_message_sid.as_str())
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or_else(|| not_found("SMS message"))?,
        };
        transaction.commit().await?;
        sms_message(&row)
    }

    async fn create_dashboard_session(
        &self,
        tenant: &Tenant,
        session: &NewDashboardSession,
    ) -> StoreResult<()> {
        let idle_timeout_secs = rows::idle_timeout_secs(session)?;
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberUser).await?;
        let user_id = tenant.actor.user_id().ok_or(StoreError::Forbidden {
            reason: "a service may not do this",
        })?;
        sqlx::query("SELECT byoc_delete_expired_dashboard_sessions()")
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, org_id, user_id, idle_timeout_secs, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.id_hash.as_bytes()[..])
        .bind(tenant.org_id.as_uuid())
        .bind(user_id.as_uuid())
        .bind(idle_timeout_secs)
        .bind(session.expires_at)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn touch_dashboard_session(
        &self,
        id_hash: &SessionIdHash,
    ) -> StoreResult<Option<DashboardSession>> {
        let row = sqlx::query("SELECT org_id, user_id FROM byoc_touch_dashboard_session($1)")
            .bind(&id_hash.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::dashboard_session).transpose()
    }

    async fn end_dashboard_session(&self, id_hash: &SessionIdHash) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT byoc_end_dashboard_session($1)")
            .bind(&id_hash.as_bytes()[..])
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_dashboard_login_link(
        &self,
        tenant: &Tenant,
        link: &NewLoginLink,
    ) -> StoreResult<()> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberUser).await?;
        sqlx::query("SELECT byoc_create_dashboard_login_link($1, $2, $3)")
            .bind(&link.link_hash.as_bytes()[..])
            .bind(link.expires_at)
            .bind(link.session_expires_at)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn redeem_dashboard_login_link(
        &self,
        link_hash: &LoginLinkHash,
        session_hash: &SessionIdHash,
        idle_timeout: Duration,
    ) -> StoreResult<LoginLinkRedemption> {
        let idle_secs = rows::idle_secs(idle_timeout)?;
        let row = sqlx::query(
            "SELECT outcome, session_org_id AS org_id, session_user_id AS user_id \
             FROM byoc_redeem_dashboard_login_link($1, $2, $3)",
        )
        .bind(&link_hash.as_bytes()[..])
        .bind(&session_hash.as_bytes()[..])
        .bind(idle_secs)
        .fetch_one(&self.pool)
        .await?;
        let outcome: String = row.try_get("outcome")?;
        match outcome.as_str() {
            "opened" => Ok(LoginLinkRedemption::Opened(rows::dashboard_session(&row)?)),
            "expired" => Ok(LoginLinkRedemption::Expired),
            _ => Ok(LoginLinkRedemption::Unknown),
        }
    }

    async fn increment_usage(
        &self,
        tenant: &Tenant,
        provider: CredentialType,
        day: NaiveDate,
        calls: u32,
        failures: u32,
    ) -> StoreResult<UsageCounter> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberOrService).await?;
        let row = sqlx::query(
            "INSERT INTO provider_usage_daily AS u (org_id, provider, day, calls, failures) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, provider, day) \
             DO UPDATE SET calls = u.calls + EXCLUDED.calls, failures = u.failures + EXCLUDED.failures \
             RETURNING provider, day, calls, failures",
        )
        .bind(tenant.org_id.as_uuid())
        .bind(provider.as_str())
        .bind(day)
        .bind(i64::from(calls))
        .bind(i64::from(failures))
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        usage_counter(&row)
    }

    async fn usage_for_day(
        &self,
        tenant: &Tenant,
        day: NaiveDate,
    ) -> StoreResult<Vec<UsageCounter>> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberOrService).await?;
        let rows = sqlx::query(
            "SELECT provider, day, calls, failures FROM provider_usage_daily \
             WHERE org_id = $1 AND day = $2 ORDER BY provider",
        )
        .bind(tenant.org_id.as_uuid())
        .bind(day)
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        rows.iter().map(usage_counter).collect()
    }

    async fn operator_envelope_batch(
        &self,
        after: Option<EnvelopeCursor>,
        skip_key_version: Option<NonZeroU32>,
        limit: u32,
    ) -> StoreResult<Vec<OperatorEnvelope>> {
        self.require_operator()?;
        let rows = sqlx::query(
            "SELECT id, org_id, credential_type, encryption_key_version, encrypted_data \
             FROM byoc_operator_envelope_batch($1, $2, $3, $4)",
        )
        .bind(after.map(|cursor| cursor.org_id.as_uuid()))
        .bind(after.map(|cursor| cursor.id.as_uuid()))
        .bind(skip_key_version.map(key_version_to_db))
        .bind(i32::try_from(limit).unwrap_or(i32::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operator_envelope).collect()
    }

    async fn operator_swap_envelopes(
        &self,
        swaps: &[EnvelopeSwap],
        actor: &ServiceName,
    ) -> StoreResult<Vec<CredentialId>> {
        self.require_operator()?;
        if swaps.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = swaps.iter().map(|swap| swap.id.as_uuid()).collect();
        let expected: Vec<&[u8]> = swaps.iter().map(|swap| swap.expected.as_bytes()).collect();
        let expected_versions: Vec<i64> = swaps
            .iter()
            .map(|swap| key_version_to_db(swap.expected_key_version))
            .collect();
        let replacements: Vec<&[u8]> = swaps
            .iter()
            .map(|swap| swap.replacement.as_bytes())
            .collect();
        let versions: Vec<i64> = swaps
            .iter()
            .map(|swap| key_version_to_db(swap.replacement_key_version))
            .collect();
        let swapped: Vec<Uuid> =
            sqlx::query_scalar("SELECT byoc_operator_swap_envelopes($1, $2, $3, $4, $5, $6)")
                .bind(ids)
                .bind(expected)
                .bind(expected_versions)
                .bind(replacements)
                .bind(versions)
                .bind(Actor::Service(actor.clone()).to_string())
                .fetch_all(&self.pool)
                .await?;
        Ok(swapped.into_iter().map(CredentialId::from_uuid).collect())
    }

    async fn credentials_per_key_version(&self) -> StoreResult<Vec<KeyVersionCount>> {
        let rows = sqlx::query(
            "SELECT encryption_key_version, credentials FROM byoc_credentials_per_key_version()",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyVersionCount {
                    key_version: rows::key_version(row.try_get("encryption_key_version")?)?,
                    credentials: rows::count(row.try_get("credentials")?)?,
                })
            })
            .collect()
    }

    async fn claim_due_reverifications(
        &self,
        interval: Duration,
        limit: u32,
    ) -> StoreResult<Vec<DueReverification>> {
        let rows = sqlx::query(
            "SELECT org_id, credential_id, credential_type, provider_account_id \
             FROM byoc_claim_due_reverifications($1, $2)",
        )
        .bind(whole_seconds(interval))
        .bind(limit_for_db(limit))
        .fetch_all(self.service_work_pool())
        .await?;
        rows.iter().map(due_reverification).collect()
    }

    async fn credential_status_counts(&self) -> StoreResult<Vec<CredentialStatusCount>> {
        let rows = sqlx::query(
            "SELECT credential_type, verification_status, is_active, credentials \
             FROM byoc_credential_status_counts()",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(credential_status_count).collect()
    }

    async fn claim_credential_events(
        &self,
        limit: u32,
        lease: Duration,
    ) -> StoreResult<Vec<CredentialEvent>> {
        let rows = sqlx::query(
            "SELECT id, org_id, credential_id, credential_type, display_name, event_type, \
                    verification_status, verification_error, occurred_at, attempts \
             FROM byoc_claim_credential_events($1, $2)",
        )
        .bind(limit_for_db(limit))
        .bind(whole_seconds(lease))
        .fetch_all(self.service_work_pool())
        .await?;
        // An UPDATE's RETURNING keeps no order: sort as the function picked them, oldest first.
        let mut events = rows
            .iter()
            .map(credential_event)
            .collect::<StoreResult<Vec<_>>>()?;
        events.sort_by_key(|event| (event.occurred_at, event.id.as_uuid()));
        Ok(events)
    }

    async fn finish_credential_event(
        &self,
        id: CredentialEventId,
        outcome: &EventDelivery,
    ) -> StoreResult<bool> {
        let (delivered, retry_after, error) = delivery_arguments(outcome);
        Ok(
            sqlx::query_scalar("SELECT byoc_finish_credential_event($1, $2, $3, $4)")
                .bind(id.as_uuid())
                .bind(delivered)
                .bind(retry_after)
                .bind(error)
                .fetch_one(self.service_work_pool())
                .await?,
        )
    }

    async fn prune_credential_events(&self, older_than: Duration) -> StoreResult<u64> {
        let pruned: i64 = sqlx::query_scalar("SELECT byoc_prune_credential_events($1)")
            .bind(whole_seconds(older_than))
            .fetch_one(self.service_work_pool())
            .await?;
        rows::count(pruned)
    }

    async fn audit_digests_due(
        &self,
        interval: Duration,
        limit: u32,
    ) -> StoreResult<Vec<AuditDigestDue>> {
        let rows = sqlx::query(
            "SELECT org_id, digest_seq, head_seq, head_hash, previous_payload_hash, issued_at \
             FROM byoc_audit_digests_due($1, $2)",
        )
        .bind(whole_seconds(interval))
        .bind(limit_for_db(limit))
        .fetch_all(self.service_work_pool())
        .await?;
        rows.iter().map(audit_digest_due).collect()
    }

    async fn record_audit_digest(&self, digest: &NewAuditDigest) -> StoreResult<bool> {
        let due = &digest.due;
        Ok(sqlx::query_scalar(
            "SELECT byoc_record_audit_digest($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(due.org_id.as_uuid())
        .bind(due.digest_seq)
        .bind(due.head.seq)
        .bind(due.head.hash.as_slice())
        .bind(
            due.previous_payload_hash
                .as_ref()
                .map(|hash| hash.as_slice()),
        )
        .bind(&digest.payload)
        .bind(digest.payload_hash().as_slice())
        .bind(digest.signature.as_slice())
        .bind(due.issued_at)
        .fetch_one(self.service_work_pool())
        .await?)
    }

    async fn unfiled_audit_digests(&self, limit: u32) -> StoreResult<Vec<StoredAuditDigest>> {
        let rows = sqlx::query(
            "SELECT org_id, digest_seq, head_seq, payload, signature FROM byoc_unfiled_audit_digests($1)",
        )
        .bind(limit_for_db(limit))
        .fetch_all(self.service_work_pool())
        .await?;
        rows.iter().map(stored_audit_digest).collect()
    }

    async fn mark_audit_digest_filed(&self, org_id: OrgId, digest_seq: i64) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT byoc_mark_audit_digest_filed($1, $2)")
                .bind(org_id.as_uuid())
                .bind(digest_seq)
                .fetch_one(self.service_work_pool())
                .await?,
        )
    }

    async fn claim_audit_digest_deliveries(
        &self,
        limit: u32,
        lease: Duration,
        max_age: Duration,
    ) -> StoreResult<Vec<AuditDigestDelivery>> {
        let rows = sqlx::query(
            "SELECT delivery_id, org_id, digest_seq, head_seq, payload, signature, issued_at, attempts \
             FROM byoc_claim_audit_digest_deliveries($1, $2, $3)",
        )
        .bind(limit_for_db(limit))
        .bind(whole_seconds(lease))
        .bind(whole_seconds(max_age))
        .fetch_all(self.service_work_pool())
        .await?;
        // As for credential events: RETURNING keeps no order, so sort oldest first here.
        let mut deliveries = rows
            .iter()
            .map(audit_digest_delivery)
            .collect::<StoreResult<Vec<_>>>()?;
        deliveries.sort_by_key(|delivery| (delivery.issued_at, delivery.digest.digest_seq));
        Ok(deliveries)
    }

    async fn finish_audit_digest_delivery(
        &self,
        id: Uuid,
        outcome: &EventDelivery,
    ) -> StoreResult<bool> {
        let (delivered, retry_after, error) = delivery_arguments(outcome);
        Ok(
            sqlx::query_scalar("SELECT byoc_finish_audit_digest_delivery($1, $2, $3, $4)")
                .bind(id)
                .bind(delivered)
                .bind(retry_after)
                .bind(error)
                .fetch_one(self.service_work_pool())
                .await?,
        )
    }

    async fn prune_audit_digests(&self, older_than: Duration) -> StoreResult<u64> {
        let pruned: i64 = sqlx::query_scalar("SELECT byoc_prune_audit_digests($1)")
            .bind(whole_seconds(older_than))
            .fetch_one(self.service_work_pool())
            .await?;
        rows::count(pruned)
    }

    async fn operator_audit_chain_hashes(
        &self,
        org_id: OrgId,
        seqs: &[i64],
    ) -> StoreResult<Vec<(i64, [u8; 32])>> {
        self.require_operator()?;
        let rows = sqlx::query("SELECT seq, hash FROM byoc_operator_audit_chain_hashes($1, $2)")
            .bind(org_id.as_uuid())
            .bind(seqs)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.int("seq")?, rows::fixed_bytes(row, "hash")?)))
            .collect()
    }
}
