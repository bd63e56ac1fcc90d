//! Operator key maintenance over every organization: the start-up key check ([`check_keyring`]), key
//! rotation ([`rotate`], `byoc keys rotate`) and the decrypt-everything check ([`check_all`],
//! `byoc keys check`).
//!
//! Rotation is online and resumable. Batches are read in (organization, id) order (keyset pagination, so a batch
//! spans few organizations; skipping rows already on the active version), re-wrapped on every core (rayon, off the
//! async threads) while the next batch is read, and written back with one compare-and-swap statement per batch,
//! several in flight. A row changed meanwhile by the service (which seals under the active version anyway) is left
//! as it is; a run killed at any point leaves every row either as it was or fully re-wrapped, and the next run
//! simply continues. Each swap writes the `rotated` audit events of its own rows (per organization and old key
//! version) in its own transaction, so a killed run leaves exactly the audit of what it re-wrapped.

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;

use byoc_crypto::{CryptoError, EnvelopeContext, KeyVersion, Keyring};
use futures::TryStreamExt;
use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::error::{StoreError, StoreResult};
use crate::model::{EncryptedEnvelope, EnvelopeSwap, KeyVersionCount, OperatorEnvelope};
use crate::repository::CredentialRepository;
use crate::service::{CredentialService, ServiceResult};
use crate::tenant::{CredentialId, OrgId, ServiceName};

/// Why the keyring does not fit the database: start-up must refuse.
#[derive(Debug, thiserror::Error)]
pub enum KeyringMismatch {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key given for a version is not the one that first wrote with it.
    #[error(
        "BYOC_MASTER_KEYS: the key for version {0} is not the key this database's data was written with"
    )]
    WrongKey(KeyVersion),
}

/// What the start-up key check found (when it passed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyringReport {
    /// Keyring versions whose key check value matched the stored one.
    pub matched: Vec<KeyVersion>,
    /// Whether the active version's key check value was stored now (first start with that version).
    pub recorded_active: bool,
    /// Key versions that wrap stored credentials but are missing from the keyring: those credentials cannot
    /// be decrypted until the key is added back.
    pub missing: Vec<KeyVersionCount>,
}

/// The store's column type for a key version (both are at least 1).
pub fn stored_key_version(version: KeyVersion) -> NonZeroU32 {
    NonZeroU32::MIN.saturating_add(version.get().saturating_sub(1))
}

/// Start-up key check: every keyring version's key check value must equal the one stored by whoever first
/// wrote with that version. All versions are compared before anything is written; only then is the active
/// version's value stored if none is yet. Versions that wrap stored data but are missing from the keyring
/// are returned in [`KeyringReport::missing`] and logged as warnings.
pub async fn check_keyring(
    repository: &dyn CredentialRepository,
    keyring: &Keyring,
) -> Result<KeyringReport, KeyringMismatch> {
    let stored = repository.key_check_values().await?;
    let mut report = KeyringReport::default();
    for version in keyring.versions() {
        let Some(mine) = keyring.key_check_value(version) else {
            continue;
        };
        let number = stored_key_version(version);
        if let Some(theirs) = stored.iter().find(|value| value.key_version == number) {
            if theirs.check_value.as_slice() != mine.as_bytes().as_slice() {
                return Err(KeyringMismatch::WrongKey(version));
            }
            report.matched.push(version);
        }
    }
    let active = keyring.active_version();
    if !report.matched.contains(&active) {
        if let Some(mine) = keyring.key_check_value(active) {
            // Another replica may have stored one meanwhile: compare with whatever is stored now.
            let stored = repository
                .insert_key_check_value_if_absent(stored_key_version(active), mine.as_bytes())
                .await?;
            if stored.check_value.as_slice() != mine.as_bytes().as_slice() {
                return Err(KeyringMismatch::WrongKey(active));
            }
            report.recorded_active = true;
            report.matched.push(active);
        }
    }
    for count in repository.credentials_per_key_version().await? {
        let known = keyring
            .versions()
            .any(|version| stored_key_version(version) == count.key_version);
        if !known && count.credentials > 0 {
            tracing::warn!(
                key_version = count.key_version.get(),
                credentials = count.credentials,
                "stored credentials are wrapped by a key version missing from BYOC_MASTER_KEYS; they cannot be decrypted"
            );
            report.missing.push(count);
        }
    }
    Ok(report)
}

