//! HubSpot: verification only. A private-app access token is verified with
//! `GET /account-info/v3/details`.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use crate::config::ProviderConfig;
use crate::error::{message_or_status_reason, scrub, ProviderError};
use crate::http::{self, CallPolicy, ErrorAnswer};
use crate::verifier::{Acceptance, VerificationDetails, Verifier};
use byoc_credential_types::CredentialType;
use byoc_credential_types::{CredentialPayload, HubSpotCredential};

const PROVIDER: CredentialType = CredentialType::HubSpot;

/// The HubSpot verifier.
#[derive(Debug, Clone)]
pub struct HubSpotClient {
    http: reqwest::Client,
    api_base: Url,
    calls: CallPolicy,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountDetails {
    portal_id: u64,
    #[serde(default)]
    account_type: Option<String>,
}

#[derive(Deserialize, Default)]
struct HubSpotErrorBody {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn map_error(answer: ErrorAnswer, token: &str) -> ProviderError {
    let parsed: HubSpotErrorBody = serde_json::from_str(&answer.body).unwrap_or_default();
    let message = scrub(
        &message_or_status_reason(parsed.message, answer.status),
        &[token],
    );
    answer.into_verifier_error(PROVIDER, parsed.category, message)
}

impl HubSpotClient {
    /// A client for `config.hubspot_api_base`, using `http`.
    pub fn new(config: &ProviderConfig, http: reqwest::Client) -> Self {
        HubSpotClient {
            http,
            api_base: config.hubspot_api_base.clone(),
            calls: CallPolicy::from_config(config),
        }
    }

    /// Reads the account details with the token.
    pub async fn verify_credential(
        &self,
        credential: &HubSpotCredential,
    ) -> Result<VerificationDetails, ProviderError> {
        let token = credential.access_token.expose_secret();
        let url = http::endpoint(&self.api_base, &["account-info", "v3", "details"]);
        match http::get_with_bearer(PROVIDER, self.calls, &self.http, &url, token).await? {
            Ok(body) => {
                let details: AccountDetails = http::parse_json(PROVIDER, &body)?;
                Ok(VerificationDetails::HubSpot {
                    portal_id: details.portal_id,
                    account_type: details.account_type,
                })
            }
            Err(answer) => Err(map_error(answer, token)),
        }
    }
}

#[async_trait]
impl Verifier for HubSpotClient {
    fn kind(&self) -> CredentialType {
        PROVIDER
    }

    async fn verify(&self, payload: &[u8]) -> Result<Acceptance, ProviderError> {
        let credential = HubSpotCredential::from_json_bytes(payload)?;
        Ok(Acceptance {
            details: self.verify_credential(&credential).await?,
            updated_payload: None,
        })
    }
}
