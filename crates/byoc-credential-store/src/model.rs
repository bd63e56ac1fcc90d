//! The rows the repository stores and returns, and the validated values they are built from.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use byoc_credential_types::CredentialType;

use crate::tenant::{Actor, CredentialId, OAuthStateId, OrgId, UserId};

/// Why a value is not valid for the store. The message names the field and never echoes the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidValue {
    /// The field that is wrong.
    pub field: &'static str,
    /// What a valid value looks like.
    pub reason: &'static str,
}

/// Whether `c` shows as something: not whitespace, not a control character, not an invisible formatting
/// character (zero-width spaces and joiners, direction marks and embeddings, the byte-order mark, the soft
/// hyphen). A name made only of those would look blank.
fn is_visible(c: char) -> bool {
    !(c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
        ))
}

/// Whether `c` disguises text: a bidirectional embedding, override, isolate or mark (U+202A–U+202E,
/// U+2066–U+2069, U+200E, U+200F, U+061C), which reorders what is shown, or a zero-width character (U+200B–U+200D,
/// U+2060–U+2064, U+FEFF), which makes a name look like another (`"B main\u{200B}"` shows as `"B main"`).
/// Refused anywhere in a bounded text.
fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Builds a bounded, non-empty text newtype with a `parse` constructor.
macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, field = $field:literal, max = $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Parses the text: 1 to ", stringify!($max), " characters, at least one of them visible, no control, bidirectional-formatting or zero-width characters.")]
            pub fn parse(text: &str) -> Result<Self, InvalidValue> {
                let length = text.chars().count();
                if length > $max
                    || !text.chars().any(is_visible)
                    || text.chars().any(|c| c.is_control() || is_deceptive(c))
                {
                    Err(InvalidValue {
                        field: $field,
                        reason: concat!(
                            "must be 1 to ", stringify!($max),
                            " characters, not blank, without control, bidirectional-formatting or zero-width characters"
                        ),
                    })
                } else {
                    Ok(Self(text.to_owned()))
                }
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

bounded_text!(
    /// An organization's name.
    OrganizationName, field = "name", max = 200
);
bounded_text!(
    /// A credential's display name, unique per organization and credential type.
    DisplayName, field = "displayName", max = 255
);
bounded_text!(
    /// A non-secret hint shown next to a credential, such as the last four characters of an account SID.
    PublicHint, field = "publicHint", max = 64
);
bounded_text!(
    /// A provider's id for a sent message (Twilio's `MessageSid`).
    ProviderMessageSid, field = "providerMessageSid", max = 64
);
bounded_text!(
    /// A delivery status as the provider reports it (`queued`, `sent`, `delivered`, `failed`, ...).
    DeliveryStatus, field = "status", max = 32
);
bounded_text!(
    /// A phone number with all but its last digits masked, safe to store and show.
    MaskedPhone, field = "to", max = 32
);
bounded_text!(
    /// Why a message was sent, such as `sms:hot_lead` or `sms:test`.
    Purpose, field = "purpose", max = 64
);
bounded_text!(
    /// A provider's error code for a message (Twilio's `ErrorCode`).
    ProviderErrorCode, field = "errorCode", max = 32
);
bounded_text!(
    /// The provider's id of the account a credential belongs to (Twilio's Account SID). Not a secret: kept as
    /// metadata so that a request for another account is refused before anything is decrypted.
    ProviderAccountId, field = "providerAccountId", max = 64
);

/// The status a delivered message reports; reaching it stamps `delivered_at`.
pub const DELIVERED: &str = "delivered";

/// Twilio's message statuses in the order a message moves through them (queued → sending → sent → delivered,
/// undelivered or failed), as ranks. A recorded status gives way only to one of the same or a higher rank, and a
/// [`FINAL_DELIVERY_RANK`] status to none, so a replayed or late callback never moves a message back. Statuses
/// not listed rank 0.
const DELIVERY_ORDER: [(&str, i64); 9] = [
    ("accepted", 0),
    ("scheduled", 0),
    ("queued", 1),
    ("sending", 2),
    ("sent", 3),
    ("delivered", FINAL_DELIVERY_RANK),
    ("undelivered", FINAL_DELIVERY_RANK),
    ("failed", FINAL_DELIVERY_RANK),
    ("canceled", FINAL_DELIVERY_RANK),
];

/// The rank of the statuses after which nothing changes (delivered, undelivered, failed, canceled).
pub(crate) const FINAL_DELIVERY_RANK: i64 = 4;

/// The rank of a status in [`DELIVERY_ORDER`].
pub(crate) fn delivery_rank(status: &str) -> i64 {
    DELIVERY_ORDER
        .iter()
        .find(|(name, _)| *name == status)
        .map_or(0, |(_, rank)| *rank)
}

/// The SQL expression of the rank of the status in `column` (the same ranks as [`delivery_rank`]), for both
/// backends.
pub(crate) fn delivery_rank_sql(column: &str) -> String {
    let arms: String = DELIVERY_ORDER
        .iter()
        .map(|(name, rank)| format!(" WHEN '{name}' THEN {rank}"))
        .collect();
    format!("(CASE {column}{arms} ELSE 0 END)")
}

/// What an audit event records: lowercase, starting with a letter, then up to 63 of `a-z 0-9 _ . :`
/// (`created`, `read`, `verified`, `verification_failed`, `deactivated`, `purged`, `rotated`,
/// `legacy_fallback_used`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AuditAction(String);

impl AuditAction {
    /// Parses an action name.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let mut chars = text.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':'));
        if first_ok && rest_ok && text.len() <= 64 {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidValue {
                field: "action",
                reason: "must be 1 to 64 characters of a-z, 0-9, '_', '.', ':'",
            })
        }
    }

    /// The action name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lead score at or above which a lead is hot and triggers the hot-lead SMS: 0 to 100, default 80.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HotLeadThreshold(u8);

