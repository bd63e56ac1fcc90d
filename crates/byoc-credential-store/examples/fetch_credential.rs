//! Another Rust service fetching an organization's Twilio credential through the [`CredentialService`]
//! facade, on an embedded SQLite store in a temporary folder.
//!
//! ```sh
//! cargo run -p byoc-credential-store --example fetch_credential
//! ```
//!
//! Steps: build a keyring, connect the store (the SQLite file is created and migrated), seed an organization
//! and its owner through the operator methods, store a Twilio credential as the owner (it starts `pending`),
//! record it verified (a real service would call [`CredentialService::verify`] with the providers'
//! verifiers, which asks Twilio), then fetch it for a purpose as a calling service. Only non-secret fields
//! are printed; the auth token never leaves its `SecretString`.

use std::error::Error;
use std::sync::Arc;

use byoc_credential_store::{
    AuditPage, CredentialService, DisplayName, HotLeadThreshold, OrganizationName, Purpose, Role,
    ServiceConfig, ServiceName, Tenant, UserId, VerificationStatus,
};
use byoc_credential_types::{CredentialType, E164Phone, TwilioAccountSid, TwilioCredential};
use byoc_crypto::{KeyVersion, Keyring, MasterKey};
use secrecy::SecretString;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // A private folder for the SQLite file, removed at the end.
    let folder = std::env::temp_dir().join(format!("byoc-example-{}", uuid::Uuid::new_v4()));
    let result = run(&folder).await;
    // The folder may not exist if the store failed to open; nothing else to clean up then.
    let _ = std::fs::remove_dir_all(&folder);
    result
}

async fn run(folder: &std::path::Path) -> Result<(), Box<dyn Error>> {
    // 1. The keyring. A deployment builds it from BYOC_MASTER_KEYS with `Keyring::from_config`; here one
    //    freshly generated version-1 key (so nothing written here can be read after the example ends).
    let keyring = Arc::new(Keyring::new(
        vec![(KeyVersion::FIRST, MasterKey::generate())],
        KeyVersion::FIRST,
    )?);

    // 2. The store: `connect` picks SQLite or Postgres from the URL; a missing SQLite file is created and
    //    migrated.
    let database_url = format!("sqlite://{}", folder.join("byoc.db").display());
    let repository = byoc_credential_store::connect(&database_url).await?;

    // 3. Seed an organization and its owner (what `byoc org create` and `byoc member add` do).
    let organization = repository
        .operator_create_organization(
            &OrganizationName::parse("Example Clinic")?,
            HotLeadThreshold::DEFAULT,
        )
        .await?;
    let owner_id = UserId::new_random();
    repository
        .operator_add_member(organization.id, owner_id, Role::Owner)
        .await?;

    // 4. The facade. `start` runs the start-up key check first and refuses a keyring that does not fit the
    //    data already stored.
    let (service, _key_report) = CredentialService::start(
        Arc::clone(&repository),
        Arc::clone(&keyring),
        ServiceConfig::new(ServiceName::parse("example-service")?),
    )
    .await?;

    // 5. The owner stores the clinic's Twilio account: encrypted, bound to org, type and id; `pending`.
    let owner = Tenant::user(organization.id, owner_id);
    let twilio = TwilioCredential {
        account_sid: TwilioAccountSid::parse("accountSid", "AC0123456789abcdef0123456789abcdef")?,
        auth_token: SecretString::from("example-auth-token-not-real".to_owned()),
        phone_number: E164Phone::parse("phoneNumber", "+14155550123")?,
    };
    let stored = service
        .store(&owner, &twilio, DisplayName::parse("Front desk")?)
        .await?;
    println!(
        "stored {} credential {} ({}), status {}",
        stored.credential_type, stored.id, stored.display_name, stored.verification_status
    );

    // 6. Only active, verified credentials are handed out. Record the outcome a verification would give.
    service
        .record_verification(&owner, stored.id, VerificationStatus::Verified, None)
        .await?;

    // 7. Another service fetches the organization's Twilio credential, naming why. The read is audited with
    //    the purpose; a second call within the cache TTL is served from memory.
    let caller = Tenant::service(organization.id, ServiceName::parse("lead-notifier")?);
    let purpose = Purpose::parse("sms:hot_lead")?;
    let credential = service
        .get_credential(&caller, CredentialType::Twilio, &purpose)
        .await?;
    let twilio: TwilioCredential = credential.parse()?;
    println!(
        "fetched {:?} for {}: account {}, sending from {}, key version {}",
        credential,
        purpose.as_str(),
        twilio.account_sid.as_str(),
        twilio.phone_number.as_str(),
        credential
            .metadata()
            .map_or(0, |metadata| metadata.encryption_key_version.get()),
    );

    // 8. The audit trail the calls above left (the organization's members can read it too).
    for event in service
        .audit_events(
            &owner,
            AuditPage {
                limit: 20,
                before: None,
            },
        )
        .await?
    {
        println!(
            "audit: {} by {} {}",
            event.action.as_str(),
            event.actor,
            event.detail
        );
    }

    // Graceful shutdown writes any audit event still queued.
    service.shutdown().await?;
    Ok(())
}
