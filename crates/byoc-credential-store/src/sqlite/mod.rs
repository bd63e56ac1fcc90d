//! The embedded SQLite backend: one process, one file. SQLite has no row-level security, so every query
//! carries the org filter and roles are checked in code; writes run in `BEGIN IMMEDIATE` transactions.

mod payload;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use crate::access::{audit_action_need, check, check_grant, clip_verification_error, Need};
use crate::digests::{AuditDigestDelivery, AuditDigestDue, NewAuditDigest, StoredAuditDigest};
use crate::error::{StoreError, StoreResult};
use crate::health::{
    whole_seconds, CredentialEvent, CredentialEventId, CredentialStatusCount, DueReverification,
    EventDelivery,
};
use crate::model::{
    delivery_rank, delivery_rank_sql, AuditAction, AuditChainHead, AuditChainReport,
    AuditChainStatus, AuditEvent, AuditFilter, AuditPage, CredentialMetadata, CredentialRecord,
    CredentialType, DashboardSession, EncryptedEnvelope, EnvelopeCursor, EnvelopeSwap,
    HotLeadThreshold, Imported, KeyVersionCount, LoginLinkHash, LoginLinkRedemption, Member,
    MemberProfile, NewAuditEvent, NewCredential, NewDashboardSession, NewLoginLink, NewOAuthState,
    NewSmsMessage, OAuthState, OperatorEnvelope, Organization, OrganizationAuditChain,
    OrganizationName, Role, SessionIdHash, SmsMessage, SmsStatusUpdate, StoredKeyCheckValue,
    UsageCounter, VerificationOutcome, DELIVERED, FINAL_DELIVERY_RANK, LOGIN_LINK_MAX_LIFETIME,
};
use crate::model::{NewMasterKey, StoredMasterKey};
use crate::repository::{ChangeListener, CredentialRepository};
use crate::rows::{
    self, audit_digest_delivery, audit_digest_due, audit_event, credential_event,
    credential_metadata, credential_record, credential_status_count, due_reverification,
    key_check_value, master_key, member, oauth_state, operator_envelope, organization,
    role_from_row, sms_message, stored_audit_digest, usage_counter, CREDENTIAL_COLUMNS,
    MASTER_KEY_COLUMNS, SMS_COLUMNS,
};
use crate::tenant::{Actor, CredentialId, OAuthStateId, OrgId, ServiceName, Tenant, UserId};

crate::rows::impl_read_row!(
    SqliteRow,
    uuid = |row, column| parse_uuid(&row.try_get::<String, _>(column)?, column),
    opt_uuid = |row, column| {
        row.try_get::<Option<String>, _>(column)?
            .map(|text| parse_uuid(&text, column))
            .transpose()
    }
);

fn parse_uuid(text: &str, column: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| {
        StoreError::internal(format!("stored value in column {column} cannot be read"))
    })
}

/// The SQLite migrations (`migrations/sqlite`), embedded.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

const ORGANIZATION_COLUMNS: &str = "id, name, hot_lead_threshold, created_at, updated_at";
const AUDIT_COLUMNS: &str =
    "id, org_id, seq, at, actor, action, credential_id, credential_type, detail";
const MEMBER_COLUMNS: &str = "org_id, user_id, role, created_at, email, name";

/// Applies the SQLite migrations, creating the file if it is missing. Idempotent.
pub async fn migrate(database_url: &str) -> StoreResult<()> {
    let store = SqliteStore::connect(database_url).await?;
    store.close().await;
    Ok(())
}

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database at `sqlite://PATH` (creating the file and its folder if missing), with foreign keys
    /// on and WAL journaling, and applies the migrations.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(database_url)
            .map_err(|error| StoreError::Internal {
                context: "DATABASE_URL is not a valid sqlite:// URL".to_owned(),
                source: Some(error),
            })?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        // A missing file is created, and so is its folder.
        if let Some(folder) = options
            .get_filename()
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).map_err(|error| StoreError::Internal {
                context: format!(
                    "cannot create the folder {} for the SQLite file",
                    folder.display()
                ),
                source: Some(sqlx::Error::Io(error)),
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(crate::error::from_migrate_error)?;
        Ok(Self { pool })
    }

    /// The pool (for tests and tools that inspect the file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction that takes the database's write lock at once (no upgrade deadlocks).
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A write transaction for a tenant whose actor meets `need`; returns the actor's role too.
    async fn begin_write_checked(
        &self,
        tenant: &Tenant,
        need: Need,
    ) -> StoreResult<(Transaction<'static, Sqlite>, Option<Role>)> {
        let mut transaction = self.begin_write().await?;
        let role = actor_role(&mut transaction, tenant).await?;
        check(&tenant.actor, role, need)?;
        Ok((transaction, role))
    }

    /// A read transaction for a tenant whose actor meets `need`.
    async fn begin_read_checked(
        &self,
        tenant: &Tenant,
        need: Need,
    ) -> StoreResult<Transaction<'static, Sqlite>> {
        let mut transaction = self.pool.begin().await?;
        let role = actor_role(&mut transaction, tenant).await?;
        check(&tenant.actor, role, need)?;
        Ok(transaction)
    }
}

/// The tenant user's role (`None` for a non-member or a service).
async fn actor_role(
    connection: &mut SqliteConnection,
    tenant: &Tenant,
) -> StoreResult<Option<Role>> {
    let Some(user_id) = tenant.actor.user_id() else {
        return Ok(None);
    };
    let row = sqlx::query("SELECT role FROM organization_members WHERE org_id = ? AND user_id = ?")
        .bind(tenant.org_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&mut *connection)
        .await?;
    match row {
        Some(row) => role_from_row(&row),
        None => Ok(None),
    }
}

fn not_found(what: &'static str) -> StoreError {
    StoreError::NotFound { what }
}

fn missing_org(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(database_error) if database_error.is_foreign_key_violation() => {
            not_found("organization")
        }
        _ => StoreError::from_sqlx(error),
    }
}

fn key_version_to_db(version: NonZeroU32) -> i64 {
    i64::from(version.get())
}

/// The hash of one audit link: SHA-256 over the previous hash and a JSON array of the event's fields as stored
/// (`[seq, org_id, at, actor, action, credential_id, credential_type, detail]`, `detail` spliced in verbatim).
#[allow(clippy::too_many_arguments)]
fn audit_hash(
    prev_hash: &[u8],
    seq: i64,
    org_id: &str,
    at: &str,
    actor: &str,
    action: &str,
    credential_id: Option<&str>,
    credential_type: Option<&str>,
    detail: &str,
) -> Vec<u8> {
    let fields = serde_json::json!([
        seq,
        org_id,
        at,
        actor,
        action,
        credential_id,
        credential_type
    ])
    .to_string();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(prev_hash);
    context.update(fields.trim_end_matches(']').as_bytes());
    context.update(b",");
    context.update(detail.as_bytes());
    context.update(b"]");
    context.finish().as_ref().to_vec()
}

