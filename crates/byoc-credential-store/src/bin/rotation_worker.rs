//! `byoc-rotation-worker`: runs one key rotation against a database, printing a line after every batch.
//! A test helper (feature `rotation-worker`) for the kill-during-rotation test, which kills it at random
//! points. Reads `DATABASE_URL`, `BYOC_MASTER_KEYS` and `BYOC_ACTIVE_KEY_VERSION`, and the batch size as
//! its only argument.

use std::process::ExitCode;
use std::sync::Arc;

use byoc_credential_store::service::{rotate, RotationOptions};
use byoc_credential_store::PostgresStore;
use byoc_crypto::{Keyring, KeyringConfig};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("byoc-rotation-worker: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let database_url = std::env::var("DATABASE_URL").map_err(|_| "DATABASE_URL is not set")?;
    let master_keys = std::env::var("BYOC_MASTER_KEYS").ok();
    let active_version = std::env::var("BYOC_ACTIVE_KEY_VERSION").ok();
    let batch_size = std::env::args()
        .nth(1)
        .map(|text| text.parse::<u32>())
        .transpose()
        .map_err(|_| "the batch size must be a positive number")?
        .unwrap_or(100);
    let keyring = Keyring::from_config(KeyringConfig {
        master_keys: master_keys.as_deref(),
        active_version: active_version.as_deref(),
        legacy_key: None,
    })
    .map_err(|error| error.to_string())?;
    let store = PostgresStore::connect_operator(&database_url)
        .await
        .map_err(|error| error.to_string())?;
    let options = RotationOptions {
        batch_size,
        swaps_in_flight: 2,
        ..RotationOptions::default()
    };
    let report = rotate(Arc::new(store), Arc::new(keyring), &options, |progress| {
        println!("rewrapped {}", progress.rewrapped);
    })
    .await
    .map_err(|error| error.to_string())?;
    println!("done {}", report.rewrapped);
    Ok(())
}