impl HotLeadThreshold {
    /// The default threshold, 80.
    pub const DEFAULT: HotLeadThreshold = HotLeadThreshold(80);

    /// Builds a threshold from 0 to 100.
    pub fn new(score: u8) -> Result<Self, InvalidValue> {
        if score <= 100 {
            Ok(Self(score))
        } else {
            Err(InvalidValue {
                field: "hotLeadThreshold",
                reason: "must be from 0 to 100",
            })
        }
    }

    /// The threshold score.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for HotLeadThreshold {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// An encryption envelope as stored: wrapped data key, nonce, ciphertext and tag, opaque to this crate.
/// Never empty. `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedEnvelope(Vec<u8>);

impl EncryptedEnvelope {
    /// Wraps envelope bytes; empty input is rejected.
    pub fn new(bytes: Vec<u8>) -> Result<Self, InvalidValue> {
        if bytes.is_empty() {
            Err(InvalidValue {
                field: "encrypted_data",
                reason: "must not be empty",
            })
        } else {
            Ok(Self(bytes))
        }
    }

    /// The envelope bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The envelope bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for EncryptedEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedEnvelope({} bytes)", self.0.len())
    }
}

/// Declares a text-backed enum with `as_str`, `Display`, `FromStr` and serde as snake_case text.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $err:literal, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored and shown.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(text: &str) -> Result<Self, InvalidValue> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(InvalidValue { field: stringify!($name), reason: $err }),
                }
            }
        }
    };
}

text_enum!(
    /// A member's role in an organization.
    Role, "must be owner, admin or member", {
        /// May do everything, including purging credentials and granting the owner role.
        Owner => "owner",
        /// May add, verify and deactivate credentials and manage non-owner members.
        Admin => "admin",
        /// May read metadata and the audit log and use credentials.
        Member => "member",
    }
);

impl Role {
    /// Owners and admins manage credentials.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

text_enum!(
    /// Where a credential stands with its provider.
    VerificationStatus, "must be pending, verified or failed", {
        /// Stored, not yet checked.
        Pending => "pending",
        /// The provider accepted it.
        Verified => "verified",
        /// The provider refused it (see `verification_error`).
        Failed => "failed",
    }
);

/// An organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Its name.
    pub name: String,
    /// Lead score at or above which a lead triggers the hot-lead SMS.
    pub hot_lead_threshold: HotLeadThreshold,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// A user's membership in an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The organization.
    pub org_id: OrgId,
    /// The user.
    pub user_id: UserId,
    /// The user's role there.
    pub role: Role,
    /// When the membership was created.
    pub created_at: DateTime<Utc>,
}

/// A credential to store. The caller encrypts first (binding the envelope to org, type and id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCredential {
    /// The id the envelope was bound to.
    pub id: CredentialId,
    /// The provider.
    pub credential_type: CredentialType,
    /// The name people see; unique per organization and type.
    pub display_name: DisplayName,
    /// A non-secret hint (last four of a SID), if any.
    pub public_hint: Option<PublicHint>,
    /// The provider's id of the account (Twilio's Account SID), when the provider has one.
    pub provider_account_id: Option<ProviderAccountId>,
    /// The envelope.
    pub encrypted_data: EncryptedEnvelope,
    /// The master key version that wrapped the data key.
    pub encryption_key_version: NonZeroU32,
}

