//! Stripe: verification only. A secret or restricted key is verified with `GET /v1/balance`; live vs test
//! mode is reported from both the key prefix and Stripe's `livemode`.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use crate::config::ProviderConfig;
use crate::error::{message_or_status_reason, scrub, ProviderError};
use crate::http::{self, CallPolicy, ErrorAnswer};
use crate::verifier::{Acceptance, VerificationDetails, Verifier};
use byoc_credential_types::CredentialType;
use byoc_credential_types::{CredentialPayload, StripeCredential};

const PROVIDER: CredentialType = CredentialType::Stripe;

/// The Stripe verifier.
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    api_base: Url,
    calls: CallPolicy,
}

#[derive(Deserialize)]
struct Balance {
    livemode: bool,
}

#[derive(Deserialize, Default)]
struct StripeErrorEnvelope {
    #[serde(default)]
    error: StripeErrorBody,
}

#[derive(Deserialize, Default)]
struct StripeErrorBody {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Replaces every word that looks like a Stripe key (`sk_`, `rk_`, `pk_` prefixes, even masked) and the
/// key itself.
fn scrub_keys(message: &str, key: &str) -> String {
    scrub(message, &[key])
        .split(' ')
        .map(|word| {
            let bare = word.trim_start_matches(['\'', '"', '(']);
            if ["sk_", "rk_", "pk_"]
                .iter()
                .any(|prefix| bare.starts_with(prefix))
            {
                "[redacted]"
            } else {
                word
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn map_error(answer: ErrorAnswer, key: &str) -> ProviderError {
    let parsed: StripeErrorEnvelope = serde_json::from_str(&answer.body).unwrap_or_default();
    let message = scrub_keys(
        &message_or_status_reason(parsed.error.message, answer.status),
        key,
    );
    let code = parsed.error.code.or(parsed.error.kind);
    answer.into_verifier_error(PROVIDER, code, message)
}

impl StripeClient {
    /// A client for `config.stripe_api_base`, using `http`.
    pub fn new(config: &ProviderConfig, http: reqwest::Client) -> Self {
        StripeClient {
            http,
            api_base: config.stripe_api_base.clone(),
            calls: CallPolicy::from_config(config),
        }
    }

    /// Reads the balance with the key: accepted keys report their mode.
    pub async fn verify_credential(
        &self,
        credential: &StripeCredential,
    ) -> Result<VerificationDetails, ProviderError> {
        let key = credential.secret_key.expose_secret();
        let url = http::endpoint(&self.api_base, &["v1", "balance"]);
        match http::get_with_bearer(PROVIDER, self.calls, &self.http, &url, key).await? {
            Ok(body) => {
                let balance: Balance = http::parse_json(PROVIDER, &body)?;
                Ok(VerificationDetails::Stripe {
                    livemode: balance.livemode,
                    key_mode: credential.mode(),
                })
            }
            Err(answer) => Err(map_error(answer, key)),
        }
    }
}

#[async_trait]
impl Verifier for StripeClient {
    fn kind(&self) -> CredentialType {
        PROVIDER
    }

    async fn verify(&self, payload: &[u8]) -> Result<Acceptance, ProviderError> {
        let credential = StripeCredential::from_json_bytes(payload)?;
        Ok(Acceptance {
            details: self.verify_credential(&credential).await?,
            updated_payload: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_like_words_are_redacted_even_when_masked() {
        let message = "Invalid API Key provided: sk_test_********************abcd";
        assert_eq!(
            scrub_keys(message, "sk_test_51Hsecretabcd"),
            "Invalid API Key provided: [redacted]"
        );
        assert_eq!(
            scrub_keys(
                "The provided key 'rk_live_xyz' lacks permission",
                "rk_live_xyz"
            ),
            "The provided key '[redacted]' lacks permission"
        );
    }
}
