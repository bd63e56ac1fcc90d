//! All provider clients built from one configuration, sharing one HTTP client, and the verifier registry
//! over them.

use std::sync::Arc;

use crate::config::ProviderConfig;
use crate::google::GoogleCalendarClient;
use crate::http::{build_http_client, HttpClientError};
use crate::hubspot::HubSpotClient;
use crate::stripe::StripeClient;
use crate::twilio::TwilioClient;
use crate::verifier::VerifierRegistry;

/// Every provider client, ready to share across requests.
#[derive(Debug, Clone)]
pub struct ProviderClients {
    /// Twilio: verifier and SMS sender.
    pub twilio: Arc<TwilioClient>,
    /// Google Calendar: OAuth, verifier and availability.
    pub google: Arc<GoogleCalendarClient>,
    /// Stripe verifier.
    pub stripe: Arc<StripeClient>,
    /// HubSpot verifier.
    pub hubspot: Arc<HubSpotClient>,
}

impl ProviderClients {
    /// Builds every client from `config` (one HTTP client with the configured timeouts).
    pub fn new(config: &ProviderConfig) -> Result<Self, HttpClientError> {
        let http = build_http_client(config.timeouts)?;
        Ok(ProviderClients {
            twilio: Arc::new(TwilioClient::new(config, http.clone())),
            google: Arc::new(GoogleCalendarClient::new(config, http.clone())),
            stripe: Arc::new(StripeClient::new(config, http.clone())),
            hubspot: Arc::new(HubSpotClient::new(config, http)),
        })
    }

    /// A registry with the verifier of every provider kind.
    pub fn verifier_registry(&self) -> VerifierRegistry {
        let mut registry = VerifierRegistry::new();
        registry
            .register(self.twilio.clone())
            .register(self.google.clone())
            .register(self.stripe.clone())
            .register(self.hubspot.clone());
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byoc_credential_types::CredentialType;

    #[test]
    fn the_registry_covers_every_kind() {
        let clients = ProviderClients::new(&ProviderConfig::default()).expect("clients build");
        let registry = clients.verifier_registry();
        for kind in CredentialType::ALL {
            assert_eq!(
                registry.get(kind).map(|verifier| verifier.kind()),
                Some(kind)
            );
        }
    }
}
