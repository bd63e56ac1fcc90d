//! `spawn_app()`: the service on port 0 with its own SQLite file or Postgres database, fresh keys and JWT
//! secret, logs captured at debug level, and helpers to create organizations, members and tokens.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use byoc_api::auth::mint_token;
use byoc_api::config::Config;
use byoc_api::{Application, Services};
use byoc_credential_store::test_support::{fresh_postgres, TestPostgres};
use byoc_credential_store::{
    CredentialRepository, HotLeadThreshold, OrgId, OrganizationName, Role, UserId,
};
use byoc_crypto::MasterKey;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Which store the app under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// A fresh SQLite file in a temporary folder.
    Sqlite,
    /// A fresh Postgres database (dropped afterwards).
    Postgres,
}

/// Both stores, for tests that run against each.
pub const STORES: [Store; 2] = [Store::Sqlite, Store::Postgres];

/// Everything the service logged while the tests ran (debug level).
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    Arc::clone(LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = CapturedLogs(Arc::clone(&buffer));
        byoc_api::telemetry::init("debug", move || writer.clone())
            .expect("the first subscriber installs");
        buffer
    }))
}

/// The logs captured so far (all tests of the binary share them).
pub fn captured_logs() -> String {
    let buffer = capture_logs();
    let bytes = buffer.lock().map(|bytes| bytes.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Keeps the test database alive as long as the app.
struct DatabaseGuard {
    _sqlite_dir: Option<tempfile::TempDir>,
    _postgres: Option<TestPostgres>,
}

/// A running app and what tests need to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// A client that does not follow redirects.
    pub client: reqwest::Client,
    /// The store, to arrange and inspect state behind the API.
    pub repository: Arc<dyn CredentialRepository>,
    /// The HS256 secret tokens are signed with.
    pub jwt_secret: SecretString,
    database: Option<DatabaseGuard>,
}

/// An organization with one user of each role and their tokens.
pub struct TestOrg {
    /// The organization.
    pub id: OrgId,
    /// Owner, admin and member user ids.
    pub owner: UserId,
    /// The admin.
    pub admin: UserId,
    /// The member.
    pub member: UserId,
}

/// Spawns the app on SQLite.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Store::Sqlite, &[]).await
}

/// Spawns the app on `store` with extra environment values.
pub async fn spawn_app_with(store: Store, extra: &[(&str, String)]) -> TestApp {
    capture_logs();
    let (database_url, guard) = match store {
        Store::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("byoc.db");
            (
                format!("sqlite://{}", path.display()),
                DatabaseGuard {
                    _sqlite_dir: Some(dir),
                    _postgres: None,
                },
            )
        }
        Store::Postgres => {
            let database = fresh_postgres().await;
            (
                database.owner_url().to_owned(),
                DatabaseGuard {
                    _sqlite_dir: None,
                    _postgres: Some(database),
                },
            )
        }
    };
    let master_key_hex = MasterKey::generate().to_hex();
    let jwt_secret = SecretString::from(format!("test-secret-{}", Uuid::new_v4().simple()));
    let mut values: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), database_url),
        (
            "BYOC_MASTER_KEYS".into(),
            format!("1:{}", master_key_hex.expose_secret()),
        ),
        (
            "BYOC_JWT_SECRET".into(),
            jwt_secret.expose_secret().to_owned(),
        ),
        ("BYOC_BIND".into(), "127.0.0.1:0".into()),
    ];
    values.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone())),
    );
    let config = Config::from_lookup(|name| {
        values
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("test configuration is valid");
    let services = Services::open(&config).await.expect("services open");
    let repository = Arc::clone(&services.repository);
    let application = Application::with_services(&config, services).expect("app builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        repository,
        jwt_secret,
        database: Some(guard),
    }
}

impl TestApp {
    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A token for `user` in `org`, valid for an hour.
    pub fn token(&self, org: OrgId, user: UserId) -> String {
        mint_token(
            &self.jwt_secret,
            org.as_uuid(),
            user.as_uuid(),
            Duration::from_secs(3600),
        )
        .expect("mint")
    }

    /// Creates an organization with an owner, an admin and a member.
    pub async fn create_org(&self, name: &str) -> TestOrg {
        let organization = self
            .repository
            .operator_create_organization(
                &OrganizationName::parse(name).expect("valid name"),
                HotLeadThreshold::DEFAULT,
            )
            .await
            .expect("create org");
        let mut users = Vec::new();
        for role in [Role::Owner, Role::Admin, Role::Member] {
            let user = UserId::new_random();
            self.repository
                .operator_add_member(organization.id, user, role)
                .await
                .expect("add member");
            users.push(user);
        }
        TestOrg {
            id: organization.id,
            owner: users[0],
            admin: users[1],
            member: users[2],
        }
    }

    /// A GET with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// Drops the test database now (Postgres: `DROP DATABASE … WITH (FORCE)`), leaving the app running.
    pub fn drop_database(&mut self) {
        self.database = None;
    }
}

impl TestOrg {
    /// The user of `role`.
    pub fn user(&self, role: Role) -> UserId {
        match role {
            Role::Owner => self.owner,
            Role::Admin => self.admin,
            Role::Member => self.member,
        }
    }
}

/// Reads a JSON error body and returns its code, checking the contract's shape.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.expect("error bodies are JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code is a string")
        .to_owned();
    assert!(
        body["error"]["message"].is_string(),
        "error.message is a string: {body}"
    );
    code
}
