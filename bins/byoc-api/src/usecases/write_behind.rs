//! [`WriteBehind`]: the records that follow a provider call — the day's provider-call counter and the
//! accepted SMS — when the database cannot take them at once.
//!
//! The provider call has happened and cannot be undone, so its records must not be lost to a database
//! outage, and the request that made it must not wait for the pool's timeout either. A record is written
//! at once while the database answers. When it does not (the write fails as unavailable, or the credential
//! service reports the database in doubt because its change listener lost the connection) the record is
//! queued, and so is every later one until the queue is empty again, which keeps them in order. A
//! background task writes the queue, retrying with backoff until the database is back, and
//! [`WriteBehind::shutdown`] writes what is left at graceful shutdown (within a grace period). The queue
//! length is the gauge `byoc_write_behind_pending`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use byoc_credential_store::{
    CredentialRepository, CredentialService, CredentialType, NewSmsMessage, StoreError,
    StoreResult, Tenant,
};
use chrono::NaiveDate;
use prometheus::IntGauge;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::plumbing::error::CauseChain;
use crate::plumbing::metrics::Metrics;
use crate::usecases::usage::DailyCounters;

/// First wait before a queued record is tried again; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between two tries of a queued record.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A record that follows a provider call.
#[derive(Debug)]
pub enum DeferredWrite {
    /// One provider call for the organization's daily counter.
    ProviderCall {
        /// The organization (and the caller it acted for).
        tenant: Tenant,
        /// The provider called.
        provider: CredentialType,
        /// The UTC day of the call.
        day: NaiveDate,
        /// Whether the call failed.
        failed: bool,
    },
    /// An SMS the provider accepted, so that its status webhook can stamp the delivery.
    SentSms {
        /// The organization (and the caller it acted for).
        tenant: Tenant,
        /// The message as recorded.
        record: NewSmsMessage,
    },
}

impl DeferredWrite {
    fn name(&self) -> &'static str {
        match self {
            DeferredWrite::ProviderCall { .. } => "provider call counter",
            DeferredWrite::SentSms { .. } => "sent SMS record",
        }
    }
}

/// Writes provider-call records now, or later when the database cannot take them (see the module docs).
pub struct WriteBehind {
    writer: Arc<Writer>,
    credential_service: CredentialService,
    sender: Mutex<Option<mpsc::UnboundedSender<DeferredWrite>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// What the foreground and the background task share.
struct Writer {
    repository: Arc<dyn CredentialRepository>,
    counters: Arc<DailyCounters>,
    /// Records queued and not yet written (the `byoc_write_behind_pending` gauge).
    queued: IntGauge,
}

impl WriteBehind {
    /// Registers the queue gauge and starts the background writer on the current tokio runtime.
    pub fn start(
        repository: Arc<dyn CredentialRepository>,
        counters: Arc<DailyCounters>,
        credential_service: CredentialService,
        metrics: &Metrics,
    ) -> Result<WriteBehind, prometheus::Error> {
        let queued = IntGauge::new(
            "write_behind_pending",
            "Provider-call records (usage counters, sent SMS) queued while the database was unavailable",
        )?;
        metrics.register(Box::new(queued.clone()))?;
        let writer = Arc::new(Writer {
            repository,
            counters,
            queued,
        });
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(drain(Arc::clone(&writer), receiver));
        Ok(WriteBehind {
            writer,
            credential_service,
            sender: Mutex::new(Some(sender)),
            task: Mutex::new(Some(task)),
        })
    }

    /// Writes `write` now when the database answers and nothing is queued; otherwise queues it. Never fails
    /// the request: a record the store refuses for good (not an outage) is logged and dropped.
    pub async fn submit(&self, write: DeferredWrite) {
        if self.pending() == 0 && !self.credential_service.database_in_doubt() {
            match self.writer.apply(&write).await {
                Ok(()) => return,
                Err(StoreError::Unavailable(_)) => {}
                Err(error) => {
                    tracing::warn!(error = %CauseChain(&error), record = write.name(), "cannot write a provider-call record");
                    return;
                }
            }
        }
        self.enqueue(write);
    }

    /// Records queued and not yet written.
    pub fn pending(&self) -> usize {
        usize::try_from(self.writer.queued.get()).unwrap_or(0)
    }

    /// Stops taking records and writes what is queued, waiting at most `grace`; what is still queued then is
    /// logged as lost. Call it once, after the last request.
    pub async fn shutdown(&self, grace: Duration) {
        drop(lock(&self.sender).take());
        let Some(task) = lock(&self.task).take() else {
            return;
        };
        let abort = task.abort_handle();
        if tokio::time::timeout(grace, task).await.is_err() {
            abort.abort();
            tracing::error!(
                lost = self.pending(),
                "provider-call records still queued at shutdown (database unavailable): not written"
            );
        }
    }

    fn enqueue(&self, write: DeferredWrite) {
        let sender = lock(&self.sender);
        let Some(sender) = sender.as_ref() else {
            tracing::error!(
                record = write.name(),
                "provider-call record after shutdown: not written"
            );
            return;
        };
        let name = write.name();
        self.writer.queued.inc();
        if sender.send(write).is_err() {
            self.writer.done();
            tracing::error!(
                record = name,
                "provider-call record: the writer has stopped, not written"
            );
        } else {
            tracing::warn!(
                record = name,
                "database unavailable: provider-call record queued"
            );
        }
    }
}

impl Writer {
    async fn apply(&self, write: &DeferredWrite) -> StoreResult<()> {
        match write {
            DeferredWrite::ProviderCall {
                tenant,
                provider,
                day,
                failed,
            } => self.counters.count(tenant, *provider, *day, *failed).await,
            DeferredWrite::SentSms { tenant, record } => {
                self.repository.insert_sms_message(tenant, record).await?;
                Ok(())
            }
        }
    }

    fn done(&self) {
        self.queued.dec();
    }
}

/// The background writer: writes each queued record in order, retrying while the database is unavailable.
async fn drain(writer: Arc<Writer>, mut receiver: mpsc::UnboundedReceiver<DeferredWrite>) {
    while let Some(write) = receiver.recv().await {
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            match writer.apply(&write).await {
                Ok(()) => break,
                Err(StoreError::Unavailable(error)) => {
                    tracing::debug!(error = %CauseChain(&error), record = write.name(), "queued record: database still unavailable");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(MAX_RETRY_DELAY);
                }
                Err(error) => {
                    tracing::warn!(error = %CauseChain(&error), record = write.name(), "cannot write a queued provider-call record");
                    break;
                }
            }
        }
        writer.done();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
