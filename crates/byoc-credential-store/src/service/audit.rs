//! The audit batcher: audit events are queued without waiting (no database round trip on the caller's path)
//! and a background task writes them in batches, one `append_audit_events` call per run of consecutive events
//! of one tenant (organization and actor) in an organization: the store writes each event in its tenant's name
//! and at its own time, and the chain keeps the order in which they were recorded. Events that cannot be written stay queued and are retried, except those the store refuses for
//! good (the actor is no longer a member, say), which are logged and dropped; `flush` waits until everything
//! queued before it is written, and `shutdown` writes what is left and stops the task.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::model::NewAuditEvent;
use crate::repository::CredentialRepository;
use crate::tenant::{OrgId, Tenant};

/// Most events taken from the queue for one write.
const MAX_BATCH: usize = 2_000;
/// First wait after a failed write; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Longest wait between retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long the writer waits for more events before writing a batch (unless a flush or shutdown asks
/// sooner), so that a trickle of reads costs one insert per interval rather than one per read.
const LINGER: Duration = Duration::from_millis(20);
/// Failed attempts after which a shutdown gives up on the events still queued.
const SHUTDOWN_ATTEMPTS: u32 = 5;

/// Why audit events could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// Writing failed; the events stay queued and are retried (a flush reports the failure).
    #[error("audit events could not be written ({pending} waiting): {reason}")]
    WriteFailed {
        /// Events waiting to be written.
        pending: usize,
        /// The store's error.
        reason: String,
    },
    /// Shutdown gave up after repeated failures; these events were not written.
    #[error("{lost} audit events could not be written before shutdown: {reason}")]
    Lost {
        /// Events not written.
        lost: usize,
        /// The store's last error.
        reason: String,
    },
    /// The batcher has stopped (after `shutdown`).
    #[error("the audit batcher has stopped")]
    Stopped,
}

/// How late a write must be for its event to note when it was recorded (a database outage, retries): the store
/// stamps every event with the time it writes it.
const NOTE_QUEUED_AFTER: chrono::Duration = chrono::Duration::seconds(1);

/// A queued event: whose, what, and when it was recorded.
struct Queued {
    tenant: Tenant,
    event: NewAuditEvent,
    at: DateTime<Utc>,
}

impl Queued {
    /// The event as written at `now`: when the write comes more than [`NOTE_QUEUED_AFTER`] after the event was
    /// recorded, its detail also says when (`queued_at`, as the service saw it; `at` stays the server's time).
    fn as_written(&self, now: DateTime<Utc>) -> NewAuditEvent {
        let mut event = self.event.clone();
        if now - self.at > NOTE_QUEUED_AFTER {
            if let Some(detail) = event.detail.as_object_mut() {
                detail.insert(
                    "queued_at".to_owned(),
                    serde_json::Value::String(self.at.to_rfc3339_opts(SecondsFormat::Micros, true)),
                );
            }
        }
        event
    }
}

enum Command {
    Event(Queued),
    Flush(oneshot::Sender<Result<(), AuditError>>),
    Shutdown(oneshot::Sender<Result<(), AuditError>>),
}

/// Queues audit events for the background writer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditBatcher {
    sender: mpsc::UnboundedSender<Command>,
    pending: Arc<AtomicUsize>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl AuditBatcher {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn start(repository: Arc<dyn CredentialRepository>) -> AuditBatcher {
        let (sender, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(
            Writer {
                repository,
                pending: Arc::clone(&pending),
                buffer: Vec::new(),
            }
            .run(receiver),
        );
        AuditBatcher {
            sender,
            pending,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Queues an event of `tenant`'s; never waits. After shutdown the event is dropped with an error log.
    pub(crate) fn record(&self, tenant: Tenant, event: NewAuditEvent) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let org_id = tenant.org_id;
        let queued = Queued {
            tenant,
            event,
            at: Utc::now(),
        };
        if self.sender.send(Command::Event(queued)).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(%org_id, "audit event recorded after shutdown was dropped");
        }
    }

    /// Events queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Waits until every event queued before this call is written.
    pub(crate) async fn flush(&self) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Command::Flush(reply))
            .map_err(|_| AuditError::Stopped)?;
        answer.await.map_err(|_| AuditError::Stopped)?
    }

    /// Writes every queued event (retrying a few times on failure) and stops the writer. Later calls, and
    /// events recorded afterwards, get [`AuditError::Stopped`].
    pub(crate) async fn shutdown(&self) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Command::Shutdown(reply))
            .map_err(|_| AuditError::Stopped)?;
        let result = answer.await.map_err(|_| AuditError::Stopped)?;
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        result
    }
}