/// How a rotation runs.
#[derive(Clone, Debug)]
pub struct RotationOptions {
    /// Rows read, re-wrapped and swapped per batch (default 2,000).
    pub batch_size: u32,
    /// Compare-and-swap statements in flight at once (default 4).
    pub swaps_in_flight: usize,
    /// Who the `rotated` audit events name (default `service:key-rotation`).
    pub actor: ServiceName,
}

impl Default for RotationOptions {
    fn default() -> Self {
        RotationOptions {
            batch_size: 2_000,
            swaps_in_flight: 4,
            actor: ServiceName::parse("key-rotation").expect("a valid service name literal"),
        }
    }
}

/// Where a rotation stands; passed to the progress callback after every batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationProgress {
    /// Rows re-wrapped so far in this run.
    pub rewrapped: u64,
    /// Rows still on each old key version (an estimate while rows are added or changed concurrently).
    pub remaining: Vec<KeyVersionCount>,
}

/// A credential that could not be re-wrapped (or decrypted, for [`check_all`]). Names the credential, never
/// key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeFailure {
    /// The credential.
    pub id: CredentialId,
    /// Its organization.
    pub org_id: OrgId,
    /// The key version its envelope row names.
    pub key_version: NonZeroU32,
    /// Why it failed.
    pub error: CryptoError,
}

/// The outcome of a rotation run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    /// The version everything was re-wrapped under.
    pub active_version: NonZeroU32,
    /// Rows re-wrapped in this run.
    pub rewrapped: u64,
    /// Rows left alone because the service changed them while they were being re-wrapped.
    pub changed_meanwhile: u64,
    /// Rows that could not be re-wrapped (unknown key version, damaged envelope).
    pub failures: Vec<EnvelopeFailure>,
    /// Rows per key version after the run.
    pub remaining: Vec<KeyVersionCount>,
}

/// Most passes over the table: a later pass only picks up rows whose swap lost to a concurrent change.
const MAX_PASSES: usize = 3;
/// Batches read ahead of the re-wrap stage.
const READ_AHEAD: usize = 2;

/// Re-wraps every data key that is not under the active version, calling `progress` after each batch. Every
/// swapped batch carries its audit: one `rotated` event per organization and old key version among its rows
/// (`{"rewrapped", "from_key_version", "key_version"}`), written in the swap's transaction.
pub async fn rotate(
    repository: Arc<dyn CredentialRepository>,
    keyring: Arc<Keyring>,
    options: &RotationOptions,
    mut progress: impl FnMut(&RotationProgress) + Send,
) -> StoreResult<RotationReport> {
    let active = stored_key_version(keyring.active_version());
    let mut remaining: BTreeMap<NonZeroU32, u64> = repository
        .credentials_per_key_version()
        .await?
        .into_iter()
        .filter(|count| count.key_version != active && count.credentials > 0)
        .map(|count| (count.key_version, count.credentials))
        .collect();
    let mut state = RotationProgress {
        rewrapped: 0,
        remaining: counts(&remaining),
    };
    progress(&state);
    let mut changed_meanwhile = 0;
    let mut failures = Vec::new();
    for _ in 0..MAX_PASSES {
        let pass = rotation_pass(&repository, &keyring, options, active);
        let mut pass = std::pin::pin!(pass);
        let mut lost_in_pass = 0;
        failures.clear();
        while let Some(outcome) = pass.try_next().await? {
            for version in outcome.swapped {
                if let Some(left) = remaining.get_mut(&version) {
                    *left = left.saturating_sub(1);
                }
                state.rewrapped += 1;
            }
            lost_in_pass += outcome.lost;
            failures.extend(outcome.failures);
            state.remaining = counts(&remaining);
            progress(&state);
        }
        changed_meanwhile += lost_in_pass;
        if lost_in_pass == 0 {
            break;
        }
    }
    let remaining = repository.credentials_per_key_version().await?;
    Ok(RotationReport {
        active_version: active,
        rewrapped: state.rewrapped,
        changed_meanwhile,
        failures,
        remaining,
    })
}

