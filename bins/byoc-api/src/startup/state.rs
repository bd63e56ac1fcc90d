//! The state every handler receives: the store, the credential service, the keyring, the authenticator, the
//! provider clients and limits.

use std::sync::Arc;

use byoc_credential_store::{CredentialRepository, CredentialService};
use byoc_crypto::Keyring;
use byoc_providers::VerifierRegistry;
use byoc_runtime::audit_digest::AuditPublicKey;

use actix_web::web;

use crate::plumbing::caller::Authenticator;
use crate::plumbing::error::{ApiError, CauseChain};
use crate::plumbing::metrics::PerOrganizationAccess;
use crate::usecases::outbound::Outbound;

/// Shared, cheaply clonable application state (held in `web::Data`).
pub struct AppState {
    /// The credential store (membership and roles, readiness).
    pub repository: Arc<dyn CredentialRepository>,
    /// The loaded keyring.
    pub keyring: Arc<Keyring>,
    /// Names the caller of a request (also registered on its own, for the [`Caller`](crate::plumbing::caller::Caller) extractor).
    pub authenticator: web::Data<Authenticator>,
    /// The credential service: store, list, verify, deactivate, purge, read, audit (one per process).
    pub credential_service: CredentialService,
    /// The providers' verifiers.
    pub verifiers: VerifierRegistry,
    /// Provider clients, limits and callback settings of the endpoints that use credentials.
    pub outbound: Outbound,
    /// Whether the settings page's cookies carry `Secure` (`BYOC_PUBLIC_URL` is https).
    pub secure_cookies: bool,
    /// Who may read the per-organization series of `/metrics` (`BYOC_METRICS_TOKEN`).
    pub metrics_access: PerOrganizationAccess,
    /// Whether provider calls are answered by dev mode's sandbox (the page says so).
    pub sandbox: bool,
    /// The public key of the audit digests' signing key (`GET /api/audit/signing-key`); `None` when digests
    /// are off.
    pub audit_public_key: Option<AuditPublicKey>,
}

impl AppState {
    /// Readiness: the database answers a ping (the keyring is loaded whenever the state exists).
    pub async fn check_ready(&self) -> Result<(), ApiError> {
        self.repository.ping().await.map_err(|error| {
            tracing::warn!(error = %CauseChain(&error), "readiness check: database unreachable");
            ApiError::database_unavailable()
        })?;
        tracing::debug!(active_key_version = %self.keyring.active_version(), "readiness check passed");
        Ok(())
    }
}