struct Writer {
    repository: Arc<dyn CredentialRepository>,
    pending: Arc<AtomicUsize>,
    buffer: Vec<Queued>,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Command>) {
        let mut flushes = Vec::new();
        let mut shutdown = None;
        let mut failures = 0u32;
        loop {
            if self.buffer.is_empty() && flushes.is_empty() && shutdown.is_none() {
                match receiver.recv().await {
                    Some(command) => self.take(command, &mut flushes, &mut shutdown),
                    None => return,
                }
            }
            if failures == 0 && flushes.is_empty() && shutdown.is_none() {
                let deadline = tokio::time::Instant::now() + LINGER;
                while self.buffer.len() < MAX_BATCH && flushes.is_empty() && shutdown.is_none() {
                    tokio::select! {
                        command = receiver.recv() => match command {
                            Some(command) => self.take(command, &mut flushes, &mut shutdown),
                            None => break,
                        },
                        () = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
            // Everything already queued joins this write; a shutdown also stops taking new commands, so
            // anything recorded after it is refused by the closed channel.
            while self.buffer.len() < MAX_BATCH && shutdown.is_none() {
                match receiver.try_recv() {
                    Ok(command) => self.take(command, &mut flushes, &mut shutdown),
                    Err(_) => break,
                }
            }
            if shutdown.is_some() {
                receiver.close();
                while let Ok(command) = receiver.try_recv() {
                    self.take(command, &mut flushes, &mut shutdown);
                }
            }
            match self.write().await {
                Ok(()) => {
                    failures = 0;
                    // A flush is answered only when nothing queued before it is left.
                    if self.buffer.is_empty() {
                        for flush in flushes.drain(..) {
                            let _ = flush.send(Ok(()));
                        }
                        if let Some(reply) = shutdown.take() {
                            let _ = reply.send(Ok(()));
                            return;
                        }
                    }
                }
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    let pending = self.buffer.len();
                    tracing::warn!(pending, error = %reason, "audit events could not be written; retrying");
                    for flush in flushes.drain(..) {
                        let _ = flush.send(Err(AuditError::WriteFailed {
                            pending,
                            reason: reason.clone(),
                        }));
                    }
                    if failures >= SHUTDOWN_ATTEMPTS {
                        if let Some(reply) = shutdown.take() {
                            tracing::error!(lost = pending, "audit events lost at shutdown");
                            self.pending.fetch_sub(pending, Ordering::Relaxed);
                            let _ = reply.send(Err(AuditError::Lost {
                                lost: pending,
                                reason,
                            }));
                            return;
                        }
                    }
                    let delay = FIRST_RETRY_DELAY
                        .saturating_mul(1 << failures.min(7))
                        .min(MAX_RETRY_DELAY);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn take(
        &mut self,
        command: Command,
        flushes: &mut Vec<oneshot::Sender<Result<(), AuditError>>>,
        shutdown: &mut Option<oneshot::Sender<Result<(), AuditError>>>,
    ) {
        match command {
            Command::Event(queued) => self.buffer.push(queued),
            Command::Flush(reply) => flushes.push(reply),
            Command::Shutdown(reply) => {
                if let Some(earlier) = shutdown.replace(reply) {
                    let _ = earlier.send(Err(AuditError::Stopped));
                }
            }
        }
    }

    /// Writes the buffer: per organization, each run of consecutive events of one tenant in one call, in the
    /// order they were recorded (the chain keeps that order). What could not be written stays in the buffer,
    /// in order; what the store refuses for good is logged and dropped.
    async fn write(&mut self) -> Result<(), String> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let mut by_org: BTreeMap<OrgId, Vec<(Tenant, Vec<Queued>)>> = BTreeMap::new();
        for queued in self.buffer.drain(..) {
            let runs = by_org.entry(queued.tenant.org_id).or_default();
            match runs.last_mut() {
                Some((last, events)) if *last == queued.tenant => events.push(queued),
                _ => runs.push((queued.tenant.clone(), vec![queued])),
            }
        }
        let now = Utc::now();
        let mut failure = None;
        for (tenant, events) in by_org.into_values().flatten() {
            if failure.is_none() {
                let written: Vec<NewAuditEvent> =
                    events.iter().map(|queued| queued.as_written(now)).collect();
                match self.repository.append_audit_events(&tenant, &written).await {
                    Ok(_) => {
                        self.pending.fetch_sub(events.len(), Ordering::Relaxed);
                        continue;
                    }
                    Err(error @ (StoreError::Forbidden { .. } | StoreError::Denied { .. })) => {
                        tracing::error!(
                            org_id = %tenant.org_id,
                            actor = %tenant.actor,
                            lost = events.len(),
                            %error,
                            "audit events refused by the store were dropped"
                        );
                        self.pending.fetch_sub(events.len(), Ordering::Relaxed);
                        continue;
                    }
                    Err(error) => failure = Some(error.to_string()),
                }
            }
            self.buffer.extend(events);
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use chrono::SubsecRound;

    use super::*;
    use crate::model::AuditAction;
    use crate::tenant::{OrgId, ServiceName};

    fn queued(at: DateTime<Utc>) -> Queued {
        Queued {
            tenant: Tenant::service(OrgId::new_random(), ServiceName::parse("svc").unwrap()),
            event: NewAuditEvent {
                action: AuditAction::parse("read").unwrap(),
                credential_id: None,
                credential_type: None,
                detail: serde_json::json!({"purpose": "sms:test"}),
            },
            at,
        }
    }

    #[test]
    fn a_late_write_notes_when_the_event_was_recorded() {
        let recorded = Utc::now();
        let on_time = queued(recorded).as_written(recorded + chrono::Duration::milliseconds(20));
        assert_eq!(on_time.detail, serde_json::json!({"purpose": "sms:test"}));
        let late = queued(recorded).as_written(recorded + chrono::Duration::seconds(30));
        assert_eq!(late.detail["purpose"], "sms:test");
        assert_eq!(
            late.detail["queued_at"]
                .as_str()
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .map(|time| time.with_timezone(&Utc)),
            Some(recorded.trunc_subsecs(6))
        );
    }
}
