//! What the store keeps of signed audit digests: which organizations are due one, the digests the service
//! recorded (its claim that one replica issues each), which are still to be written to the digest directory and
//! which to deliver as webhooks. The signing itself happens in the service; the store holds no key.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::model::AuditChainHead;
use crate::tenant::OrgId;

/// An organization whose audit chain moved since its last digest, and what its next digest signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditDigestDue {
    /// The organization.
    pub org_id: OrgId,
    /// The number the next digest takes in the organization's digest chain (from 1).
    pub digest_seq: i64,
    /// The chain head to sign.
    pub head: AuditChainHead,
    /// The SHA-256 of the previous digest's payload; `None` for the organization's first digest.
    pub previous_payload_hash: Option<[u8; 32]>,
    /// The time to put in the payload (the database's clock, whole milliseconds).
    pub issued_at: DateTime<Utc>,
}

/// A signed digest to record (and so to claim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditDigest {
    /// What was due: organization, number, head, previous payload hash and time.
    pub due: AuditDigestDue,
    /// The payload's JSON text: exactly the bytes signed.
    pub payload: String,
    /// The Ed25519 signature of `payload`.
    pub signature: [u8; 64],
}

impl NewAuditDigest {
    /// The SHA-256 of the payload: what the next digest names as `previousDigestHash`.
    pub fn payload_hash(&self) -> [u8; 32] {
        payload_hash(&self.payload)
    }
}

/// The SHA-256 of a digest's payload text, by which the next digest names it.
pub fn payload_hash(payload: &str) -> [u8; 32] {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, payload.as_bytes()).as_ref());
    hash
}

/// A recorded digest, as filed and delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAuditDigest {
    /// The organization.
    pub org_id: OrgId,
    /// Its number in the organization's digest chain.
    pub digest_seq: i64,
    /// The chain position it signs.
    pub head_seq: i64,
    /// The payload's JSON text.
    pub payload: String,
    /// The Ed25519 signature of `payload`.
    pub signature: [u8; 64],
}

/// A digest whose webhook delivery this caller claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditDigestDelivery {
    /// The delivery's id (the `webhook-id`).
    pub id: Uuid,
    /// The digest.
    pub digest: StoredAuditDigest,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// How many times it has been claimed for delivery, this attempt included.
    pub attempts: u32,
}