const GENESIS_HASH: [u8; 32] = [0; 32];

/// The `rotated` audit events of one swap batch (see [`CredentialRepository::operator_swap_envelopes`]):
/// one per (organization, old key version, new key version) with its count.
async fn append_rotation_events(
    transaction: &mut SqliteConnection,
    actor: &ServiceName,
    rewrapped: &BTreeMap<(String, i64, i64), u64>,
) -> StoreResult<()> {
    let action = AuditAction::parse("rotated")?;
    let mut by_org: BTreeMap<&str, Vec<NewAuditEvent>> = BTreeMap::new();
    for ((org, from_version, to_version), count) in rewrapped {
        by_org.entry(org.as_str()).or_default().push(NewAuditEvent {
            action: action.clone(),
            credential_id: None,
            credential_type: None,
            detail: serde_json::json!({
                "rewrapped": count,
                "from_key_version": from_version,
                "key_version": to_version,
            }),
        });
    }
    for (org, events) in by_org {
        append_events(
            transaction,
            OrgId::from_uuid(parse_uuid(org, "org_id")?),
            &Actor::Service(actor.clone()),
            &events,
        )
        .await?;
    }
    Ok(())
}

/// Appends events to the org's chain inside an open write transaction, in `actor`'s name and at the store's
/// time.
async fn append_events(
    transaction: &mut SqliteConnection,
    org_id: OrgId,
    actor: &Actor,
    events: &[NewAuditEvent],
) -> StoreResult<Vec<i64>> {
    let at = encode_time(Utc::now());
    let actor = actor.to_string();
    let org = org_id.to_string();
    sqlx::query("INSERT OR IGNORE INTO credential_audit_chain_heads (org_id, last_seq, last_hash) VALUES (?, 0, ?)")
        .bind(&org)
        .bind(&GENESIS_HASH[..])
        .execute(&mut *transaction)
        .await
        .map_err(missing_org)?;
    let head = sqlx::query(
        "SELECT last_seq, last_hash FROM credential_audit_chain_heads WHERE org_id = ?",
    )
    .bind(&org)
    .fetch_one(&mut *transaction)
    .await?;
    let mut seq: i64 = head.try_get("last_seq")?;
    let mut prev_hash: Vec<u8> = head.try_get("last_hash")?;
    let mut ids = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let credential_id = event.credential_id.map(|id| id.to_string());
        let credential_type = event.credential_type.map(CredentialType::as_str);
        let detail = event.detail.to_string();
        let hash = audit_hash(
            &prev_hash,
            seq,
            &org,
            &at,
            &actor,
            event.action.as_str(),
            credential_id.as_deref(),
            credential_type,
            &detail,
        );
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO credential_audit_log \
                 (org_id, seq, at, actor, action, credential_id, credential_type, detail, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&org)
        .bind(seq)
        .bind(&at)
        .bind(&actor)
        .bind(event.action.as_str())
        .bind(credential_id)
        .bind(credential_type)
        .bind(&detail)
        .bind(&prev_hash)
        .bind(&hash)
        .fetch_one(&mut *transaction)
        .await
        .map_err(missing_org)?;
        ids.push(id);
        prev_hash = hash;
    }
    sqlx::query(
        "UPDATE credential_audit_chain_heads SET last_seq = ?, last_hash = ? WHERE org_id = ?",
    )
    .bind(seq)
    .bind(&prev_hash)
    .bind(&org)
    .execute(&mut *transaction)
    .await?;
    Ok(ids)
}

/// Whether a session last used at `last_seen_at`, idle for at most `idle_secs`, ending at `expires_at` (stored
/// timestamps) is live at `now`. Unreadable timestamps count as expired.
fn session_is_live(
    last_seen_at: &str,
    idle_secs: i64,
    expires_at: &str,
    now: DateTime<Utc>,
) -> bool {
    let parse =
        |text: &str| DateTime::parse_from_rfc3339(text).map(|time| time.with_timezone(&Utc));
    match (parse(last_seen_at), parse(expires_at)) {
        (Ok(last_seen_at), Ok(expires_at)) => {
            now < expires_at && now < last_seen_at + chrono::Duration::seconds(idle_secs)
        }
        _ => false,
    }
}

/// Timestamps are stored as RFC 3339 text with microseconds, so text order is time order.
/// Milliseconds in whole seconds of `duration` (rounded up), as the scheduling columns count them.
fn schedule_millis(duration: Duration) -> i64 {
    i64::from(whole_seconds(duration)) * 1000
}

/// A time as the outbox's `occurred_at` holds it (the format of SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ')`).
fn encode_event_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn encode_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

