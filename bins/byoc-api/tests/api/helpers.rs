//! `spawn_app()`: the service on port 0 with its own SQLite file or Postgres database, fresh keys and JWT
//! secret, logs captured at debug level, and helpers to create organizations, members and tokens.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use byoc_api::startup::config::{Config, TokenClaimRules};
use byoc_api::{Application, Services};
use byoc_credential_store::test_support::{fresh_postgres, TestPostgres};
use byoc_credential_store::{
    CredentialRepository, HotLeadThreshold, OrgId, OrganizationName, PostgresStore, Role, UserId,
};
use byoc_crypto::MasterKey;
use byoc_runtime::tokens::mint_token;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

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

/// A well-formed Twilio account SID of the fake Twilio's active account.
pub const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";
/// A SID the fake Twilio refuses (20003).
pub const TWILIO_BAD_SID: &str = "ACffffffffffffffffffffffffffffffff";
/// A SID for which the fake Twilio answers 429 with `Retry-After: 120`.
pub const TWILIO_RATE_LIMITED_SID: &str = "AC42942942942942942942942942942942";
/// The auth token every test credential uses (a secret that must never leave the service).
pub const TWILIO_AUTH_TOKEN: &str = "tw-secret-0f9e8d7c6b5a4f3e2d1c";
/// The sending number the fake Twilio account owns.
pub const TWILIO_PHONE: &str = "+14155550123";

/// A fake Twilio: an active account with an SMS-capable number for [`TWILIO_SID`], a 401 for
/// [`TWILIO_BAD_SID`].
pub async fn fake_twilio() -> MockServer {
    fake_twilio_answering_after(Duration::ZERO).await
}

/// [`fake_twilio`] whose every answer takes `delay`.
pub async fn fake_twilio_answering_after(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/2010-04-01/Accounts/{TWILIO_SID}/IncomingPhoneNumbers.json")))
        .respond_with(ResponseTemplate::new(200).set_delay(delay).set_body_json(serde_json::json!({
            "incoming_phone_numbers": [{"phone_number": TWILIO_PHONE, "capabilities": {"sms": true}}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/2010-04-01/Accounts/{TWILIO_BAD_SID}/IncomingPhoneNumbers.json")))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/2010-04-01/Accounts/{TWILIO_RATE_LIMITED_SID}/IncomingPhoneNumbers.json")))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "120")
                .set_body_json(serde_json::json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
        )
        .mount(&server)
        .await;
    server
}

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
        byoc_runtime::telemetry::init("debug", move || writer.clone(), false)
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
    /// The operator's store (on Postgres a connection as `byoc_operator`; on SQLite the same store), to create
    /// organizations and members as `byoc org create` and `byoc member add` do.
    pub operator: Arc<dyn CredentialRepository>,
    /// The HS256 secret tokens are signed with.
    pub jwt_secret: SecretString,
    /// The master key (hex), to search logs and the database for key material.
    pub master_key_hex: SecretString,
    /// The configuration values the app was started with (for [`TestApp::spawn_replica`]).
    config_values: Vec<(String, String)>,
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
    spawn_app_tuned(store, extra, |_| {}).await
}

/// Spawns the app on a fresh Postgres database reached through a TCP proxy the test can cut.
pub async fn spawn_app_behind_proxy() -> (TestApp, DatabaseProxy) {
    spawn_app_behind_proxy_with(&[]).await
}

/// [`spawn_app_behind_proxy`] with extra environment values.
pub async fn spawn_app_behind_proxy_with(extra: &[(&str, String)]) -> (TestApp, DatabaseProxy) {
    let database = fresh_postgres().await;
    let app_url = url::Url::parse(&database.app_url()).expect("app URL");
    let upstream = format!(
        "{}:{}",
        app_url.host_str().expect("host"),
        app_url.port().unwrap_or(5432)
    );
    let proxy = DatabaseProxy::start(upstream).await;
    let through_proxy = |url: String| {
        let mut url = url::Url::parse(&url).expect("test URL");
        url.set_port(Some(proxy.port)).expect("set port");
        url.to_string()
    };
    let urls = DatabaseUrls {
        database: through_proxy(database.app_url()),
        service: Some(through_proxy(database.service_url())),
        operator: Some(database.operator_url()),
    };
    let guard = DatabaseGuard {
        _sqlite_dir: None,
        _postgres: Some(database),
    };
    (spawn(urls, guard, extra, |_| {}).await, proxy)
}

