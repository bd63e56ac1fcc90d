//! Operator key maintenance over every organization: re-wrap data keys under the active master key
//! (`byoc keys rotate`) and decrypt every credential to find any that fail (`byoc keys check`).
//!
//! Rotation is online and resumable: each batch is read, re-wrapped and written back with a compare-and-swap
//! per row, so a row changed meanwhile by the service is left for the next pass, and a run stopped at any
//! point simply continues where it was when started again (rows already on the active version are skipped).

use std::num::NonZeroU32;

use byoc_credential_store::{
    CredentialId, CredentialRepository, EncryptedEnvelope, EnvelopeSwap, OperatorEnvelope,
    StoreError,
};
use byoc_crypto::{CryptoError, EnvelopeContext, KeyVersion, Keyring};

/// Why the keyring does not fit the database (start-up refuses).
#[derive(Debug, thiserror::Error)]
pub enum KeyringMismatch {
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The key given for a version is not the one that first wrote with it.
    #[error("BYOC_MASTER_KEYS: the key for version {0} is not the key this database's data was written with")]
    WrongKey(KeyVersion),
}

/// Start-up key check: every keyring version's key check value must equal the one stored by whoever first
/// wrote with that version (the active version's is stored now if none is). Versions that wrap stored data but
/// are missing from the keyring are logged as warnings; the credentials they wrap cannot be decrypted.
pub async fn verify_keyring(
    repository: &dyn CredentialRepository,
    keyring: &Keyring,
) -> Result<(), KeyringMismatch> {
    let stored = repository.key_check_values().await?;
    for version in keyring.versions() {
        let Some(mine) = keyring.key_check_value(version) else {
            continue;
        };
        let number = stored_key_version(version);
        let theirs = match stored.iter().find(|value| value.key_version == number) {
            Some(value) => value.check_value.clone(),
            None if version == keyring.active_version() => {
                repository
                    .insert_key_check_value_if_absent(number, mine.as_bytes())
                    .await?
                    .check_value
            }
            None => continue,
        };
        if theirs.as_slice() != mine.as_bytes().as_slice() {
            return Err(KeyringMismatch::WrongKey(version));
        }
    }
    for count in repository.operator_count_by_key_version().await? {
        let known = keyring
            .versions()
            .any(|version| stored_key_version(version) == count.key_version);
        if !known && count.credentials > 0 {
            tracing::warn!(
                key_version = count.key_version.get(),
                credentials = count.credentials,
                "stored credentials are wrapped by a key version missing from BYOC_MASTER_KEYS; they cannot be decrypted"
            );
        }
    }
    Ok(())
}

/// Rows read and re-wrapped per batch.
pub const BATCH_SIZE: u32 = 500;

/// Why key maintenance stopped.
#[derive(Debug, thiserror::Error)]
pub enum KeyMaintenanceError {
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// An envelope cannot be re-wrapped (names the credential, never key material).
    #[error("credential {id} cannot be re-wrapped: {source}")]
    Rewrap {
        /// The credential.
        id: CredentialId,
        /// Why.
        #[source]
        source: CryptoError,
    },
}

/// Where a rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationProgress {
    /// Rows re-wrapped so far in this run.
    pub rewrapped: u64,
    /// Rows that were not on the active version when the run started.
    pub total: u64,
}

/// The outcome of a rotation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    /// Rows re-wrapped in this run.
    pub rewrapped: u64,
    /// Rows per key version after the run.
    pub remaining: Vec<(NonZeroU32, u64)>,
}

/// One credential `keys check` could not decrypt.
#[derive(Debug)]
pub struct CheckFailure {
    /// The credential.
    pub id: CredentialId,
    /// Its organization.
    pub org_id: byoc_credential_store::OrgId,
    /// The key version its envelope names.
    pub key_version: NonZeroU32,
    /// Why it failed.
    pub error: CryptoError,
}

/// What `keys check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Credentials that decrypted.
    pub ok: u64,
    /// Credentials that did not.
    pub failures: Vec<CheckFailure>,
}

fn context(envelope: &OperatorEnvelope) -> EnvelopeContext<'static> {
    EnvelopeContext::new(
        envelope.org_id.as_uuid(),
        envelope.credential_type.as_str(),
        envelope.id.as_uuid(),
    )
}

/// A key version as the store's column type (both are at least 1).
pub fn stored_key_version(version: KeyVersion) -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(version.get().saturating_sub(1))
}

/// Re-wraps every data key that is not under the active version, calling `progress` after each batch.
pub async fn rotate(
    repository: &dyn CredentialRepository,
    keyring: &Keyring,
    mut progress: impl FnMut(RotationProgress),
) -> Result<RotationReport, KeyMaintenanceError> {
    let active = stored_key_version(keyring.active_version());
    let total = repository
        .operator_count_by_key_version()
        .await?
        .iter()
        .filter(|count| count.key_version != active)
        .map(|count| count.credentials)
        .sum();
    let mut state = RotationProgress {
        rewrapped: 0,
        total,
    };
    progress(state);
    let mut after = None;
    loop {
        let batch = repository
            .operator_envelope_batch(after, Some(active), BATCH_SIZE)
            .await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        let mut swaps = Vec::with_capacity(batch.len());
        for envelope in &batch {
            let rewrapped = keyring
                .rewrap(envelope.encrypted_data.as_bytes(), &context(envelope))
                .map_err(|source| KeyMaintenanceError::Rewrap {
                    id: envelope.id,
                    source,
                })?;
            swaps.push(EnvelopeSwap {
                id: envelope.id,
                expected: envelope.encrypted_data.clone(),
                replacement: EncryptedEnvelope::new(rewrapped.into_bytes())
                    .map_err(StoreError::from)?,
                replacement_key_version: active,
            });
        }
        let changed = repository.operator_swap_envelopes(&swaps).await?;
        state.rewrapped += changed.len() as u64;
        progress(state);
    }
    let remaining = repository
        .operator_count_by_key_version()
        .await?
        .into_iter()
        .map(|count| (count.key_version, count.credentials))
        .collect();
    Ok(RotationReport {
        rewrapped: state.rewrapped,
        remaining,
    })
}

/// Decrypts every credential of every organization and reports those that fail.
pub async fn check(
    repository: &dyn CredentialRepository,
    keyring: &Keyring,
) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport::default();
    let mut after = None;
    loop {
        let batch = repository
            .operator_envelope_batch(after, None, BATCH_SIZE)
            .await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.id);
        for envelope in batch {
            match keyring.open(envelope.encrypted_data.as_bytes(), &context(&envelope)) {
                Ok(_) => report.ok += 1,
                Err(error) => report.failures.push(CheckFailure {
                    id: envelope.id,
                    org_id: envelope.org_id,
                    key_version: envelope.encryption_key_version,
                    error,
                }),
            }
        }
    }
    Ok(report)
}
