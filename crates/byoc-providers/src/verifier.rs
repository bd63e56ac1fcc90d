//! Verification: the [`Verifier`] trait (one implementation per provider kind) and the
//! [`VerifierRegistry`] that picks the implementation by kind. A new provider is one new module with a
//! `Verifier` implementation and one `register` call.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use byoc_credential_types::InvalidField;
use byoc_credential_types::{CredentialJson, StripeMode};

use crate::error::ProviderError;
use byoc_credential_types::CredentialType;

/// What a provider told us about a credential it accepted; no secret in here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum VerificationDetails {
    /// A Twilio account that authenticates and owns an SMS-capable sending number.
    Twilio {
        /// The sending number that was checked.
        phone_number: String,
    },
    /// A Google refresh token that works and can list calendars.
    GoogleCalendar {
        /// The calendar byoc reads.
        calendar_id: String,
        /// That calendar's IANA time zone, when Google reported it.
        time_zone: Option<String>,
        /// How many calendars the account lists.
        calendars: usize,
    },
    /// A Stripe key that can read the balance.
    Stripe {
        /// Whether Stripe reported live mode.
        livemode: bool,
        /// Test or live, from the key prefix.
        key_mode: StripeMode,
    },
    /// A HubSpot token that can read the account details.
    HubSpot {
        /// The HubSpot account (portal) id.
        portal_id: u64,
        /// The account type HubSpot reported (`STANDARD`, `DEVELOPER_TEST`, ...).
        account_type: Option<String>,
    },
}

impl fmt::Display for VerificationDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerificationDetails::Twilio { phone_number } => {
                write!(f, "the Twilio account can send SMS from {phone_number}")
            }
            VerificationDetails::GoogleCalendar {
                calendar_id,
                time_zone,
                calendars,
            } => write!(
                f,
                "Google Calendar {calendar_id} readable ({calendars} calendars, time zone {})",
                time_zone.as_deref().unwrap_or("unknown")
            ),
            VerificationDetails::Stripe { livemode, .. } => write!(
                f,
                "Stripe key accepted ({} mode)",
                if *livemode { "live" } else { "test" }
            ),
            VerificationDetails::HubSpot { portal_id, .. } => {
                write!(f, "HubSpot account {portal_id} accepted the token")
            }
        }
    }
}

/// A credential its provider accepted.
#[derive(Debug)]
pub struct Acceptance {
    /// What the provider reported.
    pub details: VerificationDetails,
    /// When verifying changed the credential (Google rotated the refresh token), the new payload to
    /// encrypt and store in place of the old one. `None` means keep the stored payload.
    pub updated_payload: Option<CredentialJson>,
}

/// Checks a credential against its provider.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Verifier: Send + Sync {
    /// The kind of credential this verifier understands.
    fn kind(&self) -> CredentialType;

    /// Verifies the credential whose decrypted JSON payload is `payload`. `Err` carries either an invalid
    /// payload (`InvalidInput`), the provider's refusal with its code and message, or a transient failure;
    /// see [`ProviderError::is_credential_failure`].
    async fn verify(&self, payload: &[u8]) -> Result<Acceptance, ProviderError>;
}

/// The verifiers by kind.
#[derive(Clone, Default)]
pub struct VerifierRegistry {
    verifiers: HashMap<CredentialType, Arc<dyn Verifier>>,
}

impl fmt::Debug for VerifierRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self.verifiers.keys().collect();
        kinds.sort();
        f.debug_struct("VerifierRegistry")
            .field("kinds", &kinds)
            .finish()
    }
}

impl VerifierRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the verifier for its kind.
    pub fn register(&mut self, verifier: Arc<dyn Verifier>) -> &mut Self {
        self.verifiers.insert(verifier.kind(), verifier);
        self
    }

    /// The verifier for `kind`, when one is registered.
    pub fn get(&self, kind: CredentialType) -> Option<&Arc<dyn Verifier>> {
        self.verifiers.get(&kind)
    }

    /// Verifies a payload of `kind` with the registered verifier.
    pub async fn verify(
        &self,
        kind: CredentialType,
        payload: &[u8],
    ) -> Result<Acceptance, ProviderError> {
        match self.get(kind) {
            Some(verifier) => verifier.verify(payload).await,
            None => Err(ProviderError::InvalidInput(InvalidField::new(
                "credential_type",
                format!("no verifier is registered for {}", kind.as_str()),
            ))),
        }
    }
}
