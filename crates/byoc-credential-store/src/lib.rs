//! Credential storage for byoc: the [`CredentialRepository`] trait over organizations, members, credentials
//! (stored only as encryption envelopes), the hash-chained audit log, key check values, OAuth states, SMS
//! messages and usage counters, with a Postgres backend (row-level security as `byoc_app`, tenant context per
//! transaction) and an embedded SQLite backend (org filter in every query, roles checked in code).
//!
//! This layer stores and returns bytes and rows; encryption, caching and audit batching belong to the layer
//! above. See `docs/schema.md` for the tables, policies and operator paths.
//!
//! Other Rust services call the [`CredentialService`] facade (module [`service`]), never the repository
//! directly: it encrypts, caches, audits and hands out only active, verified credentials.
//!
//! # Example: another service fetching an organization's Twilio credential
//!
//! This runs as a doc test (`cargo test -p byoc-credential-store --doc`) on an embedded SQLite store; the
//! longer version with printed output is `cargo run -p byoc-credential-store --example fetch_credential`.
//!
//! ```
//! use std::sync::Arc;
//!
//! use byoc_credential_store::{
//!     CredentialService, CredentialServiceError, DisplayName, HotLeadThreshold, OrganizationName,
//!     Purpose, Role, ServiceConfig, ServiceName, Tenant, UserId, VerificationStatus,
//! };
//! use byoc_crypto::{KeyVersion, Keyring, MasterKey};
//! use byoc_credential_types::{CredentialType, E164Phone, TwilioAccountSid, TwilioCredential};
//! use secrecy::{ExposeSecret, SecretString};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let folder = std::env::temp_dir().join(format!("byoc-doc-{}", uuid::Uuid::new_v4()));
//! // A deployment builds the keyring from BYOC_MASTER_KEYS (`Keyring::from_config`) and the store from
//! // DATABASE_URL; `connect` creates and migrates a missing SQLite file.
//! let keyring = Arc::new(Keyring::new(
//!     vec![(KeyVersion::FIRST, MasterKey::generate())],
//!     KeyVersion::FIRST,
//! )?);
//! let url = format!("sqlite://{}", folder.join("byoc.db").display());
//! let repository = byoc_credential_store::connect(&url).await?;
//!
//! // Operator set-up (what `byoc org create` and `byoc member add` do).
//! let org = repository
//!     .operator_create_organization(&OrganizationName::parse("Clinic")?, HotLeadThreshold::DEFAULT)
//!     .await?;
//! let owner_id = UserId::new_random();
//! repository.operator_add_member(org.id, owner_id, Role::Owner).await?;
//!
//! // The facade; `start` refuses a keyring that does not fit the data already stored.
//! let (service, _report) = CredentialService::start(
//!     Arc::clone(&repository),
//!     keyring,
//!     ServiceConfig::new(ServiceName::parse("lead-notifier")?),
//! )
//! .await?;
//!
//! // The clinic's owner stores its Twilio account (encrypted, `pending`) and it gets verified.
//! let owner = Tenant::user(org.id, owner_id);
//! let twilio = TwilioCredential {
//!     account_sid: TwilioAccountSid::parse("accountSid", "AC0123456789abcdef0123456789abcdef")?,
//!     auth_token: SecretString::from("not-a-real-token".to_owned()),
//!     phone_number: E164Phone::parse("phoneNumber", "+14155550123")?,
//! };
//! let stored = service.store(&owner, &twilio, DisplayName::parse("Front desk")?).await?;
//! let twilio_type = CredentialType::Twilio;
//! let caller = Tenant::service(org.id, ServiceName::parse("lead-notifier")?);
//! let purpose = Purpose::parse("sms:hot_lead")?;
//!
//! // Not verified yet: a typed "not configured" error that names the provider to set up.
//! let refused = service.get_credential(&caller, twilio_type, &purpose).await;
//! assert!(matches!(refused, Err(CredentialServiceError::NotConfigured { .. })));
//!
//! service
//!     .record_verification(&owner, stored.id, VerificationStatus::Verified, None)
//!     .await?;
//!
//! // The calling service fetches it for a purpose (audited); the secret stays a `SecretString`.
//! let fetched: TwilioCredential =
//!     service.get_credential(&caller, twilio_type, &purpose).await?.parse()?;
//! assert_eq!(fetched.account_sid.as_str(), "AC0123456789abcdef0123456789abcdef");
//! assert_eq!(fetched.auth_token.expose_secret(), "not-a-real-token");
//! assert!(!format!("{:?}", fetched.auth_token).contains("not-a-real-token"));
//!
//! // Graceful shutdown writes the audit events still queued.
//! service.shutdown().await?;
//! # std::fs::remove_dir_all(&folder)?;
//! # Ok(())
//! # }
//! ```

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
compile_error!("byoc-credential-store needs a backend: enable the `postgres` or the `sqlite` feature (or both)");