/// A credential's metadata: everything but the envelope. Safe to list and show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialMetadata {
    /// Its id.
    pub id: CredentialId,
    /// The organization it belongs to.
    pub org_id: OrgId,
    /// The provider.
    pub credential_type: CredentialType,
    /// The name people see.
    pub display_name: String,
    /// A non-secret hint, if any.
    pub public_hint: Option<String>,
    /// The provider's id of the account (Twilio's Account SID; not a secret), when known: `None` for
    /// providers without one, or when whoever stored the credential did not give it.
    pub provider_account_id: Option<String>,
    /// False once deactivated; an inactive credential is never used.
    pub is_active: bool,
    /// Where it stands with its provider.
    pub verification_status: VerificationStatus,
    /// When it was last verified or found failing.
    pub last_verified_at: Option<DateTime<Utc>>,
    /// The provider's reason when it failed.
    pub verification_error: Option<String>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
    /// Who stored it (none when an operator imported it).
    pub created_by: Option<UserId>,
    /// The master key version that wraps its data key.
    pub encryption_key_version: NonZeroU32,
}

/// A credential with its envelope, for decryption by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Its metadata.
    pub metadata: CredentialMetadata,
    /// Its envelope.
    pub encrypted_data: EncryptedEnvelope,
}

/// What an operator import (`byoc import-env`) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Imported {
    /// The credential was stored, with its `created` audit event.
    Created(CredentialMetadata),
    /// The organization already had an active credential of the type with the same provider account id (the
    /// same Twilio Account SID); this is it (verified first, then the newest). Nothing was written: no
    /// credential, no audit event.
    AlreadyPresent(CredentialMetadata),
}

/// The outcome of verifying or using a credential; the store records it at its own time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationOutcome {
    /// The new status.
    pub status: VerificationStatus,
    /// The provider's reason for a failure (cut to 2000 characters when stored); never a secret.
    pub error: Option<String>,
}

/// The id of an audit event; newer events have larger ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditEventId(pub i64);

/// An audit event to append. Who did it and when are not part of it: the store takes the actor from the
/// tenant that appends it and the time from its own clock, so no caller can write an event in someone else's
/// name or at another time.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    /// What happened.
    pub action: AuditAction,
    /// Which credential, if any.
    pub credential_id: Option<CredentialId>,
    /// Which provider, if any.
    pub credential_type: Option<CredentialType>,
    /// Structured details, such as the purpose of a read; never a secret.
    pub detail: serde_json::Value,
}

/// A stored audit event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Its id (the `before` cursor of the audit list).
    pub id: AuditEventId,
    /// The organization.
    pub org_id: OrgId,
    /// Its position in the organization's hash chain, from 1.
    pub seq: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it, as `user:<uuid>` or `service:<name>`.
    #[serde(serialize_with = "serialize_display")]
    pub actor: Actor,
    /// What happened.
    pub action: AuditAction,
    /// Which credential, if any.
    pub credential_id: Option<CredentialId>,
    /// Which provider, if any.
    pub credential_type: Option<CredentialType>,
    /// Structured details.
    pub detail: serde_json::Value,
}

fn serialize_display<S: serde::Serializer, T: fmt::Display>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Which page of the audit log to read, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditPage {
    /// At most this many events (clamped to 1..=1000).
    pub limit: u32,
    /// Only events older than this one.
    pub before: Option<AuditEventId>,
}

/// Which audit events to read: every condition given must hold (none given: every event).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<AuditAction>,
    /// Only events about this credential.
    pub credential_id: Option<CredentialId>,
    /// Only events by this actor.
    pub actor: Option<Actor>,
    /// Only events at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub to: Option<DateTime<Utc>>,
}

/// What checking an organization's audit chain found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AuditChainStatus {
    /// Every link checks out.
    Intact {
        /// How many events were checked.
        events: u64,
    },
    /// The chain is broken: an event was changed or deleted behind its back.
    Broken {
        /// How many events checked out before the break.
        events_checked: u64,
        /// The first sequence number at which the chain does not hold.
        first_broken_seq: i64,
        /// What is wrong there.
        problem: String,
    },
}

/// The last link of an organization's audit chain as the database stores it: the newest event's sequence number
/// and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditChainHead {
    /// The newest event's sequence number (from 1).
    pub seq: i64,
    /// The newest event's SHA-256 chain hash.
    pub hash: [u8; 32],
}

