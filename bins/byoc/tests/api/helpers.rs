//! `spawn_app()`: a configured environment for the `byoc` binary (a fresh SQLite file or Postgres database,
//! a generated master key and JWT secret) and a runner that captures its output.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use byoc_credential_store::test_support::{fresh_postgres, TestPostgres};
use byoc_credential_store::CredentialRepository;
use byoc_crypto::MasterKey;
use secrecy::ExposeSecret;

/// The environment a CLI run gets.
pub struct CliApp {
    /// Variables set for every run.
    pub env: Vec<(String, String)>,
    /// The working directory of every run (dev mode writes `.byoc-dev/` here).
    pub workdir: tempfile::TempDir,
    /// Postgres: the owner's URL, which `byoc migrate` runs with (every other command runs as the operator).
    owner_url: Option<String>,
    postgres: Option<TestPostgres>,
}

/// What one run printed and how it exited.
pub struct Run {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A configured environment on a fresh SQLite file.
pub async fn spawn_app() -> CliApp {
    let workdir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", workdir.path().join("byoc.db").display());
    CliApp::configured(workdir, database, None)
}

/// A configured environment on a fresh Postgres database, as docs/operations.md sets one up: `DATABASE_URL`
/// names the operator's login, and `byoc migrate` runs with the owner's URL.
pub async fn spawn_app_postgres() -> CliApp {
    let workdir = tempfile::tempdir().expect("temp dir");
    let postgres = fresh_postgres().await;
    let database = postgres.operator_url();
    CliApp::configured(workdir, database, Some(postgres))
}

/// An empty environment: dev mode in a fresh working directory.
pub fn spawn_dev() -> CliApp {
    CliApp {
        env: Vec::new(),
        workdir: tempfile::tempdir().expect("temp dir"),
        owner_url: None,
        postgres: None,
    }
}

impl CliApp {
    fn configured(
        workdir: tempfile::TempDir,
        database: String,
        postgres: Option<TestPostgres>,
    ) -> CliApp {
        let key = MasterKey::generate().to_hex();
        CliApp {
            env: vec![
                ("DATABASE_URL".to_owned(), database),
                (
                    "BYOC_MASTER_KEYS".to_owned(),
                    format!("1:{}", key.expose_secret()),
                ),
                (
                    "BYOC_JWT_SECRET".to_owned(),
                    "cli-test-secret-0123456789abcdef0123".to_owned(),
                ),
            ],
            workdir,
            owner_url: postgres.as_ref().map(TestPostgres::owner_url),
            postgres,
        }
    }

    /// The store as the service opens it (on Postgres as `byoc_app`, not the operator), to read what a command
    /// wrote.
    pub async fn service_store(&self) -> Arc<dyn CredentialRepository> {
        match &self.postgres {
            Some(postgres) => Arc::new(postgres.store().clone()),
            None => {
                let url = self
                    .env
                    .iter()
                    .find(|(key, _)| key == "DATABASE_URL")
                    .map(|(_, url)| url.as_str())
                    .expect("a configured environment has a DATABASE_URL");
                byoc_credential_store::connect(url)
                    .await
                    .expect("the SQLite store opens")
            }
        }
    }

    /// Postgres: a pool logged in as the database's owner (the role that runs `byoc migrate`), to tamper with
    /// tables as that role could. Panics on SQLite.
    pub async fn owner_pool(&self) -> sqlx::PgPool {
        self.postgres
            .as_ref()
            .expect("a Postgres environment")
            .owner_pool(1)
            .await
    }

    /// The working directory.
    pub fn dir(&self) -> PathBuf {
        self.workdir.path().to_path_buf()
    }

    /// Runs `byoc ARGS` with this environment (and only it) and waits for it.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[])
    }

    /// Runs `byoc ARGS` with this environment plus `extra`.
    pub fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_byoc"));
        command
            .args(args)
            .current_dir(self.workdir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let (Some(["migrate", ..]), Some(owner_url)) = (args.get(..1), &self.owner_url) {
            command.env("DATABASE_URL", owner_url);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        let Output {
            status,
            stdout,
            stderr,
        } = command.output().expect("byoc runs");
        Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts success and returns stdout trimmed.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self.stdout.trim().to_owned()
    }

    /// Asserts a failure with exactly one line on stderr and returns it.
    pub fn one_line_failure(self) -> String {
        assert_ne!(
            self.code,
            Some(0),
            "expected a failure; stdout: {}",
            self.stdout
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got: {}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        lines[0].to_owned()
    }
}
