//! Twilio: verify an account and its sending number, send SMS, map Twilio's error bodies to typed errors,
//! and validate status-callback signatures. REST API 2010-04-01 over reqwest, form-encoded, basic auth
//! `AccountSid:AuthToken`.

pub mod callback;
mod errors;
pub mod signature;

use async_trait::async_trait;
use reqwest::RequestBuilder;
use secrecy::ExposeSecret;
use serde::Deserialize;
use url::Url;

use crate::config::ProviderConfig;
use crate::error::{ProviderError, ProviderRefusal, RefusalReason};
use crate::http::{self, CallPolicy, Idempotency};
use crate::sms::{OutboundSms, SentSms, SmsSender};
use crate::verifier::{Acceptance, VerificationDetails, Verifier};
use byoc_credential_types::CredentialType;
use byoc_credential_types::{CredentialPayload, TwilioCredential};

const API_VERSION: &str = "2010-04-01";
const PROVIDER: CredentialType = CredentialType::Twilio;

/// The Twilio client: verifier and SMS sender for any organization's credential.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    api_base: Url,
    default_status_callback: Option<Url>,
    calls: CallPolicy,
}

#[derive(Deserialize)]
struct IncomingPhoneNumberPage {
    #[serde(default)]
    incoming_phone_numbers: Vec<IncomingPhoneNumber>,
}

#[derive(Deserialize)]
struct IncomingPhoneNumber {
    phone_number: String,
    #[serde(default)]
    capabilities: Capabilities,
}

#[derive(Deserialize, Default)]
struct Capabilities {
    #[serde(default)]
    sms: bool,
}

#[derive(Deserialize)]
struct MessageResource {
    sid: String,
    status: String,
}

impl TwilioClient {
    /// A client for `config.twilio_api_base`, using `http` (see [`crate::build_http_client`]).
    pub fn new(config: &ProviderConfig, http: reqwest::Client) -> Self {
        TwilioClient {
            http,
            api_base: config.twilio_api_base.clone(),
            default_status_callback: config.twilio_status_callback_url(),
            calls: CallPolicy::from_config(config),
        }
    }

    /// The URL of a resource of the credential's account, e.g. `Messages.json`.
    fn account_url(&self, credential: &TwilioCredential, resource: &str) -> Url {
        let sid = credential.account_sid.as_str();
        http::endpoint(&self.api_base, &[API_VERSION, "Accounts", sid, resource])
    }

    fn authorized(&self, request: RequestBuilder, credential: &TwilioCredential) -> RequestBuilder {
        request.basic_auth(
            credential.account_sid.as_str(),
            Some(credential.auth_token.expose_secret()),
        )
    }

    /// Sends a request and returns the body of a 2xx answer, or the mapped Twilio error.
    async fn call(
        &self,
        credential: &TwilioCredential,
        idempotency: Idempotency,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<String, ProviderError> {
        let response = http::send_with_retry(PROVIDER, self.calls, idempotency, || {
            self.authorized(build(), credential)
        })
        .await?;
        let status = response.status();
        let retry_after = http::retry_after(&response);
        let body = http::read_body(PROVIDER, idempotency, response).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(errors::map_error(
                status,
                retry_after,
                &body,
                &[credential.auth_token.expose_secret()],
                idempotency,
            ))
        }
    }

    /// Verifies a Twilio credential with one request: the account's incoming phone numbers, filtered to the
    /// configured sending number. Its answer proves that the Account SID and auth token authenticate (Twilio
    /// refuses every request of a suspended or closed account, 20003 or 20005), that the number belongs to the
    /// account, and whether it can send SMS.
    pub async fn verify_credential(
        &self,
        credential: &TwilioCredential,
    ) -> Result<VerificationDetails, ProviderError> {
        let numbers_url = self.account_url(credential, "IncomingPhoneNumbers.json");
        let phone = credential.phone_number.as_str();
        let body = self
            .call(credential, Idempotency::Safe, || {
                self.http
                    .get(numbers_url.clone())
                    .query(&[("PhoneNumber", phone), ("PageSize", "20")])
            })
            .await?;
        let page: IncomingPhoneNumberPage = http::parse_json(PROVIDER, &body)?;
        let number = page
            .incoming_phone_numbers
            .iter()
            .find(|number| number.phone_number == phone)
            .ok_or_else(|| {
                refusal(
                    RefusalReason::PhoneNumberNotOnAccount,
                    "phone_number_not_on_account".into(),
                    format!("{phone} is not an incoming phone number of this Twilio account"),
                )
            })?;
        if !number.capabilities.sms {
            return Err(refusal(
                RefusalReason::PhoneNumberCannotSendSms,
                "phone_number_not_sms_capable".into(),
                format!("{phone} has no SMS capability"),
            ));
        }
        Ok(VerificationDetails::Twilio {
            phone_number: phone.to_owned(),
        })
    }

    /// Sends one SMS (see [`SmsSender::send_sms`]).
    pub async fn send(
        &self,
        credential: &TwilioCredential,
        message: &OutboundSms,
    ) -> Result<SentSms, ProviderError> {
        let url = self.account_url(credential, "Messages.json");
        let mut form: Vec<(&str, &str)> = vec![
            ("To", message.to().as_str()),
            ("From", credential.phone_number.as_str()),
            ("Body", message.body()),
        ];
        let status_callback = message
            .status_callback()
            .or(self.default_status_callback.as_ref());
        if let Some(callback) = status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let created: MessageResource = self
            .call(credential, Idempotency::SendsOnce, || {
                self.http.post(url.clone()).form(&form)
            })
            .await
            .and_then(|body| http::parse_json(PROVIDER, &body))
            .map_err(unreadable_send_answer)?;
        tracing::info!(
            account = %credential.account_sid,
            to = %message.to().masked(),
            sid = %created.sid,
            status = %created.status,
            "twilio accepted an SMS"
        );
        Ok(SentSms {
            sid: created.sid,
            status: created.status,
        })
    }
}

/// A send whose answer cannot be read (a success body that is not a message, an answer over the size limit)
/// may have been accepted: it is reported as `OutcomeUnknown`, so nobody resends it as if it had failed.
fn unreadable_send_answer(error: ProviderError) -> ProviderError {
    match error {
        ProviderError::UnexpectedResponse { provider, reason } => ProviderError::OutcomeUnknown {
            provider,
            reason: format!("its answer could not be read ({reason})"),
        },
        other => other,
    }
}

fn refusal(reason: RefusalReason, code: String, message: String) -> ProviderError {
    ProviderError::Refused(ProviderRefusal {
        provider: PROVIDER,
        reason,
        code,
        message,
        http_status: None,
        more_info: None,
    })
}

#[async_trait]
impl Verifier for TwilioClient {
    fn kind(&self) -> CredentialType {
        PROVIDER
    }

    async fn verify(&self, payload: &[u8]) -> Result<Acceptance, ProviderError> {
        let credential = TwilioCredential::from_json_bytes(payload)?;
        Ok(Acceptance {
            details: self.verify_credential(&credential).await?,
            updated_payload: None,
        })
    }
}

#[async_trait]
impl SmsSender for TwilioClient {
    async fn send_sms(
        &self,
        credential: &TwilioCredential,
        message: &OutboundSms,
    ) -> Result<SentSms, ProviderError> {
        self.send(credential, message).await
    }
}