/// A TCP proxy in front of Postgres (or any TCP service): [`DatabaseProxy::cut`] closes every connection
/// and stops listening, [`DatabaseProxy::restore`] listens on the same port again.
pub struct DatabaseProxy {
    port: u16,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DatabaseProxy {
    async fn start(upstream: String) -> DatabaseProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        let task = Some(tokio::spawn(forward(listener, upstream.clone())));
        DatabaseProxy {
            port,
            upstream,
            task,
        }
    }

    /// The upstream becomes unreachable: open connections close, new ones are refused.
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// The upstream is reachable again, on the same port.
    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the proxy's port again");
        self.task = Some(tokio::spawn(forward(listener, self.upstream.clone())));
    }
}

/// Forwards every connection accepted on `listener` to `upstream` until aborted (which closes them all).
async fn forward(listener: tokio::net::TcpListener, upstream: String) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        let upstream = upstream.clone();
        connections.spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Where the app and the test's operator connect.
struct DatabaseUrls {
    /// `DATABASE_URL`.
    database: String,
    /// `BYOC_SERVICE_DATABASE_URL` (Postgres).
    service: Option<String>,
    /// The operator's login (Postgres), for [`TestApp::operator`].
    operator: Option<String>,
}

/// Starts the app on `urls` with extra environment values, after `tune` adjusted the parsed configuration.
async fn spawn(
    urls: DatabaseUrls,
    guard: DatabaseGuard,
    extra: &[(&str, String)],
    tune: impl FnOnce(&mut Config),
) -> TestApp {
    capture_logs();
    let master_key_hex = MasterKey::generate().to_hex();
    let jwt_secret = SecretString::from(format!("test-secret-{}", Uuid::new_v4().simple()));
    let operator = match &urls.operator {
        Some(url) => Some(Arc::new(
            PostgresStore::connect_operator(url)
                .await
                .expect("the operator connects"),
        ) as Arc<dyn CredentialRepository>),
        None => None,
    };
    let mut values: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), urls.database),
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
        urls.service
            .map(|url| ("BYOC_SERVICE_DATABASE_URL".to_owned(), url)),
    );
    values.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone())),
    );
    start(
        values,
        Some(guard),
        operator,
        jwt_secret,
        master_key_hex,
        tune,
    )
    .await
}

