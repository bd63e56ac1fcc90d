//! Fresh, migrated databases for tests (feature `test-support`): one Postgres database or one SQLite file per
//! test, dropped or deleted when the handle is dropped (best effort).
//!
//! Postgres is reached through the admin URL in `BYOC_TEST_DATABASE_URL` (default [`DEFAULT_ADMIN_URL`], a
//! superuser). Each test gets a database `byoc_test_<uuid>` set up the way docs/operations.md tells an operator
//! to, with no superuser anywhere on the service's path: the database is owned by the login [`OWNER_LOGIN`]
//! (`CREATEROLE`, not a superuser), which runs the migrations; the store connects as [`APP_LOGIN`] (a member of
//! `byoc_app` only) for users' requests and as [`SERVICE_LOGIN`] (also a member of `byoc_service`) for service
//! contexts; [`TestPostgres::operator`] connects as [`OPERATOR_LOGIN`] (a member of `byoc_operator`). The
//! logins are cluster-wide and shared by every test database; each database grants them CONNECT by name. These
//! helpers panic with a clear message when the test database cannot be set up: they are for tests only.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Executor;
use uuid::Uuid;

use crate::postgres::{self, DatabaseRole, PostgresConnectOptions, PostgresStore};
use crate::sqlite::SqliteStore;

/// The admin URL used when `BYOC_TEST_DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The login that owns each test database and migrates it (`CREATEROLE`, not a superuser).
pub const OWNER_LOGIN: &str = "byoc_test_owner";
/// The login the store serves users' requests with (a member of `byoc_app` only).
pub const APP_LOGIN: &str = "byoc_test_app";
/// The login the store works in service contexts with (a member of `byoc_app` and `byoc_service`).
pub const SERVICE_LOGIN: &str = "byoc_test_service";
/// The operator's login (a member of `byoc_operator` only).
pub const OPERATOR_LOGIN: &str = "byoc_test_operator";