fn counts(remaining: &BTreeMap<NonZeroU32, u64>) -> Vec<KeyVersionCount> {
    remaining
        .iter()
        .map(|(version, left)| KeyVersionCount {
            key_version: *version,
            credentials: *left,
        })
        .collect()
}

/// What one swapped batch did.
struct BatchOutcome {
    /// The old key version of each swapped row.
    swapped: Vec<NonZeroU32>,
    /// Rows whose swap lost to a concurrent change.
    lost: u64,
    /// Rows that could not be re-wrapped.
    failures: Vec<EnvelopeFailure>,
}

/// One pass over every row not on the active version: read (ahead), re-wrap (on the rayon pool), swap
/// (several statements in flight).
fn rotation_pass(
    repository: &Arc<dyn CredentialRepository>,
    keyring: &Arc<Keyring>,
    options: &RotationOptions,
    active: NonZeroU32,
) -> impl futures::Stream<Item = StoreResult<BatchOutcome>> + Send {
    let batches = read_batches(Arc::clone(repository), Some(active), options.batch_size);
    let keyring = Arc::clone(keyring);
    let repository = Arc::clone(repository);
    let actor = options.actor.clone();
    batches
        .map_ok(move |batch| {
            let keyring = Arc::clone(&keyring);
            async move {
                tokio::task::spawn_blocking(move || rewrap_batch(&keyring, batch, active))
                    .await
                    .map_err(|_| StoreError::internal("the re-wrap task panicked"))
            }
        })
        .try_buffered(READ_AHEAD)
        .map_ok(move |(swaps, failures)| {
            let repository = Arc::clone(&repository);
            let actor = actor.clone();
            async move {
                let changed: HashSet<CredentialId> = repository
                    .operator_swap_envelopes(&swaps, &actor)
                    .await?
                    .into_iter()
                    .collect();
                let swapped: Vec<NonZeroU32> = swaps
                    .iter()
                    .filter(|swap| changed.contains(&swap.id))
                    .map(|swap| swap.expected_key_version)
                    .collect();
                let lost = (swaps.len() - swapped.len()) as u64;
                Ok(BatchOutcome {
                    swapped,
                    lost,
                    failures,
                })
            }
        })
        .try_buffer_unordered(options.swaps_in_flight.max(1))
}

