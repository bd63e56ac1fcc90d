//! [`Outbound`]: what the endpoints that *use* an organization's credentials share — the provider clients,
//! the per-organization limits and counters ([`crate::usecases::usage`]), the public URL that Twilio and Google call
//! back, the platform's Google OAuth client and the OAuth state key.
//!
//! Every credential these endpoints use is read through the credential service
//! ([`byoc_credential_store::CredentialService::get_payload`]) with its purpose, which audits the read.

use std::sync::Arc;

use byoc_credential_store::Purpose;
use byoc_providers::ProviderClients;
use secrecy::SecretString;
use url::Url;

use crate::plumbing::error::ApiError;
use crate::usecases::booking::BookingLocks;
use crate::usecases::oauth_state::OAuthStateKey;
use crate::usecases::usage::Usage;
use crate::usecases::write_behind::WriteBehind;

/// The shared parts of the SMS, leads, availability, Google connect and Twilio webhook endpoints.
pub struct Outbound {
    /// The provider clients (Twilio sender, Google OAuth and Calendar).
    pub providers: ProviderClients,
    /// Per-organization rate limits and daily counters.
    pub usage: Usage,
    /// The records of provider calls (counters, sent SMS), written now or queued through an outage.
    pub writes: Arc<WriteBehind>,
    /// `BYOC_PUBLIC_URL` (else `http://` + the bound address).
    pub public_url: Url,
    /// The platform's Google OAuth client, when configured.
    pub google_oauth_client: Option<GoogleOAuthClient>,
    /// Signs and checks OAuth states.
    pub oauth_state_key: OAuthStateKey,
    /// One booking at a time per organization on this replica.
    pub booking_locks: BookingLocks,
}

/// The platform's Google OAuth app (`GOOGLE_OAUTH_CLIENT_ID`, `GOOGLE_OAUTH_CLIENT_SECRET`).
#[derive(Clone)]
pub struct GoogleOAuthClient {
    /// The OAuth client id (not secret).
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: SecretString,
}

/// The purpose of a credential read, as audited (`sms:test`, `sms:hot_lead`, `calendar:availability`, …).
pub fn purpose(text: &'static str) -> Result<Purpose, ApiError> {
    Purpose::parse(text).map_err(|error| ApiError::invalid_field(error.field, error.reason))
}