/// Starts the app with the configuration `values`.
async fn start(
    values: Vec<(String, String)>,
    guard: Option<DatabaseGuard>,
    operator: Option<Arc<dyn CredentialRepository>>,
    jwt_secret: SecretString,
    master_key_hex: SecretString,
    tune: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config::from_lookup(|name| {
        values
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("test configuration is valid");
    tune(&mut config);
    let services = Services::open(&config.runtime)
        .await
        .expect("services open");
    let repository = Arc::clone(&services.repository);
    let operator = operator.unwrap_or_else(|| Arc::clone(&repository));
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
        operator,
        jwt_secret,
        master_key_hex,
        config_values: values,
        database: guard,
    }
}

impl TestApp {
    /// Another replica: a second application on the same database, with the same keys and JWT secret (the
    /// database stays as long as this app, the first one, lives).
    pub async fn spawn_replica(&self) -> TestApp {
        start(
            self.config_values.clone(),
            None,
            Some(Arc::clone(&self.operator)),
            self.jwt_secret.clone(),
            self.master_key_hex.clone(),
            |_| {},
        )
        .await
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A token for `user` in `org`, valid for an hour.
    pub fn token(&self, org: OrgId, user: UserId) -> String {
        mint_token(
            &self.jwt_secret,
            &TokenClaimRules::default(),
            org.as_uuid(),
            user.as_uuid(),
            Duration::from_secs(3600),
        )
        .expect("mint")
    }

    /// A token for `user` in `org`, valid for an hour, that also carries the claims in `extra` (e.g. `email`).
    pub fn token_with_claims(&self, org: OrgId, user: UserId, extra: serde_json::Value) -> String {
        let mut claims = serde_json::json!({
            "sub": user.as_uuid(),
            "org_id": org.as_uuid(),
            "exp": chrono::Utc::now().timestamp() + 3600,
        });
        if let (Some(claims), serde_json::Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.jwt_secret.expose_secret().as_bytes()),
        )
        .expect("encode")
    }

    /// Creates an organization with an owner, an admin and a member.
    pub async fn create_org(&self, name: &str) -> TestOrg {
        let organization = self
            .operator
            .operator_create_organization(
                &OrganizationName::parse(name).expect("valid name"),
                HotLeadThreshold::DEFAULT,
            )
            .await
            .expect("create org");
        let mut users = Vec::new();
        for role in [Role::Owner, Role::Admin, Role::Member] {
            let user = UserId::new_random();
            self.operator
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

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), 200, "GET /metrics");
        response.text().await.expect("text")
    }

    /// The Prometheus text of `/metrics` with the per-organization series, scraped with the metrics token.
    pub async fn metrics_text_with(&self, metrics_token: &str) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(metrics_token)
            .send()
            .await
            .expect("request sent");
        assert_eq!(
            response.status(),
            200,
            "GET /metrics with the metrics token"
        );
        response.text().await.expect("text")
    }

    /// One unlabelled metric's value from `/metrics` (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// A GET with a bearer token, expecting 200 with a JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let response = self.get(path, token).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// A POST of JSON with a bearer token.
    pub async fn post_json(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A DELETE with a bearer token.
    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// Adds a Twilio credential as `token`'s user and returns the created row.
    pub async fn add_twilio(
        &self,
        token: &str,
        account_sid: &str,
        display_name: &str,
    ) -> serde_json::Value {
        let response = self
            .post_json(
                "/api/organization/credentials/twilio",
                token,
                &serde_json::json!({
                    "accountSid": account_sid,
                    "authToken": TWILIO_AUTH_TOKEN,
                    "phoneNumber": TWILIO_PHONE,
                    "displayName": display_name,
                }),
            )
            .await;
        assert_eq!(response.status(), 201, "add twilio");
        response.json().await.expect("row")
    }

    /// Every row of every table as text, with `encrypted_data` left out (Postgres), or the whole database
    /// file including its WAL (SQLite).
    pub async fn database_text(&self) -> String {
        if let Some(postgres) = &self
            .database
            .as_ref()
            .and_then(|guard| guard._postgres.as_ref())
        {
            // A superuser sees every row; the owner itself would see none (forced row-level security).
            let pool = postgres.superuser_pool(1).await;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&pool)
            .await
            .expect("list tables");
            let mut text = String::new();
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT (to_jsonb(t) - 'encrypted_data')::text FROM \"{table}\" t"
                ))
                .fetch_all(&pool)
                .await
                .expect("dump table");
                text.push_str(&rows.join("\n"));
            }
            pool.close().await;
            text
        } else {
            let dir = self
                .database
                .as_ref()
                .and_then(|guard| guard._sqlite_dir.as_ref())
                .expect("a SQLite app has its folder");
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(dir.path()).expect("list folder") {
                bytes.extend(std::fs::read(entry.expect("entry").path()).unwrap_or_default());
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    /// Runs `statement` as a Postgres superuser with `org` bound as `$1` (tampering behind the service's back).
    /// Panics on SQLite.
    pub async fn superuser_execute(&self, statement: &str, org: OrgId) {
        let postgres = self
            .database
            .as_ref()
            .and_then(|guard| guard._postgres.as_ref())
            .expect("a Postgres app");
        let pool = postgres.superuser_pool(1).await;
        sqlx::query(statement)
            .bind(org.as_uuid())
            .execute(&pool)
            .await
            .expect("superuser statement");
        pool.close().await;
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

/// Spawns the app on `store` with extra environment values, after `tune` adjusted the parsed configuration
/// (for settings that have no environment variable, such as the provider clients' timeouts and retry policy).
pub async fn spawn_app_tuned(
    store: Store,
    extra: &[(&str, String)],
    tune: impl FnOnce(&mut Config),
) -> TestApp {
    let (urls, guard) = match store {
        Store::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("byoc.db");
            (
                DatabaseUrls {
                    database: format!("sqlite://{}", path.display()),
                    service: None,
                    operator: None,
                },
                DatabaseGuard {
                    _sqlite_dir: Some(dir),
                    _postgres: None,
                },
            )
        }
        Store::Postgres => {
            let database = fresh_postgres().await;
            (
                DatabaseUrls {
                    database: database.app_url(),
                    service: Some(database.service_url()),
                    operator: Some(database.operator_url()),
                },
                DatabaseGuard {
                    _sqlite_dir: None,
                    _postgres: Some(database),
                },
            )
        }
    };
    spawn(urls, guard, extra, tune).await
}

/// A TCP proxy to `upstream` (`host:port`, any TCP service, e.g. a fake provider) and its local port;
/// [`DatabaseProxy::cut`] makes the upstream unreachable.
pub async fn tcp_proxy_to(upstream: &str) -> (DatabaseProxy, u16) {
    let proxy = DatabaseProxy::start(upstream.to_owned()).await;
    let port = proxy.port;
    (proxy, port)
}
