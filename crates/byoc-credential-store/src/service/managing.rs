//! Storing, listing, editing and retiring credentials: the owner's and admin's changes, each audited.

use super::*;

impl CredentialService {
    /// Encrypts `payload` (bound to org, type and a fresh id) and stores it, `pending`, created by the
    /// tenant's user (owner or admin). Audited as `created`.
    pub async fn store<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        payload: &P,
        display_name: DisplayName,
    ) -> ServiceResult<CredentialMetadata> {
        let credential = self.new_credential(tenant.org_id, payload, display_name)?;
        let metadata = self
            .inner
            .repository
            .insert_credential(tenant, &credential)
            .await?;
        self.changed(
            tenant,
            &self.inner.actions.created,
            &metadata,
            serde_json::json!({"display_name": metadata.display_name}),
        )
        .await;
        Ok(metadata)
    }

    /// Operator (`byoc import-env`): encrypts and stores `payload` in `org_id` with no user, audited as
    /// `created` by the service `actor` in the same transaction, with detail `display_name`,
    /// `source: import-env`, `os_user` (who ran the command on the operator's machine, as the caller read it)
    /// and, on Postgres, `session_user` (the database login, set by the database). When the organization
    /// already has an active credential of the type for the same provider account (the same Twilio Account
    /// SID), nothing is written and [`Imported::AlreadyPresent`] names it; the stored secret is not compared.
    /// On Postgres the store must be the operator's.
    pub async fn import<P: CredentialPayload>(
        &self,
        org_id: OrgId,
        actor: ServiceName,
        os_user: &str,
        payload: &P,
        display_name: DisplayName,
    ) -> ServiceResult<Imported> {
        let credential = self.new_credential(org_id, payload, display_name)?;
        let detail = serde_json::json!({
            "display_name": credential.display_name.as_str(),
            "source": "import-env",
            "os_user": os_user,
        });
        let imported = self
            .inner
            .repository
            .operator_import_credential(org_id, &credential, &actor, &detail)
            .await?;
        if let Imported::Created(metadata) = &imported {
            self.inner
                .invalidate(metadata.org_id, metadata.credential_type)
                .await;
        }
        Ok(imported)
    }

    /// Every credential of the organization (active or not), metadata only, newest first.
    pub async fn list(&self, tenant: &Tenant) -> ServiceResult<Vec<CredentialMetadata>> {
        Ok(self.inner.repository.list_credentials(tenant).await?)
    }

    /// One credential's metadata (`Store(NotFound)` for a missing one or another organization's).
    pub async fn metadata(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> ServiceResult<CredentialMetadata> {
        Ok(self
            .inner
            .repository
            .get_credential(tenant, id)
            .await?
            .metadata)
    }

    /// Replaces a credential's payload with `payload` (owner or admin), sealed with a fresh data key under the
    /// active key version and bound to the same (org, type, id): for a provider that handed back a changed
    /// credential while it was verified. Audited as `updated` with `reason`.
    pub async fn replace_payload(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        payload: &CredentialJson,
        reason: &str,
    ) -> ServiceResult<CredentialMetadata> {
        let current = self.metadata(tenant, id).await?;
        let (envelope, version) = self.inner.seal(
            tenant.org_id,
            current.credential_type,
            id,
            payload.as_bytes(),
        )?;
        let metadata = self
            .inner
            .repository
            .update_envelope(tenant, id, &envelope, version)
            .await?;
        self.changed(
            tenant,
            &self.inner.actions.updated,
            &metadata,
            serde_json::json!({ "reason": reason }),
        )
        .await;
        Ok(metadata)
    }

    /// Deactivates a credential (owner or admin): it is never served again, here at once and on other
    /// replicas within a second. Audited as `deactivated`.
    pub async fn deactivate(
        &self,
        tenant: &Tenant,
        id: CredentialId,
    ) -> ServiceResult<CredentialMetadata> {
        let metadata = self
            .inner
            .repository
            .deactivate_credential(tenant, id)
            .await?;
        self.changed(
            tenant,
            &self.inner.actions.deactivated,
            &metadata,
            serde_json::json!({}),
        )
        .await;
        Ok(metadata)
    }

    /// Deletes a credential and its ciphertext for good (owner); its audit entries stay. Audited as
    /// `purged`.
    pub async fn purge(&self, tenant: &Tenant, id: CredentialId) -> ServiceResult<()> {
        let metadata = self.metadata(tenant, id).await?;
        self.inner.repository.purge_credential(tenant, id).await?;
        self.changed(
            tenant,
            &self.inner.actions.purged,
            &metadata,
            serde_json::json!({"display_name": metadata.display_name}),
        )
        .await;
        Ok(())
    }

    pub(super) fn new_credential<P: CredentialPayload>(
        &self,
        org_id: OrgId,
        payload: &P,
        display_name: DisplayName,
    ) -> ServiceResult<NewCredential> {
        let credential_type = P::KIND;
        let id = CredentialId::new_random();
        let json = payload.to_json_bytes();
        let (encrypted_data, encryption_key_version) =
            self.inner
                .seal(org_id, credential_type, id, json.as_bytes())?;
        Ok(NewCredential {
            id,
            credential_type,
            display_name,
            public_hint: PublicHint::parse(&payload.public_hint()).ok(),
            provider_account_id: payload
                .provider_account_id()
                .map(ProviderAccountId::parse)
                .transpose()
                .map_err(crate::StoreError::from)?,
            encrypted_data,
            encryption_key_version,
        })
    }
}