impl AuditChainHead {
    /// The head from a stored sequence number and hash; `None` for an empty chain (sequence 0, or no head).
    pub(crate) fn from_stored(seq: Option<i64>, hash: Option<Vec<u8>>) -> Option<AuditChainHead> {
        match (seq, hash) {
            (Some(seq), Some(hash)) if seq > 0 => Some(AuditChainHead {
                seq,
                hash: hash.try_into().ok()?,
            }),
            _ => None,
        }
    }

    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// A check of an organization's audit chain: what it found and the chain head it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditChainReport {
    /// Intact, or where it breaks.
    pub status: AuditChainStatus,
    /// The stored chain head; `None` for an empty chain.
    pub head: Option<AuditChainHead>,
}

/// An organization's audit chain check, for the operator's `byoc audit verify`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrganizationAuditChain {
    /// The organization.
    pub org_id: OrgId,
    /// What checking its chain found.
    pub report: AuditChainReport,
}

/// A master key version's key check value (a value derived from the key that proves which key it is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKeyCheckValue {
    /// The key version.
    pub key_version: NonZeroU32,
    /// The check value, as first stored for that version.
    pub check_value: Vec<u8>,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
}

/// A master key version held by a key management service, as `master_keys` stores it: the KMS's ciphertext of the
/// key and the key's check value, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMasterKey {
    /// The master key version.
    pub key_version: NonZeroU32,
    /// The KMS key it is encrypted under (key id, ARN or alias, as the operator gave it).
    pub kms_key_id: String,
    /// The KMS's ciphertext of the master key.
    pub ciphertext: Vec<u8>,
    /// The master key's check value (32 bytes).
    pub check_value: Vec<u8>,
    /// When the version was added.
    pub created_at: DateTime<Utc>,
}

/// A KMS-held master key version to add (`byoc keys create --kms`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMasterKey {
    /// The master key version (not yet in `master_keys`).
    pub key_version: NonZeroU32,
    /// The KMS key it is encrypted under.
    pub kms_key_id: String,
    /// The KMS's ciphertext of the master key.
    pub ciphertext: Vec<u8>,
    /// The master key's check value (32 bytes).
    pub check_value: Vec<u8>,
}

impl NewMasterKey {
    /// Checks what the table's constraints check, so a bad value is a named [`InvalidValue`], not a database
    /// error.
    pub(crate) fn check(&self) -> Result<(), InvalidValue> {
        if self.kms_key_id.trim().is_empty() || self.kms_key_id.len() > 2048 {
            return Err(InvalidValue {
                field: "kms_key_id",
                reason: "must be 1 to 2048 characters",
            });
        }
        if self.ciphertext.is_empty() || self.ciphertext.len() > 65536 {
            return Err(InvalidValue {
                field: "ciphertext",
                reason: "must be 1 to 65536 bytes",
            });
        }
        if self.check_value.len() != 32 {
            return Err(InvalidValue {
                field: "check_value",
                reason: "must be 32 bytes",
            });
        }
        Ok(())
    }
}

/// An OAuth connect attempt to remember until its callback; bound to the tenant's org and user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOAuthState {
    /// The state id (the random part of the `state` parameter).
    pub id: OAuthStateId,
    /// The provider being connected (only `google_calendar` today).
    pub provider: CredentialType,
    /// The PKCE code verifier, encrypted by the caller.
    pub pkce_verifier_envelope: EncryptedEnvelope,
    /// The org's own OAuth client credential, or none for the platform's client.
    pub client_credential_id: Option<CredentialId>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// A consumed OAuth state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthState {
    /// The state id.
    pub id: OAuthStateId,
    /// The organization it was started in.
    pub org_id: OrgId,
    /// The user who started it.
    pub user_id: UserId,
    /// The provider being connected.
    pub provider: CredentialType,
    /// The encrypted PKCE code verifier.
    pub pkce_verifier_envelope: EncryptedEnvelope,
    /// The org's own OAuth client credential, if one was used.
    pub client_credential_id: Option<CredentialId>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// An SMS that was handed to the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSmsMessage {
    /// The credential it was sent with (none for the legacy fallback).
    pub credential_id: Option<CredentialId>,
    /// The provider's message id.
    pub provider_message_sid: ProviderMessageSid,
    /// The masked recipient.
    pub to_masked: MaskedPhone,
    /// Why it was sent.
    pub purpose: Purpose,
    /// The status the provider answered with.
    pub status: DeliveryStatus,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
}