#[async_trait]
impl CredentialRepository for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn listen_for_changes(&self) -> StoreResult<Option<Box<dyn ChangeListener>>> {
        Ok(None)
    }

    async fn operator_create_organization(
        &self,
        name: &OrganizationName,
        hot_lead_threshold: HotLeadThreshold,
    ) -> StoreResult<Organization> {
        let now = encode_time(Utc::now());
        let row = sqlx::query(&format!(
            "INSERT INTO organizations (id, name, hot_lead_threshold, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING {ORGANIZATION_COLUMNS}"
        ))
        .bind(OrgId::new_random().to_string())
        .bind(name.as_str())
        .bind(i64::from(hot_lead_threshold.get()))
        .bind(&now)
        .bind(&now)
        .fetch_one(&self.pool)
        .await?;
        organization(&row)
    }

    async fn get_organization(&self, tenant: &Tenant) -> StoreResult<Organization> {
        let mut transaction = self
            .begin_read_checked(tenant, Need::MemberOrService)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = ?"
        ))
        .bind(tenant.org_id.to_string())
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| not_found("organization"))?;
        transaction.commit().await?;
        organization(&row)
    }

    async fn set_hot_lead_threshold(
        &self,
        tenant: &Tenant,
        threshold: HotLeadThreshold,
    ) -> StoreResult<Organization> {
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::Manager).await?;
        sqlx::query("UPDATE organizations SET hot_lead_threshold = ? WHERE id = ?")
            .bind(i64::from(threshold.get()))
            .bind(tenant.org_id.to_string())
            .execute(&mut *transaction)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = ?"
        ))
        .bind(tenant.org_id.to_string())
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
        let now = encode_time(Utc::now());
        let row = sqlx::query(&format!(
            "INSERT INTO organization_members (org_id, user_id, role, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING {MEMBER_COLUMNS}"
        ))
        .bind(org_id.to_string())
        .bind(user_id.to_string())
        .bind(role.as_str())
        .bind(&now)
        .bind(&now)
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
        let mut transaction = self.begin_write().await?;
        let actor_role = actor_role(&mut transaction, tenant).await?;
        check_grant(&tenant.actor, actor_role, role)?;
        let now = encode_time(Utc::now());
        let row = sqlx::query(&format!(
            "INSERT INTO organization_members (org_id, user_id, role, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING {MEMBER_COLUMNS}"
        ))
        .bind(tenant.org_id.to_string())
        .bind(user_id.to_string())
        .bind(role.as_str())
        .bind(&now)
        .bind(&now)
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        member(&row)
    }

    async fn member_role(&self, tenant: &Tenant) -> StoreResult<Option<Role>> {
        let mut connection = self.pool.acquire().await?;
        actor_role(&mut connection, tenant).await
    }

    async fn list_members(&self, tenant: &Tenant) -> StoreResult<Vec<Member>> {
        let mut transaction = self.begin_read_checked(tenant, Need::MemberUser).await?;
        let rows = sqlx::query(&format!(
            "SELECT {MEMBER_COLUMNS} FROM organization_members WHERE org_id = ? ORDER BY user_id"
        ))
        .bind(tenant.org_id.to_string())
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
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::MemberUser).await?;
        let user_id = tenant.actor.user_id().ok_or(StoreError::Forbidden {
            reason: "a service may not do this",
        })?;
        let changed = sqlx::query(
            "UPDATE organization_members SET email = ?, name = ? \
             WHERE org_id = ? AND user_id = ? AND (email IS NOT ? OR name IS NOT ?)",
        )
        .bind(profile.email())
        .bind(profile.name())
        .bind(tenant.org_id.to_string())
        .bind(user_id.to_string())
        .bind(profile.email())
        .bind(profile.name())
        .execute(&mut *transaction)
        .await?
        .rows_affected()
            > 0;
        transaction.commit().await?;
        Ok(changed)
    }

    async fn insert_credential(
        &self,
        tenant: &Tenant,
        credential: &NewCredential,
    ) -> StoreResult<CredentialMetadata> {
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::Manager).await?;
        let row = insert_credential_row(
            &mut transaction,
            tenant.org_id,
            credential,
            tenant.actor.user_id(),
        )
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
        // BEGIN IMMEDIATE takes the write lock first, so no other import can store the account between the
        // check and the insert.
        let mut transaction = self.begin_write().await?;
        if let Some(account) = &credential.provider_account_id {
            let present = sqlx::query(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM organization_api_credentials \
                 WHERE org_id = ? AND credential_type = ? AND provider_account_id = ? AND is_active = 1 \
                 ORDER BY (verification_status = 'verified') DESC, created_at DESC, id DESC LIMIT 1"
            ))
            .bind(org_id.to_string())
            .bind(credential.credential_type.as_str())
            .bind(account.as_str())
            .fetch_optional(&mut *transaction)
            .await?;
            if let Some(row) = present {
                transaction.commit().await?;
                return Ok(Imported::AlreadyPresent(credential_metadata(&row)?));
            }
        }
        let row = insert_credential_row(&mut transaction, org_id, credential, None).await?;
        let created = NewAuditEvent {
            action: AuditAction::parse("created")?,
            credential_id: Some(credential.id),
            credential_type: Some(credential.credential_type),
            detail: detail.clone(),
        };
        append_events(
            &mut transaction,
            org_id,
            &Actor::Service(actor.clone()),
            std::slice::from_ref(&created),
        )
        .await?;
        transaction.commit().await?;
        Ok(Imported::Created(credential_metadata(&row)?))
    }

    async fn list_credentials(&self, tenant: &Tenant) -> StoreResult<Vec<CredentialMetadata>> {
        let mut transaction = self
            .begin_read_checked(tenant, Need::MemberOrService)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM organization_api_credentials WHERE org_id = ? \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(tenant.org_id.to_string())
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        rows.iter().map(credential_metadata).collect()
    }

    async fn get_credential(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> StoreResult<CredentialRecord> {
        let mut transaction = self
            .begin_read_checked(tenant, Need::MemberOrService)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS}, encrypted_data FROM organization_api_credentials \
             WHERE id = ? AND org_id = ?"
        ))
        .bind(id.to_string())
        .bind(tenant.org_id.to_string())
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or_else(|| not_found("credential"))?;
        transaction.commit().await?;
        credential_record(&row)
    }

    async fn get_active_credential(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> StoreResult<Option<CredentialRecord>> {
        let mut transaction = self
            .begin_read_checked(tenant, Need::MemberOrService)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS}, encrypted_data FROM organization_api_credentials \
             WHERE org_id = ? AND credential_type = ? AND is_active = 1 \
             ORDER BY (verification_status = 'verified') DESC, created_at DESC, id DESC LIMIT 1"
        ))
        .bind(tenant.org_id.to_string())
        .bind(credential_type.as_str())
        .fetch_optional(&mut *transaction)
        .await?;
        transaction.commit().await?;
        row.as_ref().map(credential_record).transpose()
    }

    async fn record_verification(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        outcome: &VerificationOutcome,
    ) -> StoreResult<CredentialMetadata> {
        let (mut transaction, _) = self
            .begin_write_checked(tenant, Need::ManagerOrService)
            .await?;
        let updated = sqlx::query(
            "UPDATE organization_api_credentials \
             SET verification_status = ?, verification_error = ?, last_verified_at = ? \
             WHERE id = ? AND org_id = ?",
        )
        .bind(outcome.status.as_str())
        .bind(clip_verification_error(outcome.error.as_deref()))
        .bind(encode_time(Utc::now()))
        .bind(id.to_string())
        .bind(tenant.org_id.to_string())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        finish_credential_update(transaction, tenant.org_id, id, updated).await
    }

    async fn deactivate_credential(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> StoreResult<CredentialMetadata> {
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::Manager).await?;
        let updated = sqlx::query(
            "UPDATE organization_api_credentials SET is_active = 0 WHERE id = ? AND org_id = ?",
        )
        .bind(id.to_string())
        .bind(tenant.org_id.to_string())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        finish_credential_update(transaction, tenant.org_id, id, updated).await
    }

    async fn purge_credential(&self, tenant: &Tenant, id: CredentialId) -> StoreResult<()> {
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::Owner).await?;
        let deleted =
            sqlx::query("DELETE FROM organization_api_credentials WHERE id = ? AND org_id = ?")
                .bind(id.to_string())
                .bind(tenant.org_id.to_string())
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
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::Manager).await?;
        let updated = sqlx::query(
            "UPDATE organization_api_credentials SET encrypted_data = ?, encryption_key_version = ? \
             WHERE id = ? AND org_id = ?",
        )
        .bind(encrypted_data.as_bytes())
        .bind(key_version_to_db(encryption_key_version))
        .bind(id.to_string())
        .bind(tenant.org_id.to_string())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        finish_credential_update(transaction, tenant.org_id, id, updated).await
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
        let (mut transaction, role) = self
            .begin_write_checked(tenant, Need::MemberOrService)
            .await?;
        check(&tenant.actor, role, audit_action_need(&event.action))?;
        let ids = append_events(
            &mut transaction,
            tenant.org_id,
            &tenant.actor,
            std::slice::from_ref(event),
        )
        .await?;
        let id = ids
            .first()
            .copied()
            .ok_or_else(|| StoreError::internal("audit insert returned no id"))?;
        let row = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM credential_audit_log WHERE id = ?"
        ))
        .bind(id)
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
        let (mut transaction, role) = self
            .begin_write_checked(tenant, Need::MemberOrService)
            .await?;
        for event in events {
            check(&tenant.actor, role, audit_action_need(&event.action)).map_err(|_| {
                StoreError::Forbidden {
                    reason: "the actor may not append these audit events (an action needs another role, or \
                             the login may not act as a service)",
                }
            })?;
        }
        let ids = append_events(&mut transaction, tenant.org_id, &tenant.actor, events).await?;
        transaction.commit().await?;
        u64::try_from(ids.len()).map_err(|_| StoreError::internal("audit batch too large"))
    }

    async fn list_matching_audit_events(
        &self,
        tenant: &Tenant,
        filter: &AuditFilter,
        page: AuditPage,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut transaction = self
            .begin_read_checked(tenant, Need::MemberOrService)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM credential_audit_log \
             WHERE org_id = ?1 AND id < ?2 \
               AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR credential_id = ?5) \
               AND (?6 IS NULL OR actor = ?6) AND (?7 IS NULL OR at >= ?7) AND (?8 IS NULL OR at < ?8) \
             ORDER BY id DESC LIMIT ?3"
        ))
        .bind(tenant.org_id.to_string())
        .bind(page.before.map_or(i64::MAX, |id| id.0))
        .bind(i64::from(page.limit.clamp(1, 1000)))
        .bind(filter.action.as_ref().map(|action| action.as_str().to_owned()))
        .bind(filter.credential_id.map(|id| id.to_string()))
        .bind(filter.actor.as_ref().map(ToString::to_string))
        .bind(filter.from.map(encode_time))
        .bind(filter.to.map(encode_time))
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        rows.iter().map(audit_event).collect()
    }

    async fn verify_audit_chain(&self, tenant: &Tenant) -> StoreResult<AuditChainReport> {
        let mut transaction = self
            .begin_read_checked(tenant, Need::MemberOrService)
            .await?;
        let report = chain_report(&mut transaction, tenant.org_id).await?;
        transaction.commit().await?;
        Ok(report)
    }

    async fn operator_verify_audit_chains(
        &self,
        org_id: Option<OrgId>,
    ) -> StoreResult<Vec<OrganizationAuditChain>> {
        let mut transaction = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM organizations WHERE ?1 IS NULL OR id = ?1 ORDER BY id",
        )
        .bind(org_id.map(|id| id.to_string()))
        .fetch_all(&mut *transaction)
        .await?;
        let mut checked = Vec::with_capacity(ids.len());
        for id in ids {
            let org_id = OrgId::from_uuid(parse_uuid(&id, "id")?);
            checked.push(OrganizationAuditChain {
                org_id,
                report: chain_report(&mut transaction, org_id).await?,
            });
        }
        transaction.commit().await?;
        Ok(checked)
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
        key.check()?;
        let row = sqlx::query(&format!(
            "INSERT INTO master_keys (key_version, kms_key_id, ciphertext, check_value, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING {MASTER_KEY_COLUMNS}"
        ))
        .bind(key_version_to_db(key.key_version))
        .bind(&key.kms_key_id)
        .bind(&key.ciphertext)
        .bind(&key.check_value)
        .bind(encode_time(Utc::now()))
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
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO encryption_key_checks (key_version, check_value, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (key_version) DO NOTHING",
        )
        .bind(key_version_to_db(key_version))
        .bind(check_value)
        .bind(encode_time(Utc::now()))
        .execute(&mut *transaction)
        .await?;
        let row = sqlx::query(
            "SELECT key_version, check_value, created_at FROM encryption_key_checks WHERE key_version = ?",
        )
        .bind(key_version_to_db(key_version))
        .fetch_one(&mut *transaction)
        .await?;
        transaction.commit().await?;
        key_check_value(&row)
    }

    async fn insert_oauth_state(&self, tenant: &Tenant, state: &NewOAuthState) -> StoreResult<()> {
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::Manager).await?;
        let user_id = tenant.actor.user_id().ok_or(StoreError::Forbidden {
            reason: "a service may not do this",
        })?;
        sqlx::query(
            "INSERT INTO oauth_states \
                 (id, org_id, user_id, provider, pkce_verifier_envelope, client_credential_id, created_at, \
                  expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(state.id.to_string())
        .bind(tenant.org_id.to_string())
        .bind(user_id.to_string())
        .bind(state.provider.as_str())
        .bind(state.pkce_verifier_envelope.as_bytes())
        .bind(state.client_credential_id.map(|id| id.to_string()))
        .bind(encode_time(Utc::now()))
        .bind(encode_time(state.expires_at))
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
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::MemberUser).await?;
        let user_id = tenant.actor.user_id().ok_or(StoreError::Forbidden {
            reason: "a service may not do this",
        })?;
        let row = sqlx::query(
            "DELETE FROM oauth_states WHERE id = ? AND org_id = ? AND user_id = ? \
             RETURNING id, org_id, user_id, provider, pkce_verifier_envelope, client_credential_id, created_at, \
                       expires_at",
        )
        .bind(id.to_string())
        .bind(tenant.org_id.to_string())
        .bind(user_id.to_string())
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
        let (mut transaction, _) = self
            .begin_write_checked(tenant, Need::MemberOrService)
            .await?;
        let sent_at = encode_time(message.sent_at);
        let delivered_at = (message.status.as_str() == DELIVERED).then(|| sent_at.clone());
        let now = encode_time(Utc::now());
        let row = sqlx::query(&format!(
            "INSERT INTO sms_messages \
                 (id, org_id, credential_id, provider_message_sid, to_masked, purpose, status, sent_at, \
                  status_updated_at, delivered_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {SMS_COLUMNS}"
        ))
        .bind(Uuid::new_v4().to_string())
        .bind(tenant.org_id.to_string())
        .bind(message.credential_id.map(|id| id.to_string()))
        .bind(message.provider_message_sid.as_str())
        .bind(message.to_masked.as_str())
        .bind(message.purpose.as_str())
        .bind(message.status.as_str())
        .bind(&sent_at)
        .bind(&sent_at)
        .bind(delivered_at)
        .bind(&now)
        .bind(&now)
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
        let (mut transaction, _) = self
            .begin_write_checked(tenant, Need::MemberOrService)
            .await?;
        let at = encode_time(update.at);
        let rank = delivery_rank_sql("status");
        let updated = sqlx::query(&format!(
            "UPDATE sms_messages SET status = ?1, error_code = ?2, status_updated_at = ?3, \
                 delivered_at = CASE WHEN ?1 = '{DELIVERED}' THEN coalesce(delivered_at, ?3) ELSE delivered_at END \
             WHERE org_id = ?4 AND provider_message_sid = ?5 \
               AND {rank} < {FINAL_DELIVERY_RANK} AND {rank} <= ?6 \
             RETURNING {SMS_COLUMNS}"
        ))
        .bind(update.status.as_str())
        .bind(update.error_code.as_ref().map(|code| code.as_str()))
        .bind(&at)
        .bind(tenant.org_id.to_string())
        .bind(update.provider_message_sid.as_str())
        .bind(delivery_rank(update.status.as_str()))
        .fetch_optional(&mut *transaction)
        .await?;
        let row = match updated {
            Some(row) => row,
            None => sqlx::query(&format!(
                "SELECT {SMS_COLUMNS} FROM sms_messages WHERE org_id = ? AND provider_message_sid = ?"
            ))
            .bind(tenant.org_id.to_string())
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
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::MemberUser).await?;
        let user_id = tenant.actor.user_id().ok_or(StoreError::Forbidden {
            reason: "a service may not do this",
        })?;
        let now = Utc::now();
        let expired: Vec<(Vec<u8>, String, i64, String)> = sqlx::query_as::<
            _,
            (Vec<u8>, String, i64, String),
        >(
            "SELECT id_hash, last_seen_at, idle_timeout_secs, expires_at FROM dashboard_sessions",
        )
        .fetch_all(&mut *transaction)
        .await?
        .into_iter()
        .filter(|(_, last_seen_at, idle, expires_at)| {
            !session_is_live(last_seen_at, *idle, expires_at, now)
        })
        .collect();
        for (id_hash, ..) in expired {
            sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = ?")
                .bind(id_hash)
                .execute(&mut *transaction)
                .await?;
        }
        let now = encode_time(now);
        sqlx::query(
            "INSERT INTO dashboard_sessions \
                 (id_hash, org_id, user_id, created_at, last_seen_at, idle_timeout_secs, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.id_hash.as_bytes()[..])
        .bind(tenant.org_id.to_string())
        .bind(user_id.to_string())
        .bind(&now)
        .bind(&now)
        .bind(idle_timeout_secs)
        .bind(encode_time(session.expires_at))
        .execute(&mut *transaction)
        .await
        .map_err(missing_org)?;
        transaction.commit().await?;
        Ok(())
    }

    async fn touch_dashboard_session(
        &self,
        id_hash: &SessionIdHash,
    ) -> StoreResult<Option<DashboardSession>> {
        let mut transaction = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT org_id, user_id, last_seen_at, idle_timeout_secs, expires_at \
             FROM dashboard_sessions WHERE id_hash = ?",
        )
        .bind(&id_hash.as_bytes()[..])
        .fetch_optional(&mut *transaction)
        .await?;
        let now = Utc::now();
        let Some(row) = row.filter(|row| {
            let (Ok(last_seen_at), Ok(idle), Ok(expires_at)) = (
                row.try_get::<String, _>("last_seen_at"),
                row.try_get::<i64, _>("idle_timeout_secs"),
                row.try_get::<String, _>("expires_at"),
            ) else {
                return false;
            };
            session_is_live(&last_seen_at, idle, &expires_at, now)
        }) else {
            return Ok(None);
        };
        sqlx::query("UPDATE dashboard_sessions SET last_seen_at = ? WHERE id_hash = ?")
            .bind(encode_time(now))
            .bind(&id_hash.as_bytes()[..])
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        rows::dashboard_session(&row).map(Some)
    }

    async fn end_dashboard_session(&self, id_hash: &SessionIdHash) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = ?")
            .bind(&id_hash.as_bytes()[..])
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn create_dashboard_login_link(
        &self,
        tenant: &Tenant,
        link: &NewLoginLink,
    ) -> StoreResult<()> {
        let (mut transaction, _) = self.begin_write_checked(tenant, Need::MemberUser).await?;
        let user_id = tenant.actor.user_id().ok_or(StoreError::Forbidden {
            reason: "a service may not do this",
        })?;
        let now = Utc::now();
        // A lifetime that does not fit (it does) would make every link expire at once, never live longer.
        let longest = chrono::TimeDelta::from_std(LOGIN_LINK_MAX_LIFETIME).unwrap_or_default();
        sqlx::query("DELETE FROM dashboard_login_links WHERE expires_at <= ?")
            .bind(encode_time(now))
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_login_links \
                 (link_hash, org_id, user_id, created_at, expires_at, session_expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&link.link_hash.as_bytes()[..])
        .bind(tenant.org_id.to_string())
        .bind(user_id.to_string())
        .bind(encode_time(now))
        .bind(encode_time(link.expires_at.min(now + longest)))
        .bind(encode_time(link.session_expires_at))
        .execute(&mut *transaction)
        .await
        .map_err(missing_org)?;
        transaction.commit().await?;
        Ok(())
    }

    async fn redeem_dashboard_login_link(
        &self,
        link_hash: &LoginLinkHash,
        session_hash: &SessionIdHash,
        idle_timeout: std::time::Duration,
    ) -> StoreResult<LoginLinkRedemption> {
        let idle_secs = rows::idle_secs(idle_timeout)?;
        let mut transaction = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "DELETE FROM dashboard_login_links WHERE link_hash = ? \
             RETURNING org_id, user_id, expires_at, session_expires_at",
        )
        .bind(&link_hash.as_bytes()[..])
        .fetch_optional(&mut *transaction)
        .await?
        else {
            return Ok(LoginLinkRedemption::Unknown);
        };
        let now = encode_time(Utc::now());
        let expires_at: String = row.try_get("expires_at")?;
        let session_expires_at: String = row.try_get("session_expires_at")?;
        if expires_at <= now || session_expires_at <= now {
            transaction.commit().await?;
            return Ok(LoginLinkRedemption::Expired);
        }
        let session = rows::dashboard_session(&row)?;
        sqlx::query(
            "INSERT INTO dashboard_sessions \
                 (id_hash, org_id, user_id, created_at, last_seen_at, idle_timeout_secs, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&session_hash.as_bytes()[..])
        .bind(session.org_id.to_string())
        .bind(session.user_id.to_string())
        .bind(&now)
        .bind(&now)
        .bind(idle_secs)
        .bind(session_expires_at)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(LoginLinkRedemption::Opened(session))
    }

    async fn increment_usage(
        &self,
        tenant: &Tenant,
        provider: CredentialType,
        day: NaiveDate,
        calls: u32,
        failures: u32,
    ) -> StoreResult<UsageCounter> {
        let (mut transaction, _) = self
            .begin_write_checked(tenant, Need::MemberOrService)
            .await?;
        let row = sqlx::query(
            "INSERT INTO provider_usage_daily (org_id, provider, day, calls, failures, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (org_id, provider, day) \
             DO UPDATE SET calls = calls + excluded.calls, failures = failures + excluded.failures \
             RETURNING provider, day, calls, failures",
        )
        .bind(tenant.org_id.to_string())
        .bind(provider.as_str())
        .bind(day)
        .bind(i64::from(calls))
        .bind(i64::from(failures))
        .bind(encode_time(Utc::now()))
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
        let mut transaction = self
            .begin_read_checked(tenant, Need::MemberOrService)
            .await?;
        let rows = sqlx::query(
            "SELECT provider, day, calls, failures FROM provider_usage_daily \
             WHERE org_id = ? AND day = ? ORDER BY provider",
        )
        .bind(tenant.org_id.to_string())
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
        let rows = sqlx::query(
            "SELECT id, org_id, credential_type, encryption_key_version, encrypted_data \
             FROM organization_api_credentials \
             WHERE (org_id, id) > (?1, ?2) AND (?3 IS NULL OR encryption_key_version <> ?3) \
             ORDER BY org_id, id LIMIT ?4",
        )
        .bind(
            after
                .map(|cursor| cursor.org_id.to_string())
                .unwrap_or_default(),
        )
        .bind(
            after
                .map(|cursor| cursor.id.to_string())
                .unwrap_or_default(),
        )
        .bind(skip_key_version.map(key_version_to_db))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operator_envelope).collect()
    }

    async fn operator_swap_envelopes(
        &self,
        swaps: &[EnvelopeSwap],
        actor: &ServiceName,
    ) -> StoreResult<Vec<CredentialId>> {
        if swaps.is_empty() {
            return Ok(Vec::new());
        }
        let mut transaction = self.begin_write().await?;
        let mut swapped = Vec::with_capacity(swaps.len());
        // Rows swapped per (organization, old key version, new key version), in that order.
        let mut rewrapped: BTreeMap<(String, i64, i64), u64> = BTreeMap::new();
        for swap in swaps {
            // The write transaction excludes every other writer, so the row read here is the row updated.
            let old_version = key_version_to_db(swap.expected_key_version);
            let Some(org_id) = sqlx::query_scalar::<_, String>(
                "SELECT org_id FROM organization_api_credentials \
                 WHERE id = ? AND encrypted_data = ? AND encryption_key_version = ?",
            )
            .bind(swap.id.to_string())
            .bind(swap.expected.as_bytes())
            .bind(old_version)
            .fetch_optional(&mut *transaction)
            .await?
            else {
                continue;
            };
            let new_version = key_version_to_db(swap.replacement_key_version);
            sqlx::query(
                "UPDATE organization_api_credentials SET encrypted_data = ?, encryption_key_version = ? \
                 WHERE id = ?",
            )
            .bind(swap.replacement.as_bytes())
            .bind(new_version)
            .bind(swap.id.to_string())
            .execute(&mut *transaction)
            .await?;
            swapped.push(swap.id);
            *rewrapped
                .entry((org_id, old_version, new_version))
                .or_default() += 1;
        }
        append_rotation_events(&mut transaction, actor, &rewrapped).await?;
        transaction.commit().await?;
        Ok(swapped)
    }

    async fn credentials_per_key_version(&self) -> StoreResult<Vec<KeyVersionCount>> {
        let rows = sqlx::query(
            "SELECT encryption_key_version, count(*) AS credentials FROM organization_api_credentials \
             GROUP BY encryption_key_version ORDER BY encryption_key_version",
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
        let now = Utc::now().timestamp_millis();
        let round = schedule_millis(interval).max(1000);
        let mut transaction = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO credential_reverify_schedule (credential_id, org_id, due_at_ms) \
             SELECT c.id, c.org_id, ?1 + abs(random() % ?2) FROM organization_api_credentials c \
             WHERE c.is_active = 1 \
               AND NOT EXISTS (SELECT 1 FROM credential_reverify_schedule s WHERE s.credential_id = c.id)",
        )
        .bind(now)
        .bind(round)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE credential_reverify_schedule SET due_at_ms = ?1 + abs(random() % ?2) \
             WHERE due_at_ms > ?1 + ?2",
        )
        .bind(now)
        .bind(round)
        .execute(&mut *transaction)
        .await?;
        let rows = sqlx::query(
            "SELECT s.org_id, s.credential_id, c.credential_type, c.provider_account_id \
             FROM credential_reverify_schedule s \
             JOIN organization_api_credentials c ON c.id = s.credential_id \
             WHERE s.due_at_ms <= ? AND c.is_active = 1 \
             ORDER BY s.due_at_ms, s.credential_id LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *transaction)
        .await?;
        let due = rows
            .iter()
            .map(due_reverification)
            .collect::<StoreResult<Vec<_>>>()?;
        for claimed in &due {
            sqlx::query(
                "UPDATE credential_reverify_schedule \
                 SET due_at_ms = CASE WHEN due_at_ms + ?1 > ?2 THEN due_at_ms + ?1 ELSE ?2 + ?1 END \
                 WHERE credential_id = ?3",
            )
            .bind(round)
            .bind(now)
            .bind(claimed.credential_id.to_string())
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(due)
    }

    async fn credential_status_counts(&self) -> StoreResult<Vec<CredentialStatusCount>> {
        let rows = sqlx::query(
            "SELECT credential_type, verification_status, is_active, count(*) AS credentials \
             FROM organization_api_credentials \
             GROUP BY credential_type, verification_status, is_active \
             ORDER BY credential_type, verification_status, is_active",
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
        let now = Utc::now().timestamp_millis();
        let mut transaction = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE credential_events SET attempts = attempts + 1, next_attempt_ms = ?1 + ?2 \
             WHERE id IN (SELECT id FROM credential_events WHERE next_attempt_ms <= ?1 \
                          ORDER BY rowid LIMIT ?3) \
             RETURNING id, org_id, credential_id, credential_type, display_name, event_type, \
                       verification_status, verification_error, occurred_at, attempts, rowid",
        )
        .bind(now)
        .bind(schedule_millis(lease))
        .bind(i64::from(limit))
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        // The triggers stamp events to the millisecond, so two changes can share a time; the rowid
        // keeps the order they were written in (a new row's is above every remaining row's).
        let mut events = rows
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>("rowid")?, credential_event(row)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        events.sort_by_key(|(position, _)| *position);
        Ok(events.into_iter().map(|(_, event)| event).collect())
    }

    async fn finish_credential_event(
        &self,
        id: CredentialEventId,
        outcome: &EventDelivery,
    ) -> StoreResult<bool> {
        let mut transaction = self.begin_write().await?;
        let changed = match outcome {
            EventDelivery::Delivered => {
                sqlx::query("DELETE FROM credential_events WHERE id = ?")
                    .bind(id.as_uuid().to_string())
                    .execute(&mut *transaction)
                    .await?
            }
            EventDelivery::Retry { after, error } => sqlx::query(
                "UPDATE credential_events SET next_attempt_ms = ?, last_error = substr(?, 1, 500) \
                     WHERE id = ?",
            )
            .bind(Utc::now().timestamp_millis() + schedule_millis(*after))
            .bind(error)
            .bind(id.as_uuid().to_string())
            .execute(&mut *transaction)
            .await?,
        }
        .rows_affected();
        transaction.commit().await?;
        Ok(changed > 0)
    }

    async fn prune_credential_events(&self, older_than: Duration) -> StoreResult<u64> {
        let cutoff = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut transaction = self.begin_write().await?;
        let pruned = sqlx::query("DELETE FROM credential_events WHERE occurred_at < ?")
            .bind(encode_event_time(cutoff))
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        transaction.commit().await?;
        Ok(pruned)
    }

    async fn audit_digests_due(
        &self,
        interval: Duration,
        limit: u32,
    ) -> StoreResult<Vec<AuditDigestDue>> {
        let now = Utc::now();
        let now = DateTime::<Utc>::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        let cutoff = chrono::Duration::from_std(interval)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let rows = sqlx::query(
            "SELECT h.org_id, coalesce(d.digest_seq, 0) + 1 AS digest_seq, h.last_seq AS head_seq, \
                    h.last_hash AS head_hash, d.payload_hash AS previous_payload_hash, ?1 AS issued_at \
             FROM credential_audit_chain_heads h \
             LEFT JOIN audit_digests d ON d.org_id = h.org_id \
                  AND d.digest_seq = (SELECT max(m.digest_seq) FROM audit_digests m WHERE m.org_id = h.org_id) \
             WHERE h.last_seq > coalesce(d.head_seq, 0) AND (d.issued_at IS NULL OR d.issued_at <= ?2) \
             ORDER BY h.org_id LIMIT ?3",
        )
        .bind(encode_time(now))
        .bind(encode_time(cutoff))
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_digest_due).collect()
    }

    async fn record_audit_digest(&self, digest: &NewAuditDigest) -> StoreResult<bool> {
        let due = &digest.due;
        let org_id = due.org_id.to_string();
        let mut transaction = self.begin_write().await?;
        let in_chain: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM credential_audit_log WHERE org_id = ? AND seq = ? AND hash = ?",
        )
        .bind(&org_id)
        .bind(due.head.seq)
        .bind(due.head.hash.as_slice())
        .fetch_optional(&mut *transaction)
        .await?;
        if in_chain.is_none() {
            return Err(crate::model::InvalidValue {
                field: "head",
                reason: "the digested head is not in the organization's audit chain",
            }
            .into());
        }
        let last_hash: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT payload_hash FROM audit_digests WHERE org_id = ? AND digest_seq = ?",
        )
        .bind(&org_id)
        .bind(due.digest_seq - 1)
        .fetch_optional(&mut *transaction)
        .await?;
        if last_hash.as_deref()
            != due
                .previous_payload_hash
                .as_ref()
                .map(|hash| hash.as_slice())
        {
            return Ok(false);
        }
        let recorded = sqlx::query(
            "INSERT OR IGNORE INTO audit_digests (org_id, digest_seq, head_seq, head_hash, payload, payload_hash, \
                                                  signature, issued_at, delivery_id, next_delivery_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&org_id)
        .bind(due.digest_seq)
        .bind(due.head.seq)
        .bind(due.head.hash.as_slice())
        .bind(&digest.payload)
        .bind(digest.payload_hash().as_slice())
        .bind(digest.signature.as_slice())
        .bind(encode_time(due.issued_at))
        .bind(Uuid::new_v4().to_string())
        .bind(Utc::now().timestamp_millis())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        Ok(recorded > 0)
    }

    async fn unfiled_audit_digests(&self, limit: u32) -> StoreResult<Vec<StoredAuditDigest>> {
        let rows = sqlx::query(
            "SELECT org_id, digest_seq, head_seq, payload, signature FROM audit_digests WHERE filed = 0 \
             ORDER BY issued_at, org_id, digest_seq LIMIT ?",
        )
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_audit_digest).collect()
    }

    async fn mark_audit_digest_filed(&self, org_id: OrgId, digest_seq: i64) -> StoreResult<bool> {
        let mut transaction = self.begin_write().await?;
        let changed =
            sqlx::query("UPDATE audit_digests SET filed = 1 WHERE org_id = ? AND digest_seq = ?")
                .bind(org_id.to_string())
                .bind(digest_seq)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
        transaction.commit().await?;
        Ok(changed > 0)
    }

    async fn claim_audit_digest_deliveries(
        &self,
        limit: u32,
        lease: Duration,
        max_age: Duration,
    ) -> StoreResult<Vec<AuditDigestDelivery>> {
        let now = Utc::now();
        let oldest = chrono::Duration::from_std(max_age)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut transaction = self.begin_write().await?;
        let rows = sqlx::query(
            "UPDATE audit_digests SET attempts = attempts + 1, next_delivery_ms = ?1 + ?2 \
             WHERE delivery_id IN (SELECT delivery_id FROM audit_digests \
                                   WHERE next_delivery_ms <= ?1 AND issued_at > ?3 \
                                   ORDER BY next_delivery_ms, org_id, digest_seq LIMIT ?4) \
             RETURNING delivery_id, org_id, digest_seq, head_seq, payload, signature, issued_at, attempts",
        )
        .bind(now.timestamp_millis())
        .bind(schedule_millis(lease))
        .bind(encode_time(oldest))
        .bind(i64::from(limit.max(1)))
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
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
        let mut transaction = self.begin_write().await?;
        let changed = match outcome {
            EventDelivery::Delivered => sqlx::query(
                "UPDATE audit_digests SET next_delivery_ms = NULL, last_error = NULL WHERE delivery_id = ?",
            )
            .bind(id.to_string())
            .execute(&mut *transaction)
            .await?,
            EventDelivery::Retry { after, error } => sqlx::query(
                "UPDATE audit_digests SET next_delivery_ms = ?, last_error = substr(?, 1, 500) \
                 WHERE delivery_id = ?",
            )
            .bind(Utc::now().timestamp_millis() + schedule_millis(*after))
            .bind(error)
            .bind(id.to_string())
            .execute(&mut *transaction)
            .await?,
        }
        .rows_affected();
        transaction.commit().await?;
        Ok(changed > 0)
    }

    async fn prune_audit_digests(&self, older_than: Duration) -> StoreResult<u64> {
        let cutoff = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|age| Utc::now().checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut transaction = self.begin_write().await?;
        let pruned = sqlx::query(
            "DELETE FROM audit_digests WHERE issued_at < ? \
             AND digest_seq < (SELECT max(n.digest_seq) FROM audit_digests n WHERE n.org_id = audit_digests.org_id)",
        )
        .bind(encode_time(cutoff))
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        transaction.commit().await?;
        Ok(pruned)
    }

    async fn operator_audit_chain_hashes(
        &self,
        org_id: OrgId,
        seqs: &[i64],
    ) -> StoreResult<Vec<(i64, [u8; 32])>> {
        let rows = sqlx::query(
            "SELECT seq, hash FROM credential_audit_log \
             WHERE org_id = ? AND seq IN (SELECT value FROM json_each(?)) ORDER BY seq",
        )
        .bind(org_id.to_string())
        .bind(serde_json::json!(seqs).to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<i64, _>("seq")?,
                    rows::fixed_bytes(row, "hash")?,
                ))
            })
            .collect()
    }
}

