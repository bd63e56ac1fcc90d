//! Storing a refresh token Google rotated during a use: the one envelope write a member or service may
//! make (the SQLite twin of Postgres' `byoc_replace_rotated_envelope`).

use std::num::NonZeroU32;

use crate::access::Need;
use crate::error::StoreResult;
use crate::model::{CredentialMetadata, CredentialType, EncryptedEnvelope};
use crate::rows::credential_metadata;
use crate::tenant::{CredentialId, Tenant};

use super::{key_version_to_db, select_credential_metadata, SqliteStore};

impl SqliteStore {
    /// See [`crate::CredentialRepository::replace_rotated_envelope`].
    pub(super) async fn replace_rotated_envelope_row(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        expected: &EncryptedEnvelope,
        replacement: &EncryptedEnvelope,
        encryption_key_version: NonZeroU32,
    ) -> StoreResult<Option<CredentialMetadata>> {
        let (mut transaction, _) = self
            .begin_write_checked(tenant, Need::MemberOrService)
            .await?;
        let updated = sqlx::query(
            "UPDATE organization_api_credentials SET encrypted_data = ?, encryption_key_version = ? \
             WHERE id = ? AND org_id = ? AND credential_type = ? AND is_active = 1 AND encrypted_data = ?",
        )
        .bind(replacement.as_bytes())
        .bind(key_version_to_db(encryption_key_version))
        .bind(id.to_string())
        .bind(tenant.org_id.to_string())
        .bind(CredentialType::GoogleCalendar.as_str())
        .bind(expected.as_bytes())
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        if updated == 0 {
            transaction.commit().await?;
            return Ok(None);
        }
        let row = select_credential_metadata(&mut transaction, tenant.org_id, id).await?;
        transaction.commit().await?;
        credential_metadata(&row).map(Some)
    }
}
