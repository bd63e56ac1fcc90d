//! The credential service: the facade a Rust service calls when it wants "organization X's Twilio
//! credential", and nothing lower.
//!
//! [`CredentialService`] seals payloads with the keyring (bound to org, type and id) and stores them, lists
//! metadata, hands out decrypted credentials that are active and verified (typed
//! [`CredentialServiceError::NotConfigured`] otherwise), decrypts a credential for its provider's verifier and
//! records the outcome (asking the provider is the caller's: this crate does no provider I/O), deactivates and
//! purges, imports the legacy env credentials, and audits every access and change.
//!
//! One file per concern: [`credential`](DecryptedCredential) what it hands out, `managing` (store, edit,
//! retire), `using` (reads for a purpose, the legacy fallback, a rotated Google token), `verifying`,
//! `audit_log` (reads and the queued writes of `audit`), `cache` (the outage-aware cache), `sealing`
//! (envelopes), `following` (other replicas' changes), [`keys`] (start-up check, rotation, `keys check`).
//!
//! - **Cache.** Decrypted credentials are cached per (organization, type) for the configured TTL
//!   (`BYOC_CACHE_TTL_SECS`, default 60 s, 0 turns it off). Concurrent misses for one key share one database
//!   read and one decryption (moka's `try_get_with`). Every change made through this service invalidates its
//!   key at once; [`CredentialService::follow_changes`] does the same for changes made by other replicas
//!   (Postgres `LISTEN`). A load that overlaps an invalidation is not cached.
//! - **Database outage.** While that listener is disconnected the cache is not trusted: every lookup reads
//!   the database, so no replica serves a value another replica changed. Only when the database cannot
//!   answer (unreachable, or no answer within [`OUTAGE_READ_WAIT`]; for [`OUTAGE_MEMORY`] after such a
//!   read, without asking again) is the cached value served, until its TTL. So hot-lead SMS and
//!   availability keep working through a short outage with the credentials, member roles
//!   ([`CredentialService::member_role`]) and organization settings ([`CredentialService::organization`])
//!   last read. The listener drops the credential cache when it listens again, since notifications may
//!   have been missed (roles and organizations are refreshed by every read that reaches the database).
//! - **Audit.** Events are queued without waiting and written in batches per organization by a background
//!   task, so a cached read costs no database round trip; changes wait for their event to be written
//!   (a flush). [`CredentialService::shutdown`] writes everything left.
//! - **Keys.** [`check_keyring`] at start-up, [`rotate`] and [`check_all`] for the operator (see [`keys`]).
//! - **Fallback.** [`LegacyTwilioFallback`] for organizations listed in `BYOC_LEGACY_FALLBACK_ORGS`.

mod actions;
mod audit;
mod audit_log;
mod cache;
mod credential;
mod error;
mod following;
pub mod keys;
mod legacy;
mod managing;
mod sealing;
mod using;
mod verifying;

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use byoc_credential_types::{CredentialJson, CredentialPayload, GoogleCalendarCredential};
use byoc_crypto::{EnvelopeContext, Keyring, Plaintext};
use moka::future::Cache;
use tokio::task::JoinHandle;

use crate::access::{check, Need};
use crate::model::{
    AuditAction, AuditChainReport, AuditEvent, AuditFilter, AuditPage, CredentialMetadata,
    CredentialRecord, CredentialType, DisplayName, EncryptedEnvelope, Imported, NewAuditEvent,
    NewCredential, Organization, ProviderAccountId, PublicHint, Purpose, Role, StoreChange,
    VerificationOutcome, VerificationStatus,
};
use crate::repository::{ChangeListener, CredentialRepository};
use crate::tenant::{Actor, CredentialId, OrgId, ServiceName, Tenant, UserId};

pub use audit::AuditError;
pub use cache::CacheStats;
pub use credential::{CredentialSelector, DecryptedCredential, UsableCredential};
pub use error::{CredentialServiceError, ServiceResult};
pub use keys::{
    check_all, check_keyring, rotate, stored_key_version, CheckReport, EnvelopeFailure,
    KeyringMismatch, KeyringReport, RotationOptions, RotationProgress, RotationReport,
};
pub use legacy::LegacyTwilioFallback;
pub use sealing::envelope_context;

use actions::Actions;
use cache::{is_usable, new_cache, CacheKey};
use credential::{Secret, StoredSecret};
use legacy::Fallback;

/// The cache TTL when `BYOC_CACHE_TTL_SECS` is not set.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Decrypted credentials kept at most, by default.
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;
/// While the change listener is disconnected, how long a lookup waits for the database before it answers
/// from the cache (when the cache holds the answer; otherwise it waits for the database).
pub const OUTAGE_READ_WAIT: Duration = Duration::from_millis(500);

