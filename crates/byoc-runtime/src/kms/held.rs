//! KMS-held master key versions: unwrapping each stored version once at start (bounded retry while the KMS is
//! unreachable, then refuse), checking it against its stored key check value, and wrapping a fresh version for
//! `byoc keys create --kms`.

use std::time::Duration;

use byoc_crypto::{KeyCheckValue, KeyVersion, MasterKey};

use super::{Kms, KmsContext, KmsError, KmsKeyId, WrappedMasterKey};

/// A KMS-held master key version as the database keeps it.
#[derive(Clone, Debug)]
pub struct HeldVersion {
    /// The master key version.
    pub version: KeyVersion,
    /// The KMS key it is encrypted under.
    pub kms_key: KmsKeyId,
    /// The KMS's ciphertext of the master key.
    pub wrapped: WrappedMasterKey,
    /// The master key's check value, stored when the version was created.
    pub check_value: KeyCheckValue,
}

/// How often and how patiently an unreachable KMS is asked again at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The wait after the first failed attempt; it doubles after each further one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, waiting 0.5 s, 1 s and 2 s between them.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_millis(500),
        }
    }
}

/// Why the KMS-held versions cannot be used: start-up must refuse. One line naming KMS, the key and the version;
/// never key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeldKeyError {
    /// The KMS refused, or stayed unreachable through every attempt.
    #[error("master key version {version}: {source}{}", attempts_note(.attempts))]
    Kms {
        /// The version being unwrapped.
        version: KeyVersion,
        /// What the KMS (or the way to it) said last.
        source: KmsError,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The KMS decrypted the stored ciphertext to a key whose check value is not the stored one.
    #[error(
        "master key version {version}: KMS key {key} decrypted a master key whose check value is not the stored \
         one (the ciphertext was replaced or belongs to another version); start refused"
    )]
    WrongKey {
        /// The version.
        version: KeyVersion,
        /// The KMS key named for it.
        key: KmsKeyId,
    },
}

/// ` (after N attempts)` when the KMS was asked more than once.
fn attempts_note(attempts: &u32) -> String {
    if *attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// Asks `call` until it succeeds, fails for good, or `retry.attempts` transient failures have happened.
async fn with_retry<T, F, Fut>(retry: &RetryPolicy, mut call: F) -> Result<T, (KmsError, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, KmsError>>,
{
    let mut backoff = retry.first_backoff;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() && attempt < retry.attempts.max(1) => {
                tracing::warn!(%error, attempt, "KMS did not answer; asking again");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                attempt += 1;
            }
            Err(error) => return Err((error, attempt)),
        }
    }
}

/// Decrypts every KMS-held version once and checks each against its stored key check value; the keys are
/// ready for the keyring. Refuses on the first version that cannot be used.
pub async fn unwrap_held_versions(
    kms: &dyn Kms,
    held: &[HeldVersion],
    retry: &RetryPolicy,
) -> Result<Vec<(KeyVersion, MasterKey)>, HeldKeyError> {
    let mut keys = Vec::with_capacity(held.len());
    for version in held {
        let context = KmsContext::for_version(version.version);
        let key = with_retry(retry, || {
            kms.decrypt_master_key(&version.kms_key, &version.wrapped, &context)
        })
        .await
        .map_err(|(source, attempts)| HeldKeyError::Kms {
            version: version.version,
            source,
            attempts,
        })?;
        if key.key_check_value() != version.check_value {
            return Err(HeldKeyError::WrongKey {
                version: version.version,
                key: version.kms_key.clone(),
            });
        }
        keys.push((version.version, key));
    }
    Ok(keys)
}

