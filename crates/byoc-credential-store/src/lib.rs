//! Credential storage for byoc: the [`CredentialRepository`] trait over organizations, members, credentials
//! (stored only as encryption envelopes), the hash-chained audit log, key check values, OAuth states, SMS
//! messages and usage counters, with a Postgres backend (row-level security as `byoc_app`, tenant context per
//! transaction) and an embedded SQLite backend (org filter in every query, roles checked in code).
//!
//! This layer stores and returns bytes and rows; encryption, caching and audit batching belong to the layer
//! above. See `docs/schema.md` for the tables, policies and operator paths.

mod access;
mod error;
mod model;
pub mod postgres;
mod repository;
mod rows;
pub mod service;
pub mod sqlite;
mod tenant;

#[cfg(feature = "test-support")]
pub mod test_support;

use std::sync::Arc;

pub use error::{ConflictKind, StoreError, StoreResult};
pub use model::{
    AuditAction, AuditChainStatus, AuditEvent, AuditEventId, AuditPage, CredentialMetadata,
    CredentialRecord, CredentialType, DeliveryStatus, DisplayName, EncryptedEnvelope, EnvelopeSwap,
    HotLeadThreshold, InvalidValue, KeyCheckValue, KeyVersionCount, MaskedPhone, Member,
    NewAuditEvent, NewCredential, NewOAuthState, NewSmsMessage, OAuthState, OperatorEnvelope,
    Organization, OrganizationName, ProviderErrorCode, ProviderMessageSid, PublicHint, Purpose,
    Role, SmsMessage, SmsStatusUpdate, UsageCounter, VerificationOutcome, VerificationStatus,
    DELIVERED,
};
pub use repository::CredentialRepository;
#[cfg(feature = "mock")]
pub use repository::MockCredentialRepository;
pub use tenant::{
    Actor, CredentialId, IdentityError, OAuthStateId, OrgId, ServiceName, Tenant, UserId,
};

pub use postgres::PostgresStore;
pub use service::{
    CacheStats, CredentialService, CredentialServiceError, DecryptedCredential, ServiceConfig,
    UsableCredential,
};
pub use sqlite::SqliteStore;

/// Which backend a `DATABASE_URL` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite://PATH` or `sqlite:PATH`.
    Sqlite,
}

impl Backend {
    /// The backend a URL's scheme selects, or an error naming `DATABASE_URL`.
    pub fn of_url(database_url: &str) -> Result<Backend, InvalidValue> {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if database_url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(InvalidValue {
                field: "DATABASE_URL",
                reason: "must start with postgres://, postgresql:// or sqlite:",
            })
        }
    }
}

/// Applies the migrations of the backend the URL selects (`byoc migrate`; Postgres needs the owner's URL).
/// Idempotent.
pub async fn migrate(database_url: &str) -> StoreResult<()> {
    match Backend::of_url(database_url)? {
        Backend::Postgres => postgres::migrate(database_url).await,
        Backend::Sqlite => sqlite::migrate(database_url).await,
    }
}

/// Connects to the store the URL selects. SQLite is migrated on connect (it is embedded and single-process);
/// Postgres must have been migrated with `byoc migrate`.
pub async fn connect(database_url: &str) -> StoreResult<Arc<dyn CredentialRepository>> {
    match Backend::of_url(database_url)? {
        Backend::Postgres => Ok(Arc::new(PostgresStore::connect(database_url).await?)),
        Backend::Sqlite => Ok(Arc::new(SqliteStore::connect(database_url).await?)),
    }
}
