//! Following the changes made by other replicas (the store's [`ChangeListener`]): credentials, member roles
//! and organizations.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

impl CredentialService {
    /// Follows the changes made by any replica or straight in the database (Postgres `LISTEN`): each
    /// notification drops that (organization, type), member role or organization from the caches, and while
    /// the listener is live roles and organizations are served from them; after a lost connection the cache is not trusted (see the module
    /// docs: database outage) until the listener is back, and then dropped. Returns once listening, `false`
    /// when the store reports no changes (SQLite: one process). Stopped by [`CredentialService::shutdown`],
    /// which must run before the store is closed.
    pub async fn follow_changes(&self) -> ServiceResult<bool> {
        let Some(listener) = self.inner.repository.listen_for_changes().await? else {
            return Ok(false);
        };
        self.inner.forget_members_and_organizations();
        self.inner.following.store(true, Ordering::Release);
        let task = tokio::spawn(follow(Arc::downgrade(&self.inner), listener));
        self.inner
            .followers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
        Ok(true)
    }
}

/// First wait before listening again after the listener lost its connection; doubled up to 5 s.
pub(super) const RELISTEN_DELAY: Duration = Duration::from_millis(100);

/// The change-following task: invalidates on every notification; on a lost connection stops trusting the
/// cache (lookups read the database, and fall back to the cache only when it cannot answer) and listens
/// again, then drops everything cached, since notifications may have been missed. Ends when the service is
/// gone.
pub(super) async fn follow(service: Weak<Inner>, mut listener: Box<dyn ChangeListener>) {
    loop {
        let received = listener.recv().await;
        let Some(inner) = service.upgrade() else {
            return;
        };
        match received {
            Ok(Some(StoreChange::Credential(change))) => {
                inner
                    .invalidate(change.org_id, change.credential_type)
                    .await;
                continue;
            }
            Ok(Some(StoreChange::Member { org_id, user_id })) => {
                inner.invalidate_member(org_id, user_id).await;
                continue;
            }
            Ok(Some(StoreChange::Organization { org_id })) => {
                inner.invalidate_organization(org_id).await;
                continue;
            }
            Ok(None) => tracing::warn!("credential change listener lost its connection"),
            Err(error) => tracing::warn!(%error, "credential change listener failed"),
        }
        inner.cache_trusted.store(false, Ordering::Release);
        inner.following.store(false, Ordering::Release);
        inner.generation.fetch_add(1, Ordering::AcqRel);
        let repository = Arc::clone(&inner.repository);
        drop(inner);
        let mut delay = RELISTEN_DELAY;
        listener = loop {
            match repository.listen_for_changes().await {
                Ok(Some(listener)) => break listener,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for credential changes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(Duration::from_secs(5));
                }
            }
        };
        let Some(inner) = service.upgrade() else {
            return;
        };
        inner.invalidate_all();
        inner.forget_members_and_organizations();
        inner.cache_trusted.store(true, Ordering::Release);
        inner.following.store(true, Ordering::Release);
    }
}
