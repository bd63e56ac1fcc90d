//! What the store hands the service's background work: credentials due for re-verification, counts of
//! credentials by status, and the outbox of credential events (status changes for the SaaS).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::model::{CredentialType, InvalidValue, VerificationStatus};
use crate::tenant::{CredentialId, OrgId};

/// A credential whose re-verification this caller claimed for the current round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueReverification {
    /// Its organization.
    pub org_id: OrgId,
    /// The credential.
    pub credential_id: CredentialId,
    /// Its provider.
    pub credential_type: CredentialType,
    /// The provider's id of the account (Twilio's Account SID), when the credential has one.
    pub provider_account_id: Option<String>,
}

/// How many credentials of one type are in one state, across organizations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialStatusCount {
    /// The provider.
    pub credential_type: CredentialType,
    /// The verification status.
    pub verification_status: VerificationStatus,
    /// Whether active (deactivated credentials keep their last status).
    pub is_active: bool,
    /// How many.
    pub credentials: u64,
}

/// The id of a credential event: the `webhook-id` a receiver uses to drop duplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct CredentialEventId(Uuid);

impl CredentialEventId {
    /// Wraps a stored id.
    pub fn from_uuid(id: Uuid) -> CredentialEventId {
        CredentialEventId(id)
    }

    /// The id.
    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for CredentialEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evt_{}", self.0.simple())
    }
}

/// What happened to a credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum CredentialEventKind {
    /// Its status became `verified`.
    Verified,
    /// Its status became `failed` (a provider other than Google Calendar).
    VerificationFailed,
    /// A Google Calendar credential's status became `failed`: the clinic has to connect again.
    ReconnectNeeded,
    /// It was deactivated.
    Deactivated,
    /// It was purged.
    Purged,
}

impl CredentialEventKind {
    /// Every kind.
    pub const ALL: [CredentialEventKind; 5] = [
        CredentialEventKind::Verified,
        CredentialEventKind::VerificationFailed,
        CredentialEventKind::ReconnectNeeded,
        CredentialEventKind::Deactivated,
        CredentialEventKind::Purged,
    ];

    /// The event's `type`, as stored and sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialEventKind::Verified => "credential.verified",
            CredentialEventKind::VerificationFailed => "credential.verification_failed",
            CredentialEventKind::ReconnectNeeded => "credential.reconnect_needed",
            CredentialEventKind::Deactivated => "credential.deactivated",
            CredentialEventKind::Purged => "credential.purged",
        }
    }
}

impl FromStr for CredentialEventKind {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Self, InvalidValue> {
        CredentialEventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or(InvalidValue {
                field: "CredentialEventKind",
                reason: "not a credential event type",
            })
    }
}

/// A credential event from the outbox, claimed for delivery. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialEvent {
    /// Its id (stable across delivery attempts).
    pub id: CredentialEventId,
    /// The credential's organization.
    pub org_id: OrgId,
    /// The credential.
    pub credential_id: CredentialId,
    /// Its provider.
    pub credential_type: CredentialType,
    /// Its display name at the time.
    pub display_name: String,
    /// What happened.
    pub kind: CredentialEventKind,
    /// Its verification status after the change.
    pub verification_status: VerificationStatus,
    /// The provider's reason for a refusal (never a secret).
    pub verification_error: Option<String>,
    /// When the change was committed.
    pub occurred_at: DateTime<Utc>,
    /// Delivery attempts so far, this one included.
    pub attempts: u32,
}

/// How a delivery attempt of a claimed event ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventDelivery {
    /// The receiver accepted it: the event leaves the outbox.
    Delivered,
    /// It was not accepted: try again after `after`, keeping `error` (no secret) for operators.
    Retry {
        /// How long until the next attempt.
        after: std::time::Duration,
        /// Why this attempt failed.
        error: String,
    },
}

/// A duration as whole seconds for the database (rounded up, at most `i32::MAX`).
pub(crate) fn whole_seconds(duration: std::time::Duration) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

/// A count or limit as an `i32` for the database (at most `i32::MAX`).
#[cfg(feature = "postgres")]
pub(crate) fn limit_for_db(limit: u32) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}
