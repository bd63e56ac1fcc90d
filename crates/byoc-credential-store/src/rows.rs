//! Turning database rows into model values, shared by both backends through [`ReadRow`].

use std::num::NonZeroU32;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::digests::{AuditDigestDelivery, AuditDigestDue, StoredAuditDigest};
use crate::error::{StoreError, StoreResult};
use crate::health::{CredentialEvent, CredentialEventId, CredentialStatusCount, DueReverification};
use crate::model::{
    AuditAction, AuditChainHead, AuditEvent, AuditEventId, CredentialMetadata, CredentialRecord,
    DashboardSession, EncryptedEnvelope, HotLeadThreshold, InvalidValue, Member, MemberProfile,
    NewDashboardSession, OAuthState, OperatorEnvelope, Organization, Role, SmsMessage,
    StoredKeyCheckValue, StoredMasterKey, UsageCounter,
};
use crate::tenant::{CredentialId, OAuthStateId, OrgId, UserId};

/// The columns of a credential's metadata, in the order both backends select them.
pub(crate) const CREDENTIAL_COLUMNS: &str = "id, org_id, credential_type, display_name, public_hint, \
     provider_account_id, is_active, verification_status, last_verified_at, verification_error, created_at, \
     updated_at, created_by, encryption_key_version";

/// The columns of a KMS-held master key version (`master_keys`).
pub(crate) const MASTER_KEY_COLUMNS: &str =
    "key_version, kms_key_id, ciphertext, check_value, created_at";

/// The columns of an SMS message.
pub(crate) const SMS_COLUMNS: &str =
    "id, org_id, credential_id, provider_message_sid, to_masked, purpose, status, \
     error_code, sent_at, status_updated_at, delivered_at";

/// Typed column access that both backends implement (Postgres has native UUIDs, SQLite stores them as text).
pub(crate) trait ReadRow {
    /// A UUID column.
    fn uuid(&self, column: &str) -> StoreResult<Uuid>;
    /// A nullable UUID column.
    fn opt_uuid(&self, column: &str) -> StoreResult<Option<Uuid>>;
    /// A text column.
    fn text(&self, column: &str) -> StoreResult<String>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    /// An integer column.
    fn int(&self, column: &str) -> StoreResult<i64>;
    /// A boolean column.
    fn flag(&self, column: &str) -> StoreResult<bool>;
    /// A byte column.
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>>;
    /// A nullable byte column.
    fn opt_bytes(&self, column: &str) -> StoreResult<Option<Vec<u8>>>;
    /// A timestamp column.
    fn time(&self, column: &str) -> StoreResult<DateTime<Utc>>;
    /// A nullable timestamp column.
    fn opt_time(&self, column: &str) -> StoreResult<Option<DateTime<Utc>>>;
    /// A date column.
    fn date(&self, column: &str) -> StoreResult<NaiveDate>;
}

fn unreadable(column: &str) -> StoreError {
    StoreError::internal(format!("stored value in column {column} cannot be read"))
}

fn parse<T: std::str::FromStr>(text: &str, column: &str) -> StoreResult<T> {
    text.parse().map_err(|_| unreadable(column))
}

/// A stored key version.
pub(crate) fn key_version(value: i64) -> StoreResult<NonZeroU32> {
    u32::try_from(value)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| unreadable("encryption_key_version"))
}

/// A stored count.
pub(crate) fn count(value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| unreadable("count"))
}

fn envelope(row: &impl ReadRow, column: &str) -> StoreResult<EncryptedEnvelope> {
    EncryptedEnvelope::new(row.bytes(column)?).map_err(|_| unreadable(column))
}

/// The `role` column (NULL for no membership).
pub(crate) fn role_from_row(row: &impl ReadRow) -> StoreResult<Option<Role>> {
    row.opt_text("role")?
        .map(|text| parse(&text, "role"))
        .transpose()
}

