//! The audit log through the service: reading it, queuing events, waiting for them to be written, and the
//! graceful shutdown that writes what is left.

use super::*;

impl CredentialService {
    /// The organization's audit log, newest first, after writing the events still queued (best effort; not
    /// tried while the database is in doubt, when the queue waits for it to come back anyway).
    pub async fn audit_events(
        &self,
        tenant: &Tenant,
        page: AuditPage,
    ) -> ServiceResult<Vec<AuditEvent>> {
        self.matching_audit_events(tenant, &AuditFilter::default(), page)
            .await
    }

    /// The organization's audit events that match `filter`, newest first, one page, after writing the events
    /// still queued (as [`CredentialService::audit_events`]).
    pub async fn matching_audit_events(
        &self,
        tenant: &Tenant,
        filter: &AuditFilter,
        page: AuditPage,
    ) -> ServiceResult<Vec<AuditEvent>> {
        if self.database_in_doubt() {
            tracing::debug!(
                "database in doubt: listing the audit log without writing the queued events first"
            );
        } else if let Err(error) = self.inner.audit.flush().await {
            tracing::warn!(%error, "listing the audit log before queued events were written");
        }
        Ok(self
            .inner
            .repository
            .list_matching_audit_events(tenant, filter, page)
            .await?)
    }

    /// Checks the organization's audit hash chain (any member or service), after writing the events still
    /// queued (best effort, as [`CredentialService::audit_events`]).
    pub async fn verify_audit_chain(&self, tenant: &Tenant) -> ServiceResult<AuditChainReport> {
        if !self.database_in_doubt() {
            if let Err(error) = self.inner.audit.flush().await {
                tracing::warn!(%error, "verifying the audit chain before queued events were written");
            }
        }
        Ok(self.inner.repository.verify_audit_chain(tenant).await?)
    }

    /// Waits until every audit event queued before this call is written.
    pub async fn flush_audit(&self) -> Result<(), AuditError> {
        self.inner.audit.flush().await
    }

    /// Audit events queued and not yet written (a metric).
    pub fn pending_audit_events(&self) -> usize {
        self.inner.audit.pending()
    }

    /// Graceful shutdown: stops following changes, writes every queued audit event and stops the writer.
    /// Call it once, after the last request; events recorded afterwards are dropped with an error log.
    pub async fn shutdown(&self) -> Result<(), AuditError> {
        let followers: Vec<JoinHandle<()>> = std::mem::take(
            &mut *self
                .inner
                .followers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for follower in followers {
            follower.abort();
            let _ = follower.await;
        }
        self.inner.audit.shutdown().await
    }

    /// Queues an audit event (never waits).
    pub(super) fn record(
        &self,
        tenant: &Tenant,
        action: &AuditAction,
        credential_id: Option<CredentialId>,
        credential_type: Option<CredentialType>,
        detail: serde_json::Value,
    ) {
        self.inner.audit.record(
            tenant.clone(),
            NewAuditEvent {
                action: action.clone(),
                credential_id,
                credential_type,
                detail,
            },
        );
    }

    /// After a change: drops the cached (org, type), audits the change and waits for the event to be
    /// written. A write failure is logged; the event stays queued and is retried.
    pub(super) async fn changed(
        &self,
        tenant: &Tenant,
        action: &AuditAction,
        metadata: &CredentialMetadata,
        detail: serde_json::Value,
    ) {
        self.inner
            .invalidate(metadata.org_id, metadata.credential_type)
            .await;
        self.record(
            tenant,
            action,
            Some(metadata.id),
            Some(metadata.credential_type),
            detail,
        );
        if let Err(error) = self.inner.audit.flush().await {
            tracing::warn!(%error, action = action.as_str(), "audit event queued for retry");
        }
    }
}
