//! The migrated Postgres schema, as `pg_dump --schema-only` prints it, is checked in
//! (`migrations/postgres/schema.sql`), so that every change to a table, grant, policy or function shows up in
//! review as a change to that file. This test fails when a fresh database migrates to anything else.
//!
//! After changing a migration on purpose, write the new dump and review its diff:
//! `BYOC_UPDATE_SCHEMA=1 cargo test -p byoc-credential-store --all-features --test integration schema_dump`.

use std::path::PathBuf;
use std::process::Command;

use byoc_credential_store::test_support::{fresh_postgres, OWNER_LOGIN};

/// The checked-in dump.
fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres/schema.sql")
}

/// The `pg_dump` that matches the server: `BYOC_PG_DUMP` when set, else the Debian layout's binary for the
/// server's major version, else the one on `PATH`.
fn pg_dump(server_major: &str) -> PathBuf {
    if let Ok(path) = std::env::var("BYOC_PG_DUMP") {
        return PathBuf::from(path);
    }
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{server_major}/bin/pg_dump"));
    if debian.exists() {
        debian
    } else {
        PathBuf::from("pg_dump")
    }
}

/// The dump without what differs between runs and machines: comments, session settings, the random
/// `\restrict` key of newer pg_dump releases, the test owner's name, runs of blank lines.
fn normalized(dump: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in dump.lines() {
        let skip = line.starts_with("--")
            || line.starts_with("SET ")
            || line.starts_with("SELECT pg_catalog.set_config('search_path'")
            || line.starts_with("\\restrict")
            || line.starts_with("\\unrestrict");
        if skip || (line.is_empty() && lines.last().is_some_and(String::is_empty)) {
            continue;
        }
        lines.push(line.replace(OWNER_LOGIN, "byoc_owner"));
    }
    let text = lines.join("\n");
    format!("{}\n", text.trim())
}

#[tokio::test]
async fn the_migrated_schema_is_the_checked_in_dump() {
    let database = fresh_postgres().await;
    let superuser = database.superuser_pool(1).await;
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&superuser)
        .await
        .unwrap();
    superuser.close().await;
    let binary = pg_dump(&(version / 10_000).to_string());
    let output = Command::new(&binary)
        .args(["--schema-only", "--dbname", &database.superuser_url()])
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
    assert!(
        output.status.success(),
        "{} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let migrated = normalized(&String::from_utf8_lossy(&output.stdout));
    let path = checked_in();
    if std::env::var_os("BYOC_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &migrated).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if migrated != expected {
        let first_difference = migrated
            .lines()
            .zip(expected.lines())
            .position(|(got, want)| got != want)
            .unwrap_or_else(|| migrated.lines().count().min(expected.lines().count()));
        let around = |text: &str| {
            text.lines()
                .skip(first_difference.saturating_sub(3))
                .take(8)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "the migrated schema differs from {} at line {}:\n--- checked in\n{}\n--- migrated\n{}\n\
             If the change is intended, write the new dump with BYOC_UPDATE_SCHEMA=1 and review its diff.",
            path.display(),
            first_difference + 1,
            around(&expected),
            around(&migrated)
        );
    }
}
