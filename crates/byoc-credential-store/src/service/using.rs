//! Using credentials: handing out an organization's credential for a purpose (cached, audited), the
//! legacy fallback, an any-status read for reconnecting, and storing a refresh token Google rotated during a use.

use std::sync::atomic::Ordering;

use super::*;

impl CredentialService {
    /// The organization's active, verified credential of `credential_type`, decrypted, for `purpose`
    /// (such as `sms:hot_lead`). Audited as `read` with the purpose (queued: a cached read costs no
    /// database round trip). With no usable credential: [`CredentialServiceError::NotConfigured`], except
    /// for Twilio in an organization allowed the legacy fallback, which gets the legacy credential (logged,
    /// audited as `legacy_fallback_used`, counted).
    pub async fn get_credential(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
        purpose: &Purpose,
    ) -> ServiceResult<DecryptedCredential> {
        let credential = self.usable_credential(tenant, credential_type).await?;
        self.audit_use(tenant, &credential, purpose);
        Ok(credential)
    }

    /// [`CredentialService::get_credential`] parsed as the provider's payload type `P` (for example
    /// `TwilioCredential`).
    pub async fn get_payload<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        purpose: &Purpose,
    ) -> ServiceResult<UsableCredential<P>> {
        let credential = self.get_credential(tenant, P::KIND, purpose).await?;
        Ok(UsableCredential {
            credential_id: credential.id(),
            legacy_fallback: credential.is_legacy_fallback(),
            payload: credential.parse()?,
        })
    }

    /// [`CredentialService::get_payload`] for a caller that uses the credential only to authenticate a request
    /// signed with it (Twilio's status callback): the read is audited only when `authenticates` accepts the
    /// payload. `Ok(None)` when it does not, and nothing is audited, so forged requests leave no trace in the
    /// organization's audit log (count them elsewhere).
    pub async fn get_payload_if<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        purpose: &Purpose,
        authenticates: impl FnOnce(&P) -> bool,
    ) -> ServiceResult<Option<UsableCredential<P>>> {
        let credential = self.usable_credential(tenant, P::KIND).await?;
        let payload: P = credential.parse()?;
        if !authenticates(&payload) {
            return Ok(None);
        }
        self.audit_use(tenant, &credential, purpose);
        Ok(Some(UsableCredential {
            credential_id: credential.id(),
            legacy_fallback: credential.is_legacy_fallback(),
            payload,
        }))
    }

    /// The provider's id of the account (Twilio's Account SID; not a secret) of the credential that
    /// [`CredentialService::get_credential`] would serve for `credential_type`, known without decrypting or
    /// auditing anything: a caller can refuse a request made for another account before it decrypts. `None`
    /// when the credential was stored without one; the legacy fallback's account for
    /// an organization allowed it; [`CredentialServiceError::NotConfigured`] without a usable credential.
    pub async fn provider_account_id(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> ServiceResult<Option<String>> {
        let inner = &self.inner;
        if let Some(cache) = inner.cache.as_ref() {
            if inner.cache_trusted.load(Ordering::Acquire) {
                if let Some(hit) = cache.get(&(tenant.org_id, credential_type)).await {
                    return Ok(hit.metadata.provider_account_id.clone());
                }
            }
        }
        let usable = inner
            .repository
            .get_active_credential(tenant, credential_type)
            .await?
            .filter(|record| is_usable(&record.metadata));
        if let Some(record) = usable {
            return Ok(record.metadata.provider_account_id);
        }
        inner
            .fallback
            .as_ref()
            .filter(|_| credential_type == CredentialType::Twilio)
            .and_then(|fallback| fallback.account_sid_for(tenant.org_id))
            .map(|account_sid| Some(account_sid.to_owned()))
            .ok_or(CredentialServiceError::NotConfigured {
                provider: credential_type,
            })
    }

    /// The credential [`CredentialService::get_credential`] serves, not audited yet: the organization's usable
    /// one, or for Twilio the legacy fallback when the organization is allowed it.
    pub(super) async fn usable_credential(
        &self,
        tenant: &Tenant,
        credential_type: CredentialType,
    ) -> ServiceResult<DecryptedCredential> {
        match self.lookup(tenant, credential_type).await {
            Ok(stored) => Ok(DecryptedCredential {
                secret: Secret::Stored(stored),
            }),
            Err(CredentialServiceError::NotConfigured { provider })
                if provider == CredentialType::Twilio =>
            {
                let json = self
                    .inner
                    .fallback
                    .as_ref()
                    .and_then(|fallback| fallback.payload_for(tenant.org_id))
                    .ok_or(CredentialServiceError::NotConfigured { provider })?;
                Ok(DecryptedCredential {
                    secret: Secret::Legacy {
                        credential_type,
                        json,
                    },
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Audits one use of `credential` for `purpose` (queued, never waits): `read`, or for the legacy fallback
    /// `legacy_fallback_used`, which is also logged and counted.
    pub(super) fn audit_use(
        &self,
        tenant: &Tenant,
        credential: &DecryptedCredential,
        purpose: &Purpose,
    ) {
        let detail = serde_json::json!({"purpose": purpose.as_str()});
        let credential_type = Some(credential.credential_type());
        match &credential.secret {
            Secret::Stored(stored) => self.record(
                tenant,
                &self.inner.actions.read,
                Some(stored.metadata.id),
                credential_type,
                detail,
            ),
            Secret::Legacy { .. } => {
                if let Some(fallback) = &self.inner.fallback {
                    fallback.count_use();
                }
                tracing::warn!(
                    org_id = %tenant.org_id,
                    purpose = purpose.as_str(),
                    "no usable Twilio credential: using the legacy TWILIO_* credentials (transition fallback)"
                );
                self.record(
                    tenant,
                    &self.inner.actions.legacy_fallback_used,
                    None,
                    credential_type,
                    detail,
                );
            }
        }
    }

    /// For owners and admins: a credential decrypted **whatever its verification status** (pending, failed
    /// or verified), for `purpose`. Reconnecting Google Calendar needs the organization's own OAuth client
    /// precisely when its credential went `failed`, which [`CredentialService::get_payload`] never serves.
    ///
    /// Only active credentials are decrypted: [`CredentialSelector::NewestActive`] answers
    /// [`CredentialServiceError::NotConfigured`] when the organization has no active credential of the type,
    /// [`CredentialSelector::Id`] answers [`CredentialServiceError::Inactive`] for a deactivated one and
    /// `NotConfigured` for one of another type. Members and services get `Store(Forbidden)`. Never cached,
    /// never the legacy fallback. Audited as `read` with the purpose and the verification status found.
    pub async fn get_payload_any_status<P: CredentialPayload>(
        &self,
        tenant: &Tenant,
        which: CredentialSelector,
        purpose: &Purpose,
    ) -> ServiceResult<UsableCredential<P>> {
        let wanted = P::KIND;
        let role = self.inner.repository.member_role(tenant).await?;
        check(&tenant.actor, role, Need::Manager)?;
        let id = match which {
            CredentialSelector::Id(id) => id,
            CredentialSelector::NewestActive => self
                .inner
                .repository
                .list_credentials(tenant)
                .await?
                .into_iter()
                .find(|metadata| metadata.credential_type == wanted && metadata.is_active)
                .map(|metadata| metadata.id)
                .ok_or(CredentialServiceError::NotConfigured { provider: wanted })?,
        };
        let record = self.inner.repository.get_credential(tenant, id).await?;
        let metadata = &record.metadata;
        if metadata.credential_type != wanted {
            return Err(CredentialServiceError::NotConfigured { provider: wanted });
        }
        if !metadata.is_active {
            return Err(CredentialServiceError::Inactive { id });
        }
        let payload: P = self.inner.open_payload(tenant.org_id, &record)?;
        self.record(
            tenant,
            &self.inner.actions.read,
            Some(id),
            Some(wanted),
            serde_json::json!({
                "purpose": purpose.as_str(),
                "verification_status": metadata.verification_status.as_str(),
            }),
        );
        Ok(UsableCredential {
            credential_id: Some(id),
            legacy_fallback: false,
            payload,
        })
    }

    /// How many times the legacy fallback was used since start (for the API's metrics).
    pub fn legacy_fallback_uses(&self) -> u64 {
        self.inner.fallback.as_ref().map_or(0, Fallback::uses)
    }

    /// Stores the refresh token Google rotated while the credential was in use (an availability check by
    /// any member or a calling service), so the connection survives Google retiring the old token.
    ///
    /// Only the refresh token of `rotated` is taken; every other field stays as stored. The payload is
    /// re-sealed with a fresh data key under the active key version, bound to the same (org, type, id), and
    /// written with [`CredentialRepository::replace_rotated_envelope`]: a compare-and-swap against the
    /// envelope just read, allowed to members and services but only for an active Google Calendar
    /// credential and only for the envelope columns (on Postgres through the narrow SECURITY DEFINER
    /// function of migration 0009, not the owner/admin update policy). The cached credential is dropped here
    /// (and on other replicas through the change notification) and the change is audited as `updated` with
    /// `{reason: "refresh token rotated by Google", purpose}` before this returns.
    ///
    /// Returns the updated metadata, or `None` when nothing needed writing: the stored token is already the
    /// rotated one, or another request replaced the envelope first. A deactivated credential is left alone
    /// ([`CredentialServiceError::Inactive`]); an id that is not a Google Calendar credential of the
    /// organization is `Store(NotFound)`.
    pub async fn store_rotated_refresh_token(
        &self,
        tenant: &Tenant,
        id: CredentialId,
        rotated: &GoogleCalendarCredential,
        purpose: &Purpose,
    ) -> ServiceResult<Option<CredentialMetadata>> {
        let provider = CredentialType::GoogleCalendar;
        let record = self.inner.repository.get_credential(tenant, id).await?;
        if record.metadata.credential_type != provider {
            return Err(crate::StoreError::NotFound {
                what: "Google Calendar credential",
            }
            .into());
        }
        if !record.metadata.is_active {
            return Err(CredentialServiceError::Inactive { id });
        }
        let (current, updated) = {
            let stored: GoogleCalendarCredential =
                self.inner.open_payload(tenant.org_id, &record)?;
            let updated = stored.with_refresh_token(rotated.refresh_token.clone());
            (stored.to_json_bytes(), updated.to_json_bytes())
        };
        if current.as_bytes() == updated.as_bytes() {
            return Ok(None);
        }
        let (envelope, version) =
            self.inner
                .seal(tenant.org_id, provider, id, updated.as_bytes())?;
        let Some(metadata) = self
            .inner
            .repository
            .replace_rotated_envelope(tenant, id, &record.encrypted_data, &envelope, version)
            .await?
        else {
            tracing::debug!(
                org_id = %tenant.org_id,
                credential_id = %id,
                "the Google Calendar credential changed meanwhile; the rotated refresh token was not written again"
            );
            return Ok(None);
        };
        self.changed(
            tenant,
            &self.inner.actions.updated,
            &metadata,
            serde_json::json!({
                "reason": "refresh token rotated by Google",
                "purpose": purpose.as_str(),
            }),
        )
        .await;
        Ok(Some(metadata))
    }
}
