//! Fresh, migrated databases for tests (feature `test-support`): one Postgres database or one SQLite file per
//! test, dropped or deleted when the handle is dropped (best effort).
//!
//! Postgres is reached through the admin URL in `BYOC_TEST_DATABASE_URL` (default
//! [`DEFAULT_ADMIN_URL`]); each test gets a database `byoc_test_<uuid>` created through it and migrated by
//! the same (owner) role. These helpers panic with a clear message when the test database cannot be set up:
//! they are for tests only.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Executor;
use uuid::Uuid;

use crate::postgres::{self, PostgresStore};
use crate::sqlite::SqliteStore;

/// The admin URL used when `BYOC_TEST_DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL tests create databases through.
pub fn admin_url() -> String {
    std::env::var("BYOC_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A fresh, migrated Postgres database and a store connected to it (as `byoc_app`). Dropping it drops the
/// database.
#[derive(Debug)]
pub struct TestPostgres {
    store: PostgresStore,
    database_name: String,
    owner_url: String,
    admin_url: String,
}

/// Creates and migrates a fresh Postgres database and connects a store to it.
pub async fn fresh_postgres() -> TestPostgres {
    let admin_url = admin_url();
    let database_name = format!("byoc_test_{}", Uuid::new_v4().simple());
    let admin = admin_pool(&admin_url).await;
    admin
        .execute(format!("CREATE DATABASE \"{database_name}\"").as_str())
        .await
        .unwrap_or_else(|error| panic!("cannot create test database {database_name}: {error}"));
    admin.close().await;
    let mut owner_url = url::Url::parse(&admin_url).expect("BYOC_TEST_DATABASE_URL is not a URL");
    owner_url.set_path(&database_name);
    let owner_url = owner_url.to_string();
    postgres::migrate(&owner_url)
        .await
        .unwrap_or_else(|error| panic!("cannot migrate {database_name}: {error}"));
    let store = PostgresStore::connect(&owner_url)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {database_name}: {error}"));
    TestPostgres {
        store,
        database_name,
        owner_url,
        admin_url,
    }
}

async fn admin_pool(admin_url: &str) -> PgPool {
    let options = PgConnectOptions::from_str(admin_url)
        .expect("BYOC_TEST_DATABASE_URL is not a Postgres URL");
    PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap_or_else(|error| panic!("cannot reach the test Postgres at {admin_url}: {error}"))
}

impl TestPostgres {
    /// The store (connected as `byoc_app`).
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    /// The database's URL with the owner (migrating) role, as `DATABASE_URL` would name it.
    pub fn owner_url(&self) -> &str {
        &self.owner_url
    }

    /// The database's name.
    pub fn database_name(&self) -> &str {
        &self.database_name
    }

    /// A plain pool as the owner role with no `SET ROLE` (a superuser in the default setup: it bypasses
    /// row-level security). For setting up tampering in tests, never for tenant work.
    pub async fn owner_pool(&self, max_connections: u32) -> PgPool {
        let options = PgConnectOptions::from_str(&self.owner_url).expect("owner URL is valid");
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.database_name))
    }

    /// A second, independent store on the same database (another "replica").
    pub async fn connect_again(&self) -> PostgresStore {
        PostgresStore::connect(&self.owner_url)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.database_name))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.database_name
        );
        // Drop may run inside or outside a runtime; a thread with its own runtime works in both. Failure to
        // drop leaves a stray test database behind and is otherwise harmless.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(options) = PgConnectOptions::from_str(&admin_url) {
                    if let Ok(pool) = PgPoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await
                    {
                        let _ = pool.execute(statement.as_str()).await;
                        pool.close().await;
                    }
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A fresh SQLite store in a new temporary file. Dropping it deletes the file.
#[derive(Debug)]
pub struct TestSqlite {
    store: SqliteStore,
    path: PathBuf,
}

/// Creates a fresh SQLite store in a new temporary file.
pub async fn fresh_sqlite() -> TestSqlite {
    let path = std::env::temp_dir().join(format!("byoc-test-{}.db", Uuid::new_v4().simple()));
    let store = SqliteStore::connect(&sqlite_url(&path))
        .await
        .unwrap_or_else(|error| panic!("cannot open test SQLite file {}: {error}", path.display()));
    TestSqlite { store, path }
}

/// The `sqlite://` URL of a path.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

impl TestSqlite {
    /// The store.
    pub fn store(&self) -> &SqliteStore {
        &self.store
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestSqlite {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}