/// While the change listener is disconnected, how long after a read found the database unavailable further
/// reads go straight to the cache without waiting [`OUTAGE_READ_WAIT`] again. Short, so that a database that
/// is back is read again within a second.
pub const OUTAGE_MEMORY: Duration = Duration::from_secs(1);

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// How long a decrypted credential is served from memory; zero turns the cache off.
    pub cache_ttl: Duration,
    /// Most decrypted credentials kept in memory.
    pub cache_capacity: u64,
    /// The service principal this service acts as when it reacts on its own (it marks a credential failed
    /// when the provider refuses a use: [`CredentialService::record_refused_use`]).
    pub service_name: ServiceName,
    /// The transition fallback to the legacy Twilio credentials, if configured.
    pub legacy_fallback: Option<LegacyTwilioFallback>,
}

impl ServiceConfig {
    /// The defaults (60 s cache, no fallback) for a service principal.
    pub fn new(service_name: ServiceName) -> ServiceConfig {
        ServiceConfig {
            cache_ttl: DEFAULT_CACHE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            service_name,
            legacy_fallback: None,
        }
    }
}

struct Inner {
    repository: Arc<dyn CredentialRepository>,
    keyring: Arc<Keyring>,
    cache: Option<Cache<CacheKey, Arc<StoredSecret>>>,
    /// Bumped on every invalidation; a load that sees it change is not cached.
    generation: AtomicU64,
    /// False while the change listener is reconnecting: lookups read the database then, and use the cache
    /// only when the database cannot answer.
    cache_trusted: AtomicBool,
    /// True while a change listener is live ([`CredentialService::follow_changes`]): member roles and
    /// organizations are then served from their caches, which its notifications keep current.
    following: AtomicBool,
    /// Member roles last read: served while changes are followed, and through a database outage.
    roles: Option<Cache<(OrgId, UserId), Role>>,
    /// Organizations last read: served while changes are followed, and through a database outage.
    organizations: Option<Cache<OrgId, Organization>>,
    /// Credential lookups answered from the cache.
    cache_hits: AtomicU64,
    /// Credential lookups that read the store (cache miss, cache off or not trusted).
    cache_misses: AtomicU64,
    /// Answers served from a cache because the database could not answer.
    outage_answers: AtomicU64,
    /// When a read last found the database unavailable, in milliseconds since `started` (0: never).
    unreachable_at_ms: AtomicU64,
    /// When the service started (the origin of `unreachable_at_ms`).
    started: std::time::Instant,
    audit: audit::AuditBatcher,
    fallback: Option<Fallback>,
    service_name: ServiceName,
    actions: Actions,
    followers: Mutex<Vec<JoinHandle<()>>>,
}

/// The credential service. Cheap to clone; build one per process (inside a tokio runtime) and share it.
#[derive(Clone)]
pub struct CredentialService {
    inner: Arc<Inner>,
}

impl fmt::Debug for CredentialService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialService")
            .field("keyring", &self.inner.keyring)
            .field("cache", &self.inner.cache.is_some())
            .field("pending_audit_events", &self.pending_audit_events())
            .finish_non_exhaustive()
    }
}

impl CredentialService {
    /// Runs the start-up key check ([`check_keyring`]) and, when it passes, starts the service. A mismatch
    /// refuses before the service writes anything.
    pub async fn start(
        repository: Arc<dyn CredentialRepository>,
        keyring: Arc<Keyring>,
        config: ServiceConfig,
    ) -> Result<(CredentialService, KeyringReport), KeyringMismatch> {
        let report = check_keyring(repository.as_ref(), &keyring).await?;
        Ok((CredentialService::new(repository, keyring, config), report))
    }

    /// Starts the service without the key check (for callers that ran [`check_keyring`] themselves, and
    /// tests). Spawns the audit writer on the current tokio runtime.
    pub fn new(
        repository: Arc<dyn CredentialRepository>,
        keyring: Arc<Keyring>,
        config: ServiceConfig,
    ) -> CredentialService {
        let cache = new_cache(&config);
        let roles = new_cache(&config);
        let organizations = new_cache(&config);
        let audit = audit::AuditBatcher::start(Arc::clone(&repository));
        CredentialService {
            inner: Arc::new(Inner {
                repository,
                keyring,
                cache,
                generation: AtomicU64::new(0),
                cache_trusted: AtomicBool::new(true),
                following: AtomicBool::new(false),
                roles,
                organizations,
                cache_hits: AtomicU64::new(0),
                cache_misses: AtomicU64::new(0),
                outage_answers: AtomicU64::new(0),
                unreachable_at_ms: AtomicU64::new(0),
                started: std::time::Instant::now(),
                audit,
                fallback: Fallback::new(config.legacy_fallback),
                service_name: config.service_name,
                actions: Actions::new(),
                followers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The repository underneath (for what the facade does not cover: organizations, members, OAuth
    /// states, SMS messages, usage counters).
    pub fn repository(&self) -> &Arc<dyn CredentialRepository> {
        &self.inner.repository
    }

    /// The keyring.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.inner.keyring
    }
}

#[cfg(all(test, feature = "mock"))]
mod tests;