async fn insert_credential_row(
    transaction: &mut SqliteConnection,
    org_id: OrgId,
    credential: &NewCredential,
    created_by: Option<UserId>,
) -> StoreResult<SqliteRow> {
    let now = encode_time(Utc::now());
    sqlx::query(&format!(
        "INSERT INTO organization_api_credentials \
             (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, public_hint, \
              provider_account_id, created_by, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {CREDENTIAL_COLUMNS}"
    ))
    .bind(credential.id.to_string())
    .bind(org_id.to_string())
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
    .bind(created_by.map(|user_id| user_id.to_string()))
    .bind(&now)
    .bind(&now)
    .fetch_one(&mut *transaction)
    .await
    .map_err(missing_org)
}

/// Ends a transaction that updated one credential row: `NotFound` when no row of the org matched, else the
/// row's metadata as it now stands, read before commit.
async fn finish_credential_update(
    mut transaction: Transaction<'static, Sqlite>,
    org_id: OrgId,
    id: CredentialId,
    updated: u64,
) -> StoreResult<CredentialMetadata> {
    if updated == 0 {
        return Err(not_found("credential"));
    }
    let row = select_credential_metadata(&mut transaction, org_id, id).await?;
    transaction.commit().await?;
    credential_metadata(&row)
}

async fn select_credential_metadata(
    transaction: &mut SqliteConnection,
    org_id: OrgId,
    id: CredentialId,
) -> StoreResult<SqliteRow> {
    sqlx::query(&format!(
        "SELECT {CREDENTIAL_COLUMNS} FROM organization_api_credentials WHERE id = ? AND org_id = ?"
    ))
    .bind(id.to_string())
    .bind(org_id.to_string())
    .fetch_optional(&mut *transaction)
    .await?
    .ok_or_else(|| not_found("credential"))
}

