//! Storing a refresh token Google rotated during a use, through `byoc_replace_rotated_envelope`
//! (migration 0009): the one envelope write a member or service may make.

use std::num::NonZeroU32;

use crate::access::Need;
use crate::error::StoreResult;
use crate::model::{CredentialMetadata, EncryptedEnvelope};
use crate::rows::{credential_metadata, CREDENTIAL_COLUMNS};
use crate::tenant::{CredentialId, Tenant};

use super::{key_version_to_db, PostgresStore};

impl PostgresStore {
    /// See [`crate::CredentialRepository::replace_rotated_envelope`].
    pub(super) async fn replace_rotated_envelope_row(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        expected: &EncryptedEnvelope,
        replacement: &EncryptedEnvelope,
        encryption_key_version: NonZeroU32,
    ) -> StoreResult<Option<CredentialMetadata>> {
        let (mut transaction, _) = self.begin_checked(tenant, Need::MemberOrService).await?;
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM byoc_replace_rotated_envelope($1, $2, $3, $4)"
        ))
        .bind(id.as_uuid())
        .bind(expected.as_bytes())
        .bind(replacement.as_bytes())
        .bind(key_version_to_db(encryption_key_version))
        .fetch_optional(&mut *transaction)
        .await?;
        transaction.commit().await?;
        row.as_ref().map(credential_metadata).transpose()
    }
}