mod access;
mod digests;
mod error;
mod health;
mod model;
#[cfg(feature = "postgres")]
pub mod postgres;
mod repository;
mod rows;
pub mod service;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod tenant;

#[cfg(feature = "test-support")]
pub mod test_support;

use std::sync::Arc;

pub use digests::{
    payload_hash, AuditDigestDelivery, AuditDigestDue, NewAuditDigest, StoredAuditDigest,
};
pub use error::{ConflictKind, StoreError, StoreResult};
pub use health::{
    CredentialEvent, CredentialEventId, CredentialEventKind, CredentialStatusCount,
    DueReverification, EventDelivery,
};
pub use model::{
    AuditAction, AuditChainHead, AuditChainReport, AuditChainStatus, AuditEvent, AuditEventId,
    AuditFilter, AuditPage, CredentialMetadata, CredentialRecord, CredentialType, DashboardSession,
    DeliveryStatus, DisplayName, EncryptedEnvelope, EnvelopeCursor, EnvelopeSwap, HotLeadThreshold,
    Imported, InvalidValue, KeyVersionCount, LoginLinkHash, LoginLinkRedemption, MaskedPhone,
    Member, MemberProfile, NewAuditEvent, NewCredential, NewDashboardSession, NewLoginLink,
    NewOAuthState, NewSmsMessage, OAuthState, OperatorEnvelope, Organization,
    OrganizationAuditChain, OrganizationName, ProviderAccountId, ProviderErrorCode,
    ProviderMessageSid, PublicHint, Purpose, Role, SessionIdHash, SmsMessage, SmsStatusUpdate,
    StoredKeyCheckValue, UsageCounter, VerificationOutcome, VerificationStatus, DELIVERED,
    LOGIN_LINK_MAX_LIFETIME,
};
pub use model::{CredentialChange, StoreChange};
pub use model::{NewMasterKey, StoredMasterKey};
#[cfg(feature = "mock")]
pub use repository::MockCredentialRepository;
pub use repository::{ChangeListener, CredentialRepository};
pub use tenant::{
    Actor, CredentialId, IdentityError, OAuthStateId, OrgId, ServiceName, Tenant, UserId,
};

#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
pub use service::{
    CacheStats, CredentialService, CredentialServiceError, DecryptedCredential, ServiceConfig,
    UsableCredential,
};
#[cfg(feature = "sqlite")]
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

    /// The error for a URL of a backend this build leaves out (its cargo feature is off).
    #[cfg_attr(all(feature = "postgres", feature = "sqlite"), allow(dead_code))]
    fn not_built(self) -> StoreError {
        StoreError::from(InvalidValue {
            field: "DATABASE_URL",
            reason: match self {
                Backend::Postgres => "this build has no Postgres store (cargo feature `postgres`)",
                Backend::Sqlite => "this build has no SQLite store (cargo feature `sqlite`)",
            },
        })
    }
}

/// Applies the migrations of the backend the URL selects (`byoc migrate`; Postgres needs the owner's URL).
/// Idempotent.
pub async fn migrate(database_url: &str) -> StoreResult<()> {
    match Backend::of_url(database_url)? {
        #[cfg(feature = "postgres")]
        Backend::Postgres => postgres::migrate(database_url).await,
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => sqlite::migrate(database_url).await,
        #[allow(unreachable_patterns)]
        backend => Err(backend.not_built()),
    }
}

/// Connects to the store the URL selects. SQLite is migrated on connect (it is embedded and single-process);
/// Postgres must have been migrated with `byoc migrate`.
pub async fn connect(database_url: &str) -> StoreResult<Arc<dyn CredentialRepository>> {
    match Backend::of_url(database_url)? {
        #[cfg(feature = "postgres")]
        Backend::Postgres => Ok(Arc::new(PostgresStore::connect(database_url).await?)),
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => Ok(Arc::new(SqliteStore::connect(database_url).await?)),
        #[allow(unreachable_patterns)]
        backend => Err(backend.not_built()),
    }
}