/// The admin URL tests create databases through.
pub fn admin_url() -> String {
    std::env::var("BYOC_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A fresh, migrated Postgres database and a store connected to it (as `byoc_app`). Dropping it drops the
/// database.
#[derive(Debug)]
pub struct TestPostgres {
    store: PostgresStore,
    operator: PostgresStore,
    database_name: String,
    admin_url: String,
}

/// Creates a fresh database owned by [`OWNER_LOGIN`], migrates it as that login, and connects the store
/// ([`APP_LOGIN`], [`SERVICE_LOGIN`]) and the operator's store ([`OPERATOR_LOGIN`]).
pub async fn fresh_postgres() -> TestPostgres {
    let admin_url = admin_url();
    let database_name = format!("byoc_test_{}", Uuid::new_v4().simple());
    let admin = admin_pool(&admin_url).await;
    let password = url::Url::parse(&admin_url)
        .expect("BYOC_TEST_DATABASE_URL is not a URL")
        .password()
        .map(str::to_owned);
    ensure_login(&admin, OWNER_LOGIN, "CREATEROLE", password.as_deref()).await;
    admin
        .execute(format!("CREATE DATABASE \"{database_name}\" OWNER {OWNER_LOGIN}").as_str())
        .await
        .unwrap_or_else(|error| panic!("cannot create test database {database_name}: {error}"));
    let owner_url = login_url(&admin_url, OWNER_LOGIN, &database_name);
    postgres::migrate(&owner_url)
        .await
        .unwrap_or_else(|error| panic!("cannot migrate {database_name} as {OWNER_LOGIN}: {error}"));
    for (login, roles) in [
        (APP_LOGIN, &["byoc_app"][..]),
        (SERVICE_LOGIN, &["byoc_app", "byoc_service"][..]),
        (OPERATOR_LOGIN, &["byoc_operator"][..]),
    ] {
        ensure_login(&admin, login, "", password.as_deref()).await;
        for role in roles {
            ensure_membership(&admin, role, login).await;
        }
        admin
            .execute(format!("GRANT CONNECT ON DATABASE \"{database_name}\" TO {login}").as_str())
            .await
            .unwrap_or_else(|error| panic!("cannot grant CONNECT to {login}: {error}"));
    }
    admin.close().await;
    let store = connect_app(&admin_url, &database_name).await;
    let operator =
        PostgresStore::connect_operator(&login_url(&admin_url, OPERATOR_LOGIN, &database_name))
            .await
            .unwrap_or_else(|error| {
                panic!("cannot connect the operator to {database_name}: {error}")
            });
    TestPostgres {
        store,
        operator,
        database_name,
        admin_url,
    }
}

/// Creates `login` (LOGIN plus `attributes`) unless it exists; safe when many tests race to create it.
async fn ensure_login(admin: &PgPool, login: &str, attributes: &str, password: Option<&str>) {
    let password = password
        .map(|password| format!("PASSWORD '{}'", password.replace('\'', "''")))
        .unwrap_or_default();
    let statement = format!(
        "DO $$ BEGIN \
             IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{login}') THEN \
                 CREATE ROLE {login} LOGIN NOSUPERUSER {attributes} {password}; \
             END IF; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    );
    admin
        .execute(statement.as_str())
        .await
        .unwrap_or_else(|error| panic!("cannot create the test login {login}: {error}"));
}

/// Grants `role` to `login` unless it is granted already; safe when many tests race to grant it.
async fn ensure_membership(admin: &PgPool, role: &str, login: &str) {
    let statement = format!(
        "DO $$ BEGIN \
             IF NOT pg_has_role('{login}', '{role}', 'MEMBER') THEN GRANT {role} TO {login}; END IF; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    );
    admin
        .execute(statement.as_str())
        .await
        .unwrap_or_else(|error| panic!("cannot grant {role} to {login}: {error}"));
}

/// The admin URL with another login and database.
fn login_url(admin_url: &str, login: &str, database_name: &str) -> String {
    let mut url = url::Url::parse(admin_url).expect("BYOC_TEST_DATABASE_URL is not a URL");
    url.set_username(login).expect("a Postgres URL has a user");
    url.set_path(database_name);
    url.to_string()
}

async fn connect_app(admin_url: &str, database_name: &str) -> PostgresStore {
    let options = PostgresConnectOptions::from_url(
        &login_url(admin_url, APP_LOGIN, database_name),
        DatabaseRole::App,
    )
    .and_then(|options| {
        options.with_service_url(&login_url(admin_url, SERVICE_LOGIN, database_name))
    })
    .expect("test URLs are valid");
    PostgresStore::connect_with_options(options)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {database_name}: {error}"))
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
    /// The store (as `byoc_app`: [`APP_LOGIN`] for users, [`SERVICE_LOGIN`] for services).
    pub fn store(&self) -> &PostgresStore {
        &self.store
    }

    /// The operator's store (as `byoc_operator`): organization bootstrap, rotation, `keys check`.
    pub fn operator(&self) -> &PostgresStore {
        &self.operator
    }

    /// The owner's URL (`byoc migrate`).
    pub fn owner_url(&self) -> String {
        login_url(&self.admin_url, OWNER_LOGIN, &self.database_name)
    }

    /// The URL of the login for users' requests, as the service's `DATABASE_URL` would name it.
    pub fn app_url(&self) -> String {
        login_url(&self.admin_url, APP_LOGIN, &self.database_name)
    }

    /// The URL of the login for service contexts (`BYOC_SERVICE_DATABASE_URL`).
    pub fn service_url(&self) -> String {
        login_url(&self.admin_url, SERVICE_LOGIN, &self.database_name)
    }

    /// The operator's URL, as the CLI's `DATABASE_URL` would name it.
    pub fn operator_url(&self) -> String {
        login_url(&self.admin_url, OPERATOR_LOGIN, &self.database_name)
    }

    /// The database's name.
    pub fn database_name(&self) -> &str {
        &self.database_name
    }

    /// A plain pool as the owner with no `SET ROLE`: it owns everything and, under forced row-level security,
    /// sees no tenant rows.
    pub async fn owner_pool(&self, max_connections: u32) -> PgPool {
        self.pool_at(&self.owner_url(), max_connections).await
    }

    /// A pool as the admin superuser on this database (it bypasses row-level security): for tampering and
    /// inspection in tests, never for tenant work.
    pub async fn superuser_pool(&self, max_connections: u32) -> PgPool {
        self.pool_at(&self.superuser_url(), max_connections).await
    }

    /// The admin superuser's URL of this database (for tools and baselines that must bypass row-level
    /// security).
    pub fn superuser_url(&self) -> String {
        let mut url = url::Url::parse(&self.admin_url).expect("admin URL is valid");
        url.set_path(&self.database_name);
        url.to_string()
    }

    async fn pool_at(&self, url: &str, max_connections: u32) -> PgPool {
        let options = PgConnectOptions::from_str(url).expect("test URLs are valid");
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.database_name))
    }

    /// A second, independent store on the same database (another "replica").
    pub async fn connect_again(&self) -> PostgresStore {
        connect_app(&self.admin_url, &self.database_name).await
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

    /// The store again, for the operator's paths: SQLite has no roles, so the operator's store is the same (a
    /// twin of [`TestPostgres::operator`], so that one test body serves both backends).
    pub fn operator(&self) -> &SqliteStore {
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