/// A delivery status reported by the provider's status callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsStatusUpdate {
    /// The provider's message id.
    pub provider_message_sid: ProviderMessageSid,
    /// The new status; [`DELIVERED`] also stamps `delivered_at` (once).
    pub status: DeliveryStatus,
    /// The provider's error code, if any.
    pub error_code: Option<ProviderErrorCode>,
    /// When the status was received.
    pub at: DateTime<Utc>,
}

/// A stored SMS message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmsMessage {
    /// Its row id.
    pub id: uuid::Uuid,
    /// The organization.
    pub org_id: OrgId,
    /// The credential it was sent with.
    pub credential_id: Option<CredentialId>,
    /// The provider's message id.
    pub provider_message_sid: String,
    /// The masked recipient.
    pub to_masked: String,
    /// Why it was sent.
    pub purpose: String,
    /// The latest status.
    pub status: String,
    /// The provider's error code, if any.
    pub error_code: Option<String>,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// When the status last changed.
    pub status_updated_at: DateTime<Utc>,
    /// When it was first reported delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The SHA-256 hash of a settings-page session id: all the store keeps of the id (the cookie holds the id
/// itself). `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionIdHash([u8; 32]);

impl SessionIdHash {
    /// Wraps a SHA-256 digest.
    pub fn from_digest(digest: [u8; 32]) -> SessionIdHash {
        SessionIdHash(digest)
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionIdHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionIdHash(..)")
    }
}

/// A settings-page session to store for the tenant user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDashboardSession {
    /// The hash of the session id.
    pub id_hash: SessionIdHash,
    /// How long the session stays live without being used (at least one second).
    pub idle_timeout: std::time::Duration,
    /// When it ends however much it is used.
    pub expires_at: DateTime<Utc>,
}

/// Whom a live settings-page session signs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DashboardSession {
    /// The organization.
    pub org_id: OrgId,
    /// The user.
    pub user_id: UserId,
}

/// An organization's provider calls and failures on one day (UTC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageCounter {
    /// The provider.
    pub provider: CredentialType,
    /// The day.
    pub day: NaiveDate,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
}

/// One credential's envelope as the operator paths (rotation, `keys check`) see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorEnvelope {
    /// The credential.
    pub id: CredentialId,
    /// Its organization (part of the envelope's associated data).
    pub org_id: OrgId,
    /// Its provider (part of the envelope's associated data).
    pub credential_type: CredentialType,
    /// The key version that wraps its data key.
    pub encryption_key_version: NonZeroU32,
    /// The envelope.
    pub encrypted_data: EncryptedEnvelope,
}

impl OperatorEnvelope {
    /// The position of this row in an operator walk, to continue after it.
    pub fn cursor(&self) -> EnvelopeCursor {
        EnvelopeCursor {
            org_id: self.org_id,
            id: self.id,
        }
    }
}

/// Where an operator walk over every credential stands: the last row read. Walks go in (organization, id)
/// order, so that a batch spans few organizations (rotation writes one audit event per organization a batch
/// swaps rows of).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvelopeCursor {
    /// The organization of the last row read.
    pub org_id: OrgId,
    /// The last row read.
    pub id: CredentialId,
}

/// A compare-and-swap of one envelope: applied only if the row still holds `expected` under
/// `expected_key_version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeSwap {
    /// The credential.
    pub id: CredentialId,
    /// The envelope the caller read.
    pub expected: EncryptedEnvelope,
    /// The key version the caller read with `expected` (the row must still be on it).
    pub expected_key_version: NonZeroU32,
    /// The re-wrapped envelope.
    pub replacement: EncryptedEnvelope,
    /// The key version that wraps the replacement's data key.
    pub replacement_key_version: NonZeroU32,
}

/// One changed credential, as another store on the same database reports it: inserted, deactivated, verified
/// or found failing, its envelope edited, or purged.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CredentialChange {
    /// Its organization.
    pub org_id: OrgId,
    /// Its provider.
    pub credential_type: CredentialType,
    /// The credential.
    pub credential_id: CredentialId,
}

/// A change made through any store on the same database (or by anyone writing it), as notified: what each
/// replica must drop from its caches.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreChange {
    /// A credential was inserted, deactivated, verified or found failing, its envelope edited, or purged.
    Credential(CredentialChange),
    /// A member was added, given another role, or removed.
    Member {
        /// The organization.
        org_id: OrgId,
        /// The user.
        user_id: UserId,
    },
    /// The organization's settings changed, or it was removed.
    Organization {
        /// The organization.
        org_id: OrgId,
    },
}

