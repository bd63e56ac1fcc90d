//! The names of the audit actions the service writes.

use super::*;

/// The audit actions the service writes.
pub(super) struct Actions {
    pub(super) created: AuditAction,
    pub(super) read: AuditAction,
    pub(super) verified: AuditAction,
    pub(super) verification_failed: AuditAction,
    pub(super) verification_reset: AuditAction,
    pub(super) deactivated: AuditAction,
    pub(super) purged: AuditAction,
    pub(super) updated: AuditAction,
    pub(super) legacy_fallback_used: AuditAction,
}

impl Actions {
    pub(super) fn new() -> Actions {
        let action =
            |name| AuditAction::parse(name).expect("the service's audit action names are valid");
        Actions {
            created: action("created"),
            read: action("read"),
            verified: action("verified"),
            verification_failed: action("verification_failed"),
            verification_reset: action("verification_reset"),
            deactivated: action("deactivated"),
            purged: action("purged"),
            updated: action("updated"),
            legacy_fallback_used: action("legacy_fallback_used"),
        }
    }
}
