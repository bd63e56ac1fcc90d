//! Bulk-seeds a migrated Postgres database with real Twilio credentials for the rotation benchmark
//! (`bench/rotation_under_load.sh`): `ROWS` credentials spread evenly over `ORGS` new organizations, each
//! sealed under the active master key exactly as the service seals them (envelope bound to organization,
//! type and credential id), so `byoc keys rotate` can re-wrap them and `byoc keys check` can open them.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/DB BYOC_MASTER_KEYS=1:<64 hex> \
//!     cargo run --release -p byoc-credential-store --example seed_bulk_credentials -- 1000000 10000
//! ```
//!
//! `DATABASE_URL` must name a superuser (the rows are inserted directly, past row-level security, 10,000 per
//! statement, with the notification trigger off in each transaction so the inserts send no cache-invalidation
//! notifications); the
//! keyring comes from `BYOC_MASTER_KEYS` / `BYOC_ACTIVE_KEY_VERSION` / `CREDENTIAL_ENCRYPTION_KEY` as in the
//! service. The organizations get no members: they exist to make the table as large as a busy deployment's.
//! The payload is one fixed, syntactically valid Twilio credential (test SID, token and phone number).

use std::error::Error;
use std::time::Instant;

use byoc_credential_store::service::envelope_context;
use byoc_credential_store::{CredentialId, CredentialType, OrgId};
use byoc_crypto::{Keyring, KeyringConfig};
use rayon::prelude::*;
use sqlx::postgres::PgPoolOptions;

/// The sealed payload: the JSON a Twilio credential is stored as (camelCase fields).
const PAYLOAD: &[u8] = br#"{"accountSid":"AC0123456789abcdef0123456789abcdef","authToken":"0123456789abcdef0123456789abcdef","phoneNumber":"+14155550123"}"#;

/// Rows per `INSERT … SELECT FROM UNNEST` statement.
const CHUNK: usize = 10_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut arguments = std::env::args().skip(1);
    let usage = "usage: seed_bulk_credentials ROWS ORGS (DATABASE_URL and BYOC_MASTER_KEYS set)";
    let rows: usize = arguments.next().ok_or(usage)?.parse()?;
    let orgs: usize = arguments.next().ok_or(usage)?.parse()?;
    if orgs == 0 || rows < orgs {
        return Err("ORGS must be at least 1 and at most ROWS".into());
    }
    let database_url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let variable = |name: &str| std::env::var(name).ok();
    let (master_keys, active_version, legacy_key) = (
        variable("BYOC_MASTER_KEYS"),
        variable("BYOC_ACTIVE_KEY_VERSION"),
        variable("CREDENTIAL_ENCRYPTION_KEY"),
    );
    let keyring = Keyring::from_config(KeyringConfig {
        master_keys: master_keys.as_deref(),
        active_version: active_version.as_deref(),
        legacy_key: legacy_key.as_deref(),
    })?;
    let version = i64::from(keyring.active_version().get());
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await?;

    let started = Instant::now();
    let org_ids: Vec<OrgId> = (0..orgs).map(|_| OrgId::new_random()).collect();
    for slice in org_ids.chunks(CHUNK) {
        let ids: Vec<uuid::Uuid> = slice.iter().map(|id| id.as_uuid()).collect();
        sqlx::query(
            "INSERT INTO organizations (id, name) \
             SELECT id, 'Seeded clinic ' || id FROM UNNEST($1::uuid[]) AS t(id)",
        )
        .bind(ids)
        .execute(&pool)
        .await?;
    }

    for start in (0..rows).step_by(CHUNK) {
        let end = (start + CHUNK).min(rows);
        let sealed = (start..end)
            .into_par_iter()
            .map(|index| {
                let org_id = org_ids[index % orgs];
                let id = CredentialId::new_random();
                let envelope = keyring.seal(
                    PAYLOAD,
                    &envelope_context(org_id, CredentialType::Twilio, id),
                )?;
                Ok((
                    id.as_uuid(),
                    org_id.as_uuid(),
                    envelope.into_bytes(),
                    format!("Twilio {index}"),
                ))
            })
            .collect::<Result<Vec<_>, byoc_crypto::CryptoError>>()?;
        let ids: Vec<uuid::Uuid> = sealed.iter().map(|row| row.0).collect();
        let owners: Vec<uuid::Uuid> = sealed.iter().map(|row| row.1).collect();
        let envelopes: Vec<&[u8]> = sealed.iter().map(|row| row.2.as_slice()).collect();
        let names: Vec<&str> = sealed.iter().map(|row| row.3.as_str()).collect();
        let mut transaction = pool.begin().await?;
        sqlx::query(
            "ALTER TABLE organization_api_credentials DISABLE TRIGGER notify_credential_change",
        )
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO organization_api_credentials \
             (id, org_id, credential_type, encrypted_data, encryption_key_version, display_name, \
              verification_status) \
             SELECT id, org_id, 'twilio', data, $5, name, 'verified' \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::bytea[], $4::text[]) AS t(id, org_id, data, name)",
        )
        .bind(ids)
        .bind(owners)
        .bind(envelopes)
        .bind(names)
        .bind(version)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "ALTER TABLE organization_api_credentials ENABLE TRIGGER notify_credential_change",
        )
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
    }
    sqlx::query("VACUUM ANALYZE organization_api_credentials")
        .execute(&pool)
        .await?;
    pool.close().await;
    println!(
        "seeded {rows} credentials in {orgs} organizations under key version {version} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