pub(crate) fn organization(row: &impl ReadRow) -> StoreResult<Organization> {
    let threshold = u8::try_from(row.int("hot_lead_threshold")?)
        .ok()
        .and_then(|score| HotLeadThreshold::new(score).ok())
        .ok_or_else(|| unreadable("hot_lead_threshold"))?;
    Ok(Organization {
        id: OrgId::from_uuid(row.uuid("id")?),
        name: row.text("name")?,
        hot_lead_threshold: threshold,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn member(row: &impl ReadRow) -> StoreResult<Member> {
    Ok(Member {
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        user_id: UserId::from_uuid(row.uuid("user_id")?),
        role: parse(&row.text("role")?, "role")?,
        created_at: row.time("created_at")?,
        profile: MemberProfile::new(
            row.opt_text("email")?.as_deref(),
            row.opt_text("name")?.as_deref(),
        ),
    })
}

pub(crate) fn credential_metadata(row: &impl ReadRow) -> StoreResult<CredentialMetadata> {
    Ok(CredentialMetadata {
        id: CredentialId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        credential_type: parse(&row.text("credential_type")?, "credential_type")?,
        display_name: row.text("display_name")?,
        public_hint: row.opt_text("public_hint")?,
        provider_account_id: row.opt_text("provider_account_id")?,
        is_active: row.flag("is_active")?,
        verification_status: parse(&row.text("verification_status")?, "verification_status")?,
        last_verified_at: row.opt_time("last_verified_at")?,
        verification_error: row.opt_text("verification_error")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        created_by: row.opt_uuid("created_by")?.map(UserId::from_uuid),
        encryption_key_version: key_version(row.int("encryption_key_version")?)?,
    })
}

/// A row of a re-verification claim.
pub(crate) fn due_reverification(row: &impl ReadRow) -> StoreResult<DueReverification> {
    Ok(DueReverification {
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        credential_id: CredentialId::from_uuid(row.uuid("credential_id")?),
        credential_type: parse(&row.text("credential_type")?, "credential_type")?,
        provider_account_id: row.opt_text("provider_account_id")?,
    })
}

/// A row of the credential counts.
pub(crate) fn credential_status_count(row: &impl ReadRow) -> StoreResult<CredentialStatusCount> {
    Ok(CredentialStatusCount {
        credential_type: parse(&row.text("credential_type")?, "credential_type")?,
        verification_status: parse(&row.text("verification_status")?, "verification_status")?,
        is_active: row.flag("is_active")?,
        credentials: count(row.int("credentials")?)?,
    })
}

/// A claimed outbox row.
pub(crate) fn credential_event(row: &impl ReadRow) -> StoreResult<CredentialEvent> {
    Ok(CredentialEvent {
        id: CredentialEventId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        credential_id: CredentialId::from_uuid(row.uuid("credential_id")?),
        credential_type: parse(&row.text("credential_type")?, "credential_type")?,
        display_name: row.text("display_name")?,
        kind: parse(&row.text("event_type")?, "event_type")?,
        verification_status: parse(&row.text("verification_status")?, "verification_status")?,
        verification_error: row.opt_text("verification_error")?,
        occurred_at: row.time("occurred_at")?,
        attempts: u32::try_from(row.int("attempts")?).map_err(|_| unreadable("attempts"))?,
    })
}

pub(crate) fn credential_record(row: &impl ReadRow) -> StoreResult<CredentialRecord> {
    Ok(CredentialRecord {
        metadata: credential_metadata(row)?,
        encrypted_data: envelope(row, "encrypted_data")?,
    })
}

pub(crate) fn audit_event(row: &impl ReadRow) -> StoreResult<AuditEvent> {
    Ok(AuditEvent {
        id: AuditEventId(row.int("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        seq: row.int("seq")?,
        at: row.time("at")?,
        actor: parse(&row.text("actor")?, "actor")?,
        action: AuditAction::parse(&row.text("action")?).map_err(|_| unreadable("action"))?,
        credential_id: row.opt_uuid("credential_id")?.map(CredentialId::from_uuid),
        credential_type: row
            .opt_text("credential_type")?
            .map(|text| parse(&text, "credential_type"))
            .transpose()?,
        detail: serde_json::from_str(&row.text("detail")?).map_err(|_| unreadable("detail"))?,
    })
}

pub(crate) fn key_check_value(row: &impl ReadRow) -> StoreResult<StoredKeyCheckValue> {
    Ok(StoredKeyCheckValue {
        key_version: key_version(row.int("key_version")?)?,
        check_value: row.bytes("check_value")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn master_key(row: &impl ReadRow) -> StoreResult<StoredMasterKey> {
    Ok(StoredMasterKey {
        key_version: key_version(row.int("key_version")?)?,
        kms_key_id: row.text("kms_key_id")?,
        ciphertext: row.bytes("ciphertext")?,
        check_value: row.bytes("check_value")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn oauth_state(row: &impl ReadRow) -> StoreResult<OAuthState> {
    Ok(OAuthState {
        id: OAuthStateId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        user_id: UserId::from_uuid(row.uuid("user_id")?),
        provider: parse(&row.text("provider")?, "provider")?,
        pkce_verifier_envelope: envelope(row, "pkce_verifier_envelope")?,
        client_credential_id: row
            .opt_uuid("client_credential_id")?
            .map(CredentialId::from_uuid),
        created_at: row.time("created_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(crate) fn sms_message(row: &impl ReadRow) -> StoreResult<SmsMessage> {
    Ok(SmsMessage {
        id: row.uuid("id")?,
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        credential_id: row.opt_uuid("credential_id")?.map(CredentialId::from_uuid),
        provider_message_sid: row.text("provider_message_sid")?,
        to_masked: row.text("to_masked")?,
        purpose: row.text("purpose")?,
        status: row.text("status")?,
        error_code: row.opt_text("error_code")?,
        sent_at: row.time("sent_at")?,
        status_updated_at: row.time("status_updated_at")?,
        delivered_at: row.opt_time("delivered_at")?,
    })
}

/// A session's idle timeout in whole seconds, as both backends store it (at least 1).
pub(crate) fn idle_timeout_secs(session: &NewDashboardSession) -> StoreResult<i32> {
    idle_secs(session.idle_timeout)
}

/// An idle timeout in whole seconds, as the sessions table keeps it (1 second to 68 years).
pub(crate) fn idle_secs(idle_timeout: std::time::Duration) -> StoreResult<i32> {
    i32::try_from(idle_timeout.as_secs())
        .ok()
        .filter(|secs| *secs > 0)
        .ok_or_else(|| {
            InvalidValue {
                field: "idle_timeout",
                reason: "must be 1 second to 68 years",
            }
            .into()
        })
}

/// A live session's `org_id, user_id`.
pub(crate) fn dashboard_session(row: &impl ReadRow) -> StoreResult<DashboardSession> {
    Ok(DashboardSession {
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        user_id: UserId::from_uuid(row.uuid("user_id")?),
    })
}

pub(crate) fn usage_counter(row: &impl ReadRow) -> StoreResult<UsageCounter> {
    Ok(UsageCounter {
        provider: parse(&row.text("provider")?, "provider")?,
        day: row.date("day")?,
        calls: count(row.int("calls")?)?,
        failures: count(row.int("failures")?)?,
    })
}

pub(crate) fn operator_envelope(row: &impl ReadRow) -> StoreResult<OperatorEnvelope> {
    Ok(OperatorEnvelope {
        id: CredentialId::from_uuid(row.uuid("id")?),
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        credential_type: parse(&row.text("credential_type")?, "credential_type")?,
        encryption_key_version: key_version(row.int("encryption_key_version")?)?,
        encrypted_data: envelope(row, "encrypted_data")?,
    })
}

/// Implements [`ReadRow`] for a backend row type; `$uuid` and `$opt_uuid` say how UUIDs are read.
macro_rules! impl_read_row {
    ($row:ty, uuid = |$r:ident, $c:ident| $uuid:expr, opt_uuid = |$r2:ident, $c2:ident| $opt_uuid:expr) => {
        impl $crate::rows::ReadRow for $row {
            fn uuid(&self, column: &str) -> $crate::error::StoreResult<uuid::Uuid> {
                let ($r, $c) = (self, column);
                $uuid
            }
            fn opt_uuid(&self, column: &str) -> $crate::error::StoreResult<Option<uuid::Uuid>> {
                let ($r2, $c2) = (self, column);
                $opt_uuid
            }
            fn text(&self, column: &str) -> $crate::error::StoreResult<String> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_text(&self, column: &str) -> $crate::error::StoreResult<Option<String>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn int(&self, column: &str) -> $crate::error::StoreResult<i64> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn flag(&self, column: &str) -> $crate::error::StoreResult<bool> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn bytes(&self, column: &str) -> $crate::error::StoreResult<Vec<u8>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_bytes(&self, column: &str) -> $crate::error::StoreResult<Option<Vec<u8>>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn time(
                &self,
                column: &str,
            ) -> $crate::error::StoreResult<chrono::DateTime<chrono::Utc>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn opt_time(
                &self,
                column: &str,
            ) -> $crate::error::StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
            fn date(&self, column: &str) -> $crate::error::StoreResult<chrono::NaiveDate> {
                Ok(sqlx::Row::try_get(self, column)?)
            }
        }
    };
}

pub(crate) use impl_read_row;

/// A fixed-length byte column (a hash or a signature).
pub(crate) fn fixed_bytes<const N: usize>(
    row: &impl ReadRow,
    column: &str,
) -> StoreResult<[u8; N]> {
    row.bytes(column)?
        .try_into()
        .map_err(|_| unreadable(column))
}

/// A row of `byoc_audit_digests_due`.
pub(crate) fn audit_digest_due(row: &impl ReadRow) -> StoreResult<AuditDigestDue> {
    let previous_payload_hash = match row.opt_bytes("previous_payload_hash")? {
        None => None,
        Some(hash) => Some(
            hash.try_into()
                .map_err(|_| unreadable("previous_payload_hash"))?,
        ),
    };
    Ok(AuditDigestDue {
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        digest_seq: row.int("digest_seq")?,
        head: AuditChainHead {
            seq: row.int("head_seq")?,
            hash: fixed_bytes(row, "head_hash")?,
        },
        previous_payload_hash,
        issued_at: row.time("issued_at")?,
    })
}

/// A recorded digest (`org_id, digest_seq, head_seq, payload, signature`).
pub(crate) fn stored_audit_digest(row: &impl ReadRow) -> StoreResult<StoredAuditDigest> {
    Ok(StoredAuditDigest {
        org_id: OrgId::from_uuid(row.uuid("org_id")?),
        digest_seq: row.int("digest_seq")?,
        head_seq: row.int("head_seq")?,
        payload: row.text("payload")?,
        signature: fixed_bytes(row, "signature")?,
    })
}

/// A row of a digest delivery claim.
pub(crate) fn audit_digest_delivery(row: &impl ReadRow) -> StoreResult<AuditDigestDelivery> {
    Ok(AuditDigestDelivery {
        id: row.uuid("delivery_id")?,
        digest: stored_audit_digest(row)?,
        issued_at: row.time("issued_at")?,
        attempts: u32::try_from(row.int("attempts")?).map_err(|_| unreadable("attempts"))?,
    })
}