/// Reads every row (not on `skip`) in (organization, id) order, one batch ahead of its consumer, on its own
/// task.
fn read_batches(
    repository: Arc<dyn CredentialRepository>,
    skip: Option<NonZeroU32>,
    batch_size: u32,
) -> impl futures::Stream<Item = StoreResult<Vec<OperatorEnvelope>>> + Send {
    let (sender, receiver) = mpsc::channel(READ_AHEAD);
    tokio::spawn(async move {
        let mut after = None;
        loop {
            match repository
                .operator_envelope_batch(after, skip, batch_size.max(1))
                .await
            {
                Ok(rows) if rows.is_empty() => return,
                Ok(rows) => {
                    after = rows.last().map(OperatorEnvelope::cursor);
                    if sender.send(Ok(rows)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// The swaps of a batch and the rows that could not be re-wrapped.
type RewrappedBatch = (Vec<EnvelopeSwap>, Vec<EnvelopeFailure>);

fn rewrap_batch(
    keyring: &Keyring,
    batch: Vec<OperatorEnvelope>,
    active: NonZeroU32,
) -> RewrappedBatch {
    let results: Vec<Result<EnvelopeSwap, EnvelopeFailure>> = batch
        .into_par_iter()
        .map(|row| {
            let failure = |error| EnvelopeFailure {
                id: row.id,
                org_id: row.org_id,
                key_version: row.encryption_key_version,
                error,
            };
            let rewrapped = keyring
                .rewrap(row.encrypted_data.as_bytes(), &context(&row))
                .map_err(failure)?;
            let replacement = EncryptedEnvelope::new(rewrapped.into_bytes())
                .map_err(|_| failure(CryptoError::Truncated))?;
            Ok(EnvelopeSwap {
                id: row.id,
                expected: row.encrypted_data,
                expected_key_version: row.encryption_key_version,
                replacement,
                replacement_key_version: active,
            })
        })
        .collect();
    let mut swaps = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(swap) => swaps.push(swap),
            Err(failure) => failures.push(failure),
        }
    }
    (swaps, failures)
}

fn context(row: &OperatorEnvelope) -> EnvelopeContext<'_> {
    EnvelopeContext::new(
        row.org_id.as_uuid(),
        row.credential_type.as_str(),
        row.id.as_uuid(),
    )
}

/// What [`check_all`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Credentials that decrypted.
    pub ok: u64,
    /// Credentials that did not.
    pub failures: Vec<EnvelopeFailure>,
}

/// Decrypts every credential of every organization (on every core, reading ahead) and reports those that
/// fail (`byoc keys check`).
pub async fn check_all(
    repository: Arc<dyn CredentialRepository>,
    keyring: Arc<Keyring>,
    batch_size: u32,
) -> StoreResult<CheckReport> {
    let mut report = CheckReport::default();
    let mut batches = std::pin::pin!(read_batches(repository, None, batch_size)
        .map_ok(|batch| {
            let keyring = Arc::clone(&keyring);
            async move {
                tokio::task::spawn_blocking(move || {
                    let rows = batch.len();
                    let failures = batch
                        .into_par_iter()
                        .filter_map(|row| {
                            keyring
                                .open(row.encrypted_data.as_bytes(), &context(&row))
                                .err()
                                .map(|error| EnvelopeFailure {
                                    id: row.id,
                                    org_id: row.org_id,
                                    key_version: row.encryption_key_version,
                                    error,
                                })
                        })
                        .collect::<Vec<_>>();
                    (rows, failures)
                })
                .await
                .map_err(|_| StoreError::internal("the check task panicked"))
            }
        })
        .try_buffered(READ_AHEAD));
    while let Some((rows, failures)) = batches.try_next().await? {
        report.ok += (rows - failures.len()) as u64;
        report.failures.extend(failures);
    }
    Ok(report)
}

/// Rows per batch of [`CredentialService::check_all`].
const CHECK_BATCH: u32 = 2_000;

impl CredentialService {
    /// The start-up key check against this service's keyring (see [`check_keyring`]).
    pub async fn check_keyring(&self) -> Result<KeyringReport, KeyringMismatch> {
        check_keyring(self.inner.repository.as_ref(), &self.inner.keyring).await
    }

    /// Re-wraps every data key under the active version (see [`rotate`]). The service keeps serving
    /// meanwhile: rotation changes no secret, so nothing cached goes stale.
    pub async fn rotate(
        &self,
        options: &RotationOptions,
        progress: impl FnMut(&RotationProgress) + Send,
    ) -> ServiceResult<RotationReport> {
        Ok(rotate(
            Arc::clone(&self.inner.repository),
            Arc::clone(&self.inner.keyring),
            options,
            progress,
        )
        .await?)
    }

    /// Decrypts every credential of every organization and lists those that fail (`byoc keys check`).
    pub async fn check_all(&self) -> ServiceResult<CheckReport> {
        Ok(check_all(
            Arc::clone(&self.inner.repository),
            Arc::clone(&self.inner.keyring),
            CHECK_BATCH,
        )
        .await?)
    }
}
