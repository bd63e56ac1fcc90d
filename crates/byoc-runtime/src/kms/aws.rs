//! [`AwsKms`]: [`Kms`] on AWS KMS (`aws-sdk-kms`), configured by the SDK's standard chain: `AWS_REGION`, the
//! credentials chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, profiles, instance roles …) and
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_KMS` for an endpoint other than AWS's (a local KMS in tests).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use byoc_crypto::{MasterKey, MASTER_KEY_LEN};
use zeroize::Zeroize;

use super::{Kms, KmsContext, KmsError, KmsKeyId, WrappedMasterKey};

/// How long one KMS call may take to connect and to finish; the caller retries ([`super::held::RetryPolicy`]).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// KMS error codes that say "ask again later" rather than "no".
const TRANSIENT_CODES: &[&str] = &[
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "ThrottlingException",
    "ServiceUnavailableException",
    "RequestTimeout",
];

/// Why the AWS KMS client cannot be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AwsKmsSetupError {
    /// No region: neither `AWS_REGION` nor a profile names one.
    #[error("KMS: AWS_REGION is not set (nor a region in the AWS profile); the KMS-held master keys need it")]
    NoRegion,
}

/// AWS KMS as the [`Kms`] of KMS-held master keys.
#[derive(Clone)]
pub struct AwsKms {
    client: aws_sdk_kms::Client,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AwsKms")
    }
}

impl AwsKms {
    /// A client configured by the SDK's standard chain (region, credentials, endpoint URLs from the
    /// environment and profiles). One attempt per call, bounded by a connect and an attempt timeout: retries are
    /// the caller's.
    pub async fn from_environment() -> Result<AwsKms, AwsKmsSetupError> {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        if config.region().is_none() {
            return Err(AwsKmsSetupError::NoRegion);
        }
        Ok(AwsKms {
            client: aws_sdk_kms::Client::new(&config),
        })
    }
}

/// The context as the SDK takes it.
fn context_map(context: &KmsContext) -> HashMap<String, String> {
    context
        .pairs()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// An error and its causes, each shown once, on one line (`dispatch failure: io error: … Connection refused`).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line.replace('\n', " ")
}

/// Sorts an SDK failure into unreachable (ask again) or refused (the KMS said no), in one line.
fn classify<E, R>(key: &KmsKeyId, error: SdkError<E, R>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    let key = key.to_string();
    match error.as_service_error() {
        Some(service) => {
            let code = service.code().unwrap_or("unknown error").to_owned();
            let reason = match service.message() {
                Some(message) => format!("{code}: {message}"),
                None => code.clone(),
            };
            if TRANSIENT_CODES.contains(&code.as_str()) {
                KmsError::Unreachable { key, reason }
            } else {
                KmsError::Refused { key, reason }
            }
        }
        None => {
            let reason = causes(&error);
            match &error {
                SdkError::ConstructionFailure(_) => KmsError::Refused { key, reason },
                _ => KmsError::Unreachable { key, reason },
            }
        }
    }
}

#[async_trait]
impl Kms for AwsKms {
    async fn encrypt_master_key(
        &self,
        key: &KmsKeyId,
        master_key: &MasterKey,
        context: &KmsContext,
    ) -> Result<WrappedMasterKey, KmsError> {
        let output = self
            .client
            .encrypt()
            .key_id(key.as_str())
            .plaintext(Blob::new(master_key.expose_for_wrapping().to_vec()))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|error| classify(key, error))?;
        let ciphertext = output
            .ciphertext_blob
            .map(Blob::into_inner)
            .filter(|bytes| !bytes.is_empty())
            .ok_or_else(|| KmsError::Refused {
                key: key.to_string(),
                reason: "Encrypt answered without a ciphertext".to_owned(),
            })?;
        Ok(WrappedMasterKey::from_bytes(ciphertext))
    }

    async fn decrypt_master_key(
        &self,
        key: &KmsKeyId,
        wrapped: &WrappedMasterKey,
        context: &KmsContext,
    ) -> Result<MasterKey, KmsError> {
        let output = self
            .client
            .decrypt()
            .key_id(key.as_str())
            .ciphertext_blob(Blob::new(wrapped.as_bytes().to_vec()))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|error| classify(key, error))?;
        let mut plaintext = output.plaintext.map(Blob::into_inner).unwrap_or_default();
        let key_bytes = <[u8; MASTER_KEY_LEN]>::try_from(plaintext.as_slice());
        let found = plaintext.len();
        plaintext.zeroize();
        match key_bytes {
            Ok(bytes) => Ok(MasterKey::from_bytes(bytes)),
            Err(_) => Err(KmsError::NotAMasterKey {
                key: key.to_string(),
                found,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("dispatch failure")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_one_line_each_once() {
        let error = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "tcp connect error:\nConnection refused",
        ));
        assert_eq!(
            causes(&error),
            "dispatch failure: tcp connect error: Connection refused"
        );
    }
}