/// How many credentials one key version wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KeyVersionCount {
    /// The key version.
    pub key_version: NonZeroU32,
    /// How many credentials it wraps.
    pub credentials: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_text_rejects_blank_and_long() {
        assert!(DisplayName::parse("My Twilio").is_ok());
        assert!(DisplayName::parse("   ").is_err());
        for invisible in [
            "\u{200B}\u{200B}",
            "\u{FEFF}",
            " \u{2060}\u{00AD} ",
            "\u{202E}\u{3164}",
        ] {
            assert!(DisplayName::parse(invisible).is_err(), "{invisible:?}");
        }
        for control in ["Main\u{0}", "Main\nline", "\u{7}bell"] {
            assert!(DisplayName::parse(control).is_err(), "{control:?}");
        }
        assert!(DisplayName::parse("Zoë Clinic 🦷").is_ok());
        assert!(
            DisplayName::parse("عيادة الأسنان").is_ok(),
            "right-to-left text itself is fine"
        );
        assert!(
            DisplayName::parse("Café ❤️").is_ok(),
            "emoji variation selectors are fine"
        );
    }

    #[test]
    fn bidirectional_formatting_and_zero_width_characters_are_refused_anywhere() {
        let mut refused: Vec<char> = ('\u{202A}'..='\u{202E}').collect();
        refused.extend('\u{2066}'..='\u{2069}');
        refused.extend(['\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}']);
        refused.extend(['\u{2060}', '\u{FEFF}', '\u{061C}']);
        for c in refused {
            for text in [
                format!("B main{c}"),
                format!("{c}B main"),
                format!("B{c} main"),
            ] {
                let error = DisplayName::parse(&text).expect_err(&format!("{text:?}"));
                assert_eq!(error.field, "displayName");
            }
        }
        assert!(OrganizationName::parse("Clinic\u{202E}cinilC").is_err());
        assert!(DisplayName::parse(&"x".repeat(256)).is_err());
        assert!(DisplayName::parse(&"é".repeat(255)).is_ok());
    }

    #[test]
    fn delivery_ranks_follow_twilios_order_in_rust_and_sql() {
        let order = ["queued", "sending", "sent", "delivered"];
        assert!(order
            .windows(2)
            .all(|pair| delivery_rank(pair[0]) < delivery_rank(pair[1])));
        for status in ["delivered", "undelivered", "failed"] {
            assert_eq!(delivery_rank(status), FINAL_DELIVERY_RANK);
        }
        assert_eq!(delivery_rank("something-new"), 0);
        let sql = delivery_rank_sql("status");
        assert!(
            sql.starts_with("(CASE status WHEN 'accepted' THEN 0"),
            "{sql}"
        );
        assert!(sql.ends_with(" ELSE 0 END)"), "{sql}");
    }

    #[test]
    fn session_hashes_hide_their_bytes() {
        let hash = SessionIdHash::from_digest([7; 32]);
        assert_eq!(format!("{hash:?}"), "SessionIdHash(..)");
        assert_eq!(hash.as_bytes(), &[7; 32]);
    }

    #[test]
    fn audit_actions_are_checked() {
        assert!(AuditAction::parse("read").is_ok());
        assert!(AuditAction::parse("sms:hot_lead").is_ok());
        assert!(AuditAction::parse("Read").is_err());
        assert!(AuditAction::parse("").is_err());
        assert!(AuditAction::parse("a b").is_err());
    }

    #[test]
    fn thresholds_stop_at_100() {
        assert_eq!(HotLeadThreshold::default().get(), 80);
        assert!(HotLeadThreshold::new(100).is_ok());
        assert!(HotLeadThreshold::new(101).is_err());
    }

    #[test]
    fn enums_round_trip_and_reject_unknown_text() {
        for credential_type in CredentialType::ALL {
            assert_eq!(
                credential_type.as_str().parse::<CredentialType>(),
                Ok(credential_type)
            );
        }
        assert!("slack".parse::<CredentialType>().is_err());
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!(!Role::Member.can_manage());
    }

    #[test]
    fn envelopes_are_never_empty_and_debug_hides_bytes() {
        assert!(EncryptedEnvelope::new(Vec::new()).is_err());
        let envelope = EncryptedEnvelope::new(vec![1, 2, 3]).unwrap();
        assert_eq!(format!("{envelope:?}"), "EncryptedEnvelope(3 bytes)");
    }
}