/// Reads and checks an organization's chain and its head, as the Postgres function `byoc_audit_chain_check`.
async fn chain_report(
    connection: &mut SqliteConnection,
    org_id: OrgId,
) -> StoreResult<AuditChainReport> {
    let org = org_id.to_string();
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, credential_id, credential_type, detail, prev_hash, hash \
         FROM credential_audit_log WHERE org_id = ? ORDER BY seq",
    )
    .bind(&org)
    .fetch_all(&mut *connection)
    .await?;
    let head_row = sqlx::query(
        "SELECT last_seq, last_hash FROM credential_audit_chain_heads WHERE org_id = ?",
    )
    .bind(&org)
    .fetch_optional(&mut *connection)
    .await?;
    let status = check_chain(&org, &rows, head_row.as_ref())?;
    let head = match &head_row {
        Some(row) => {
            AuditChainHead::from_stored(row.try_get("last_seq")?, row.try_get("last_hash")?)
        }
        None => None,
    };
    Ok(AuditChainReport { status, head })
}

/// Walks an org's chain rows (ordered by seq) and its head, as the Postgres function `byoc_audit_chain_check`.
fn check_chain(
    org: &str,
    rows: &[SqliteRow],
    head: Option<&SqliteRow>,
) -> StoreResult<AuditChainStatus> {
    let broken = |checked: u64, seq: i64, problem: &str| AuditChainStatus::Broken {
        events_checked: checked,
        first_broken_seq: seq,
        problem: problem.to_owned(),
    };
    let mut expected_seq: i64 = 1;
    let mut expected_prev = GENESIS_HASH.to_vec();
    let mut checked: u64 = 0;
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let prev_hash: Vec<u8> = row.try_get("prev_hash")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        if seq != expected_seq {
            return Ok(broken(
                checked,
                expected_seq,
                "an event is missing (gap in the sequence)",
            ));
        }
        if prev_hash != expected_prev {
            return Ok(broken(
                checked,
                seq,
                "the previous-hash link does not match",
            ));
        }
        let credential_id: Option<String> = row.try_get("credential_id")?;
        let credential_type: Option<String> = row.try_get("credential_type")?;
        let recomputed = audit_hash(
            &prev_hash,
            seq,
            org,
            &row.try_get::<String, _>("at")?,
            &row.try_get::<String, _>("actor")?,
            &row.try_get::<String, _>("action")?,
            credential_id.as_deref(),
            credential_type.as_deref(),
            &row.try_get::<String, _>("detail")?,
        );
        if recomputed != hash {
            return Ok(broken(
                checked,
                seq,
                "the event was changed after it was written",
            ));
        }
        checked += 1;
        expected_prev = hash;
        expected_seq += 1;
    }
    match head {
        None if checked > 0 => Ok(broken(checked, 1, "the chain head is missing")),
        None => Ok(AuditChainStatus::Intact { events: checked }),
        Some(head) => {
            let head_seq: i64 = head.try_get("last_seq")?;
            let head_hash: Vec<u8> = head.try_get("last_hash")?;
            let checked_seq =
                i64::try_from(checked).map_err(|_| StoreError::internal("audit chain too long"))?;
            if head_seq > checked_seq {
                Ok(broken(
                    checked,
                    expected_seq,
                    "the newest events were deleted",
                ))
            } else if head_seq != checked_seq || head_hash != expected_prev {
                Ok(broken(
                    checked,
                    head_seq,
                    "the chain head does not match the newest event",
                ))
            } else {
                Ok(AuditChainStatus::Intact { events: checked })
            }
        }
    }
}
