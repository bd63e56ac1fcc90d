//! Shared test data: an organization with an owner, an admin, a member, a non-member and a service.

use std::num::NonZeroU32;

use byoc_credential_store::{
    CredentialId, CredentialRepository, CredentialType, DisplayName, EncryptedEnvelope,
    HotLeadThreshold, NewCredential, OrgId, OrganizationName, ProviderAccountId, PublicHint, Role,
    ServiceName, Tenant, UserId,
};

/// The Account SID the fixture's Twilio credentials carry as their provider account id.
pub const TWILIO_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// An organization and one tenant per kind of actor.
pub struct OrgFixture {
    pub id: OrgId,
    pub owner: Tenant,
    pub admin: Tenant,
    pub member: Tenant,
    /// A user who is not a member of this organization.
    pub outsider: Tenant,
    pub service: Tenant,
}

/// Creates an organization with an owner, an admin and a member, through the operator's store (on Postgres a
/// connection as `byoc_operator`; on SQLite the store itself).
pub async fn org(operator: &impl CredentialRepository, name: &str) -> OrgFixture {
    let org = operator
        .operator_create_organization(
            &OrganizationName::parse(name).unwrap(),
            HotLeadThreshold::DEFAULT,
        )
        .await
        .unwrap();
    let mut tenants = Vec::new();
    for role in [Role::Owner, Role::Admin, Role::Member] {
        let user = UserId::new_random();
        operator
            .operator_add_member(org.id, user, role)
            .await
            .unwrap();
        tenants.push(Tenant::user(org.id, user));
    }
    let member = tenants.pop().unwrap();
    let admin = tenants.pop().unwrap();
    let owner = tenants.pop().unwrap();
    OrgFixture {
        id: org.id,
        owner,
        admin,
        member,
        outsider: Tenant::user(org.id, UserId::new_random()),
        service: Tenant::service(org.id, ServiceName::parse("lead-scorer").unwrap()),
    }
}

pub fn version(number: u32) -> NonZeroU32 {
    NonZeroU32::new(number).unwrap()
}

pub fn envelope(bytes: &[u8]) -> EncryptedEnvelope {
    EncryptedEnvelope::new(bytes.to_vec()).unwrap()
}

/// A new credential with a fresh id (a Twilio one names [`TWILIO_ACCOUNT_SID`] as its provider account id).
pub fn credential(credential_type: CredentialType, name: &str) -> NewCredential {
    NewCredential {
        id: CredentialId::new_random(),
        credential_type,
        display_name: DisplayName::parse(name).unwrap(),
        public_hint: Some(PublicHint::parse("…1234").unwrap()),
        provider_account_id: (credential_type == CredentialType::Twilio)
            .then(|| ProviderAccountId::parse(TWILIO_ACCOUNT_SID).unwrap()),
        encrypted_data: envelope(format!("envelope of {name}").as_bytes()),
        encryption_key_version: version(1),
    }
}
