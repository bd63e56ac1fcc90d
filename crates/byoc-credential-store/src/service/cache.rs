//! The outage-aware cache: decrypted credentials per (organization, type), and the member roles and
//! organizations last read, served from memory only as the module docs of [`super`] describe.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::*;

/// Loads retried when an invalidation overlapped them, before reading past the cache.
pub(super) const LOAD_ATTEMPTS: usize = 3;

pub(super) type CacheKey = (OrgId, CredentialType);

/// Where an answer came from: the store, or a cache because the store could not answer. A last-known
/// answer is never cached again (that would extend it past its TTL).
pub(super) enum Answer<T> {
    /// Read from the store now.
    Fresh(T),
    /// Served from a cache during a database outage.
    LastKnown(T),
}

impl<T> Answer<T> {
    pub(super) fn into_inner(self) -> T {
        match self {
            Answer::Fresh(value) | Answer::LastKnown(value) => value,
        }
    }
}

/// Why a cached load did not produce a value.
#[derive(Clone)]
pub(super) enum LoadError {
    /// An invalidation overlapped the load: its value may be stale and is not cached.
    Stale,
    /// The load failed.
    Failed(CredentialServiceError),
}

/// Credential lookups since start: how many the cache answered and how many read the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answered from the cache of decrypted credentials.
    pub hits: u64,
    /// Read from the store and decrypted (a miss, or the cache off or not trusted).
    pub misses: u64,
    /// Answered from the cache because the database could not answer (an outage): credentials, member
    /// roles and organizations served as last read, within their TTL.
    pub outage_answers: u64,
}

