//! Change notifications (Postgres `LISTEN`), so that every replica can drop cached secrets, member roles and
//! organizations within moments of a change made by another one (or by anyone writing the database).

use async_trait::async_trait;
use sqlx::postgres::PgListener;

use crate::error::{StoreError, StoreResult};
use crate::model::StoreChange;
use crate::repository::ChangeListener;

use super::PostgresStore;

/// The channel the database notifies on every credential, member and organization change, whoever writes
/// (the baseline's notify triggers). Key rotation does not notify: it changes no secret.
pub const CREDENTIAL_CHANGES_CHANNEL: &str = "byoc_credential_changes";

/// A dedicated connection listening on [`CREDENTIAL_CHANGES_CHANNEL`].
#[derive(Debug)]
pub struct CredentialChangeListener {
    listener: PgListener,
}

impl PostgresStore {
    /// Opens a listening connection for credential changes. The listener uses one of the pool's connections
    /// while it lives: drop it before [`PostgresStore::close`], which waits for every connection.
    pub async fn listen_credential_changes(&self) -> StoreResult<CredentialChangeListener> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen(CREDENTIAL_CHANGES_CHANNEL).await?;
        Ok(CredentialChangeListener { listener })
    }
}

#[async_trait]
impl ChangeListener for CredentialChangeListener {
    async fn recv(&mut self) -> StoreResult<Option<StoreChange>> {
        let Some(notification) = self.listener.try_recv().await? else {
            return Ok(None);
        };
        serde_json::from_str(notification.payload())
            .map(Some)
            .map_err(|_| StoreError::internal("a change notification could not be read"))
    }
}