/// A freshly generated master key for `version`, encrypted under `kms_key` with the version's context, and its
/// check value. The ciphertext is decrypted back before it is returned, so a key the caller may encrypt with but
/// not decrypt with is found now, not at the next start. The plaintext key is dropped (zeroed) here.
pub async fn wrap_new_version(
    kms: &dyn Kms,
    kms_key: &KmsKeyId,
    version: KeyVersion,
) -> Result<(WrappedMasterKey, KeyCheckValue), HeldKeyError> {
    let master_key = MasterKey::generate();
    let check_value = master_key.key_check_value();
    let context = KmsContext::for_version(version);
    let failed = |source: KmsError| HeldKeyError::Kms {
        version,
        source,
        attempts: 1,
    };
    let wrapped = kms
        .encrypt_master_key(kms_key, &master_key, &context)
        .await
        .map_err(failed)?;
    drop(master_key);
    let back = kms
        .decrypt_master_key(kms_key, &wrapped, &context)
        .await
        .map_err(failed)?;
    if back.key_check_value() != check_value {
        return Err(HeldKeyError::WrongKey {
            version,
            key: kms_key.clone(),
        });
    }
    Ok((wrapped, check_value))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use mockall::predicate::always;

    use super::*;
    use crate::kms::MockKms;

    fn version(number: u32) -> KeyVersion {
        KeyVersion::new(number).expect("non-zero")
    }

    fn kms_key() -> KmsKeyId {
        KmsKeyId::parse("alias/byoc-test").expect("valid")
    }

    fn held(number: u32, key: &MasterKey) -> HeldVersion {
        HeldVersion {
            version: version(number),
            kms_key: kms_key(),
            wrapped: WrappedMasterKey::from_bytes(vec![number as u8; 16]),
            check_value: key.key_check_value(),
        }
    }

    fn no_wait() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            first_backoff: Duration::ZERO,
        }
    }

    fn unreachable() -> KmsError {
        KmsError::Unreachable {
            key: "alias/byoc-test".to_owned(),
            reason: "connection refused".to_owned(),
        }
    }

    #[tokio::test]
    async fn each_version_is_decrypted_once_with_its_own_context() {
        let first = [0x11; 32];
        let second = [0x22; 32];
        let rows = vec![
            held(1, &MasterKey::from_bytes(first)),
            held(2, &MasterKey::from_bytes(second)),
        ];
        let mut kms = MockKms::new();
        kms.expect_decrypt_master_key()
            .times(2)
            .returning(move |_, wrapped, context| {
                let number = wrapped.as_bytes()[0];
                assert_eq!(
                    context,
                    &KmsContext::for_version(version(u32::from(number))),
                    "the context names the version"
                );
                Ok(MasterKey::from_bytes(if number == 1 {
                    first
                } else {
                    second
                }))
            });
        let keys = unwrap_held_versions(&kms, &rows, &no_wait())
            .await
            .expect("both check out");
        let versions: Vec<KeyVersion> = keys.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, vec![version(1), version(2)]);
        assert_eq!(
            keys[1].1.key_check_value(),
            MasterKey::from_bytes(second).key_check_value()
        );
    }

    #[tokio::test]
    async fn a_kms_answering_with_another_keys_plaintext_is_refused() {
        let stored = MasterKey::generate();
        let rows = vec![held(3, &stored)];
        let mut kms = MockKms::new();
        kms.expect_decrypt_master_key()
            .times(1)
            .returning(|_, _, _| Ok(MasterKey::generate()));
        let error = unwrap_held_versions(&kms, &rows, &no_wait())
            .await
            .expect_err("refused");
        assert_eq!(
            error,
            HeldKeyError::WrongKey {
                version: version(3),
                key: kms_key()
            }
        );
        let line = error.to_string();
        assert!(
            line.contains("KMS key alias/byoc-test")
                && line.contains("version 3")
                && !line.contains('\n'),
            "{line}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_kms_is_asked_a_bounded_number_of_times() {
        let rows = vec![held(1, &MasterKey::generate())];
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let mut kms = MockKms::new();
        kms.expect_decrypt_master_key().returning(move |_, _, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(unreachable())
        });
        let error = unwrap_held_versions(&kms, &rows, &no_wait())
            .await
            .expect_err("refused");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "RetryPolicy::attempts");
        let line = error.to_string();
        assert!(
            line.contains("KMS is unreachable") && line.contains("after 3 attempts"),
            "{line}"
        );
    }

    #[tokio::test]
    async fn a_kms_that_comes_back_within_the_attempts_is_used() {
        let key = [0x33; 32];
        let rows = vec![held(1, &MasterKey::from_bytes(key))];
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        let mut kms = MockKms::new();
        kms.expect_decrypt_master_key().returning(move |_, _, _| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(unreachable())
            } else {
                Ok(MasterKey::from_bytes(key))
            }
        });
        unwrap_held_versions(&kms, &rows, &no_wait())
            .await
            .expect("second attempt answers");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_disabled_key_is_refused_without_retrying() {
        let rows = vec![held(2, &MasterKey::generate())];
        let mut kms = MockKms::new();
        kms.expect_decrypt_master_key()
            .times(1)
            .returning(|_, _, _| {
                Err(KmsError::Refused {
                    key: "alias/byoc-test".to_owned(),
                    reason: "DisabledException: key is disabled".to_owned(),
                })
            });
        let line = unwrap_held_versions(&kms, &rows, &no_wait())
            .await
            .expect_err("refused")
            .to_string();
        assert_eq!(
            line,
            "master key version 2: KMS key alias/byoc-test: KMS refused: DisabledException: key is disabled"
        );
    }

    #[tokio::test]
    async fn a_new_version_is_encrypted_and_read_back_under_its_context() {
        let handed = Arc::new(std::sync::Mutex::new(None::<[u8; 32]>));
        let kept = Arc::clone(&handed);
        let mut kms = MockKms::new();
        kms.expect_encrypt_master_key()
            .with(
                always(),
                always(),
                mockall::predicate::eq(KmsContext::for_version(version(4))),
            )
            .times(1)
            .returning(move |_, key, _| {
                *kept.lock().expect("lock") = Some(*key.expose_for_wrapping());
                Ok(WrappedMasterKey::from_bytes(vec![9; 8]))
            });
        let given = Arc::clone(&handed);
        kms.expect_decrypt_master_key()
            .times(1)
            .returning(move |_, _, _| {
                Ok(MasterKey::from_bytes(
                    given.lock().expect("lock").expect("encrypted first"),
                ))
            });
        let (wrapped, check_value) = wrap_new_version(&kms, &kms_key(), version(4))
            .await
            .expect("wrapped");
        assert_eq!(wrapped.as_bytes(), &[9; 8]);
        let plaintext = handed.lock().expect("lock").expect("encrypted");
        assert_eq!(
            check_value,
            MasterKey::from_bytes(plaintext).key_check_value()
        );

        let mut lying = MockKms::new();
        lying
            .expect_encrypt_master_key()
            .returning(|_, _, _| Ok(WrappedMasterKey::from_bytes(vec![1])));
        lying
            .expect_decrypt_master_key()
            .returning(|_, _, _| Ok(MasterKey::generate()));
        assert!(matches!(
            wrap_new_version(&lying, &kms_key(), version(4)).await,
            Err(HeldKeyError::WrongKey { .. })
        ));
    }
}