impl CredentialService {
    /// Credential lookups since start, answered from the cache and not (for the API's metrics).
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.cache_hits.load(Ordering::Relaxed),
            misses: self.inner.cache_misses.load(Ordering::Relaxed),
            outage_answers: self.inner.outage_answers.load(Ordering::Relaxed),
        }
    }

    /// Whether the database may be unreachable: the change listener (Postgres, after
    /// [`CredentialService::follow_changes`]) lost its connection and does not listen again yet. Callers can
    /// queue writes instead of waiting for the pool then. Always false without a listener.
    pub fn database_in_doubt(&self) -> bool {
        !self.inner.cache_trusted.load(Ordering::Acquire)
    }

    /// The caller's role in the organization (`None`: not a member; services have none). While changes are
    /// followed ([`CredentialService::follow_changes`]) a role is served from the cache, which every member
    /// change, on any replica or straight in the database, invalidates within moments; a miss costs one
    /// read. Otherwise it is read from the store on every call. When the store cannot answer (a database
    /// outage), the role last read for this user is answered until the cache TTL, so members keep using
    /// cached credentials through the outage.
    pub async fn member_role(&self, tenant: &Tenant) -> ServiceResult<Option<Role>> {
        let inner = &self.inner;
        let read = async { Ok(inner.repository.member_role(tenant).await?) };
        let (Some(roles), Actor::User(user_id)) = (&inner.roles, &tenant.actor) else {
            return read.await;
        };
        let key = (tenant.org_id, *user_id);
        if inner.follows_changes() {
            if let Some(role) = roles.get(&key).await {
                return Ok(Some(role));
            }
        }
        let generation = inner.generation.load(Ordering::Acquire);
        match inner
            .fresh_or_last_known(read, roles.get(&key).await.map(Some))
            .await?
        {
            Answer::Fresh(Some(role)) => {
                if inner.generation.load(Ordering::Acquire) == generation {
                    roles.insert(key, role).await;
                }
                Ok(Some(role))
            }
            Answer::Fresh(None) => {
                roles.invalidate(&key).await;
                Ok(None)
            }
            Answer::LastKnown(role) => Ok(role),
        }
    }

    /// The caller's organization (name, hot-lead threshold): from the cache while changes are followed, else
    /// read from the store on every call; through a database outage, the organization as last read until
    /// the cache TTL (as [`CredentialService::member_role`]).
    pub async fn organization(&self, tenant: &Tenant) -> ServiceResult<Organization> {
        let inner = &self.inner;
        let read = async { Ok(inner.repository.get_organization(tenant).await?) };
        let Some(organizations) = &inner.organizations else {
            return read.await;
        };
        if inner.follows_changes() && tenant.actor.user_id().is_some() {
            // Served only to a member the role cache vouches for, as the store would check.
            if let (Some(organization), Some(Some(_))) = (
                organizations.get(&tenant.org_id).await,
                self.cached_role(tenant).await,
            ) {
                return Ok(organization);
            }
        }
        let generation = inner.generation.load(Ordering::Acquire);
        match inner
            .fresh_or_last_known(read, organizations.get(&tenant.org_id).await)
            .await?
        {
            Answer::Fresh(organization) => {
                if inner.generation.load(Ordering::Acquire) == generation {
                    organizations
                        .insert(tenant.org_id, organization.clone())
                        .await;
                }
                Ok(organization)
            }
            Answer::LastKnown(organization) => Ok(organization),
        }
    }

    /// The caller's cached role (`None`: nothing cached).
    async fn cached_role(&self, tenant: &Tenant) -> Option<Option<Role>> {
        let (roles, user_id) = (self.inner.roles.as_ref()?, tenant.actor.user_id()?);
        roles.get(&(tenant.org_id, user_id)).await.map(Some)
    }

    /// Drops every cached credential.
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    pub(super) async fn lookup(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> ServiceResult<Arc<StoredSecret>> {
        let inner = &self.inner;
        let Some(cache) = inner.cache.as_ref() else {
            inner.cache_misses.fetch_add(1, Ordering::Relaxed);
            return inner.load(tenant, credential_type).await;
        };
        let key = (tenant.org_id, credential_type);
        if !inner.cache_trusted.load(Ordering::Acquire) {
            inner.cache_misses.fetch_add(1, Ordering::Relaxed);
            let last_known = cache.get(&key).await;
            return inner
                .fresh_or_last_known(inner.load(tenant, credential_type), last_known)
                .await
                .map(Answer::into_inner);
        }
        if let Some(hit) = cache.get(&key).await {
            inner.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        inner.cache_misses.fetch_add(1, Ordering::Relaxed);
        for _ in 0..LOAD_ATTEMPTS {
            let generation = inner.generation.load(Ordering::Acquire);
            let load = async {
                let stored = inner
                    .load(tenant, credential_type)
                    .await
                    .map_err(LoadError::Failed)?;
                if inner.generation.load(Ordering::Acquire) == generation {
                    Ok(stored)
                } else {
                    Err(LoadError::Stale)
                }
            };
            match cache.try_get_with(key, load).await {
                Ok(stored) => return Ok(stored),
                Err(error) => match error.as_ref() {
                    LoadError::Stale => continue,
                    LoadError::Failed(error) => return Err(error.clone()),
                },
            }
        }
        inner.load(tenant, credential_type).await
    }
}

impl Inner {
    /// The store's answer from `read`; when the store cannot give one (unavailable, or no answer within
    /// [`OUTAGE_READ_WAIT`] while the change listener is disconnected) and a `last_known` answer is held,
    /// that answer (logged and counted). Without one, waits for `read` whatever it takes.
    pub(super) async fn fresh_or_last_known<T>(
        &self,
        read: impl std::future::Future<Output = ServiceResult<T>>,
        last_known: Option<T>,
    ) -> ServiceResult<Answer<T>> {
        let Some(last_known) = last_known else {
            return read.await.map(Answer::Fresh);
        };
        let trusted = self.cache_trusted.load(Ordering::Acquire);
        let recently_unreachable = !trusted && self.unreachable_within(OUTAGE_MEMORY);
        let answer = if trusted {
            Some(read.await)
        } else if recently_unreachable {
            None
        } else {
            tokio::time::timeout(OUTAGE_READ_WAIT, read).await.ok()
        };
        let why = match answer {
            Some(Err(error)) if error.is_database_unavailable() => error.to_string(),
            Some(answer) => return answer.map(Answer::Fresh),
            None if recently_unreachable => {
                "the database did not answer a read just before".to_owned()
            }
            None => format!("no answer within {OUTAGE_READ_WAIT:?}"),
        };
        self.outage_answers.fetch_add(1, Ordering::Relaxed);
        if recently_unreachable {
            tracing::debug!(error = %why, "database unavailable: answering from the cache");
        } else {
            tracing::warn!(
                error = %why,
                "database unavailable: answering from the cache (as last read, within its TTL)"
            );
        }
        self.unreachable_at_ms.store(
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        Ok(Answer::LastKnown(last_known))
    }

    /// Whether a read found the database unavailable less than `window` ago.
    pub(super) fn unreachable_within(&self, window: Duration) -> bool {
        let at = self.unreachable_at_ms.load(Ordering::Acquire);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        at != 0 && now.saturating_sub(at) < u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
    }

    /// Reads the usable credential of a type and decrypts it.
    pub(super) async fn load(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> ServiceResult<Arc<StoredSecret>> {
        let record = self
            .repository
            .get_active_credential(tenant, credential_type)
            .await?
            .filter(|record| is_usable(&record.metadata))
            .ok_or(CredentialServiceError::NotConfigured {
                provider: credential_type,
            })?;
        let plaintext = self.open(
            tenant.org_id,
            credential_type,
            record.metadata.id,
            &record.encrypted_data,
        )?;
        Ok(Arc::new(StoredSecret {
            metadata: record.metadata,
            plaintext,
        }))
    }

    pub(super) async fn invalidate(&self, org_id: OrgId, credential_type: CredentialType) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.invalidate(&(org_id, credential_type)).await;
        }
    }

    pub(super) fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    /// Drops a member's cached role (added, given another role or removed).
    pub(super) async fn invalidate_member(&self, org_id: OrgId, user_id: UserId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(roles) = &self.roles {
            roles.invalidate(&(org_id, user_id)).await;
        }
    }

    /// Drops a cached organization (changed or removed).
    pub(super) async fn invalidate_organization(&self, org_id: OrgId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(organizations) = &self.organizations {
            organizations.invalidate(&org_id).await;
        }
    }

    /// Drops every cached role and organization (notifications may have been missed).
    pub(super) fn forget_members_and_organizations(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(roles) = &self.roles {
            roles.invalidate_all();
        }
        if let Some(organizations) = &self.organizations {
            organizations.invalidate_all();
        }
    }

    /// Whether member roles and organizations may be served from their caches: a change listener is live.
    pub(super) fn follows_changes(&self) -> bool {
        self.following.load(Ordering::Acquire) && self.cache_trusted.load(Ordering::Acquire)
    }
}

/// Whether a stored credential may be served: active and verified.
pub(super) fn is_usable(metadata: &CredentialMetadata) -> bool {
    metadata.is_active && metadata.verification_status == VerificationStatus::Verified
}

/// A cache with the configured TTL and capacity, or none when the TTL is zero.
pub(super) fn new_cache<K, V>(config: &ServiceConfig) -> Option<Cache<K, V>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    (!config.cache_ttl.is_zero()).then(|| {
        Cache::builder()
            .time_to_live(config.cache_ttl)
            .max_capacity(config.cache_capacity)
            .build()
    })
}
