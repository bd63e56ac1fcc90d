//! HubSpot: verification only. A private-app access token is verified with
//! `GET /account-info/v3/details`.

use async_trait::async_trait;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use crate::config::ProviderConfig;
use crate::credentials::{CredentialPayload, HubSpotCredential};
use crate::error::{scrub, ProviderError, ProviderRefusal, RefusalReason};
use crate::http::{self, CallPolicy, ErrorAnswer};
use crate::kind::ProviderKind;
use crate::verifier::{VerificationDetails, VerificationOutcome, Verifier};

const PROVIDER: ProviderKind = ProviderKind::HubSpot;

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
    let code = parsed
        .category
        .unwrap_or_else(|| format!("http_{}", answer.status.as_u16()));
    let message = scrub(
        &parsed.message.unwrap_or_else(|| {
            answer
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_owned()
        }),
        &[token],
    );
    if answer.status == StatusCode::TOO_MANY_REQUESTS {
        return ProviderError::RateLimited {
            provider: PROVIDER,
            code,
            message,
            retry_after: answer.retry_after,
        };
    }
    if answer.status.is_server_error() {
        return ProviderError::Unavailable {
            provider: PROVIDER,
            reason: format!("HTTP {} ({code})", answer.status.as_u16()),
        };
    }
    let reason = match answer.status {
        StatusCode::UNAUTHORIZED => RefusalReason::Authentication,
        StatusCode::FORBIDDEN => RefusalReason::PermissionDenied,
        _ => RefusalReason::Other,
    };
    ProviderError::Refused(ProviderRefusal {
        provider: PROVIDER,
        reason,
        code,
        message,
        http_status: Some(answer.status.as_u16()),
        more_info: None,
    })
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
    fn kind(&self) -> ProviderKind {
        PROVIDER
    }

    async fn verify(&self, payload: &[u8]) -> Result<VerificationOutcome, ProviderError> {
        let credential = HubSpotCredential::from_json_bytes(payload)?;
        Ok(VerificationOutcome {
            details: self.verify_credential(&credential).await?,
            updated_payload: None,
        })
    }
}
