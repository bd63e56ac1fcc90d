//! The transition fallback: organizations listed in `BYOC_LEGACY_FALLBACK_ORGS` that have no usable Twilio
//! credential of their own keep sending with the legacy shared `TWILIO_*` credentials, each use logged,
//! audited (`legacy_fallback_used`) and counted.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use byoc_credential_types::{CredentialJson, CredentialPayload, TwilioCredential};

use crate::tenant::OrgId;

/// The legacy shared Twilio credentials and the organizations allowed to fall back to them (the binary
/// reads `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_PHONE_NUMBER` and `BYOC_LEGACY_FALLBACK_ORGS`).
#[derive(Clone)]
pub struct LegacyTwilioFallback {
    /// The legacy credentials.
    pub credential: TwilioCredential,
    /// The organizations that may use them; any other organization gets "not configured".
    pub orgs: HashSet<OrgId>,
}

impl fmt::Debug for LegacyTwilioFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyTwilioFallback")
            .field("orgs", &self.orgs.len())
            .finish_non_exhaustive()
    }
}

/// The fallback as the service holds it: the payload already serialized once, its account SID, and the use
/// counter.
pub(crate) struct Fallback {
    json: std::sync::Arc<CredentialJson>,
    account_sid: String,
    orgs: HashSet<OrgId>,
    uses: AtomicU64,
}

impl Fallback {
    pub(crate) fn new(config: Option<LegacyTwilioFallback>) -> Option<Fallback> {
        let config = config?;
        if config.orgs.is_empty() {
            return None;
        }
        Some(Fallback {
            json: std::sync::Arc::new(config.credential.to_json_bytes()),
            account_sid: config.credential.account_sid.as_str().to_owned(),
            orgs: config.orgs,
            uses: AtomicU64::new(0),
        })
    }

    /// The legacy payload when `org_id` may use it (a use is counted by [`Fallback::count_use`]).
    pub(crate) fn payload_for(&self, org_id: OrgId) -> Option<std::sync::Arc<CredentialJson>> {
        self.orgs
            .contains(&org_id)
            .then(|| std::sync::Arc::clone(&self.json))
    }

    /// The legacy account's SID when `org_id` may use it (not a secret).
    pub(crate) fn account_sid_for(&self, org_id: OrgId) -> Option<&str> {
        self.orgs
            .contains(&org_id)
            .then_some(self.account_sid.as_str())
    }

    /// Counts one use of the legacy credentials.
    pub(crate) fn count_use(&self) {
        self.uses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn uses(&self) -> u64 {
        self.uses.load(Ordering::Relaxed)
    }
}
