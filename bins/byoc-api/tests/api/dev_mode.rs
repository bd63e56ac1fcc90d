//! The `byoc-api` binary with no configuration: dev mode's banner, token and settings URL; a restart reuses
//! the generated keys (a stored credential still decrypts); SIGTERM stops it cleanly; with no provider URL or
//! credential configured, the provider sandbox answers (and a configured one turns it off).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::{fake_twilio, fake_twilio_answering_after, TWILIO_SID};

struct DevServer {
    child: Child,
    log: std::path::PathBuf,
    base: String,
    token: String,
    org: String,
}

fn start(dir: &std::path::Path, twilio: &str) -> DevServer {
    start_with(dir, &[("TWILIO_API_BASE", twilio)])
}

fn start_with(dir: &std::path::Path, variables: &[(&str, &str)]) -> DevServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_byoc-api"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BYOC_BIND", "127.0.0.1:0")
        .envs(variables.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr.log")).expect("log file"))
        .spawn()
        .expect("byoc-api starts");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = Vec::new();
    while !banner
        .iter()
        .any(|line: &String| line.starts_with("settings page:"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        banner.push(
            receiver
                .recv_timeout(left)
                .expect("the dev banner is printed"),
        );
    }
    let text = banner.join("\n");
    assert!(text.contains("DEV MODE"), "{text}");
    let field = |name: &str| {
        banner
            .iter()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
            .unwrap_or_else(|| panic!("{name} in the banner: {text}"))
    };
    let settings = field("settings page:");
    let base = settings
        .strip_suffix("/dashboard/settings")
        .expect("the settings URL is under the service")
        .to_owned();
    DevServer {
        child,
        log: dir.join("stderr.log"),
        base,
        token: field("dev token (24 h):"),
        org: field("demo organization:"),
    }
}

fn terminate(mut server: DevServer) {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            assert!(status.success(), "a clean exit on SIGTERM: {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "byoc-api did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn add_twilio(client: &reqwest::Client, server: &DevServer) -> String {
    let created = client
        .post(format!(
            "{}/api/organization/credentials/twilio",
            server.base
        ))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({
            "accountSid": TWILIO_SID,
            "authToken": crate::helpers::TWILIO_AUTH_TOKEN,
            "phoneNumber": crate::helpers::TWILIO_PHONE,
            "displayName": "Dev Twilio",
        }))
        .send()
        .await
        .unwrap_or_else(|error| {
            let log = std::fs::read_to_string(&server.log).unwrap_or_default();
            panic!("add twilio: {error}\nbyoc-api's log:\n{log}")
        });
    assert_eq!(created.status(), 201);
    created.json::<serde_json::Value>().await.expect("row")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    let twilio = fake_twilio_answering_after(Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let server = start(dir.path(), &twilio.uri());
    let id = add_twilio(&client, &server).await;
    let request = client
        .post(format!(
            "{}/api/organization/credentials/{id}/verify",
            server.base
        ))
        .bearer_auth(&server.token)
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = std::thread::spawn(move || terminate(server));
    let response = in_flight
        .await
        .expect("joined")
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("json")["verified"],
        true
    );
    stopping.join().expect("byoc-api stopped cleanly");
}

#[tokio::test]
async fn dev_mode_survives_a_restart_and_stops_on_sigterm() {
    let twilio = fake_twilio().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();

    let signing_key = |server: &DevServer| {
        let url = format!("{}/api/audit/signing-key", server.base);
        let client = client.clone();
        async move {
            let answer = client.get(url).send().await.expect("sent");
            assert_eq!(answer.status(), 200, "dev mode signs audit digests");
            let key: serde_json::Value = answer.json().await.expect("json");
            key["publicKey"].as_str().expect("publicKey").to_owned()
        }
    };

    let server = start(dir.path(), &twilio.uri());
    let id = add_twilio(&client, &server).await;
    let first_org = server.org.clone();
    let first_key = signing_key(&server).await;
    terminate(server);
    assert!(
        dir.path().join(".byoc-dev/audit-signing-key").exists(),
        "the generated signing key is kept in the dev folder"
    );

    let server = start(dir.path(), &twilio.uri());
    assert_eq!(server.org, first_org, "the demo organization is kept");
    assert_eq!(signing_key(&server).await, first_key, "and the signing key");
    let verified = client
        .post(format!(
            "{}/api/organization/credentials/{id}/verify",
            server.base
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("sent");
    assert_eq!(verified.status(), 200);
    let verified: serde_json::Value = verified.json().await.expect("json");
    assert_eq!(
        verified["verified"], true,
        "the restarted service still decrypts: {verified}"
    );
    terminate(server);
}

#[tokio::test]
async fn a_replaced_dev_key_is_refused_at_start() {
    let twilio = fake_twilio().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let server = start(dir.path(), &twilio.uri());
    add_twilio(&client, &server).await;
    terminate(server);

    let other_key = byoc_crypto::MasterKey::generate().to_hex();
    let keys_file = dir.path().join(".byoc-dev/master-keys");
    std::fs::write(
        &keys_file,
        format!("1:{}", secrecy::ExposeSecret::expose_secret(&other_key)),
    )
    .expect("replace the dev key");
    let output = Command::new(env!("CARGO_BIN_EXE_byoc-api"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BYOC_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "off")
        .output()
        .expect("byoc-api runs");
    assert_eq!(output.status.code(), Some(1), "start-up is refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("version 1"), "{stderr}");
}

async fn test_sms(client: &reqwest::Client, server: &DevServer, to: &str) -> reqwest::Response {
    client
        .post(format!("{}/api/sms/test", server.base))
        .bearer_auth(&server.token)
        .json(&serde_json::json!({ "to": to }))
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn dev_mode_sandbox_verifies_and_sends_with_twilio_test_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let server = start_with(dir.path(), &[]);
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        log.contains("WARN") && log.contains("DEV MODE SANDBOX"),
        "a loud start line: {log}"
    );
    let id = add_twilio(&client, &server).await;
    let verified: serde_json::Value = client
        .post(format!(
            "{}/api/organization/credentials/{id}/verify",
            server.base
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(verified["verified"], true, "{verified}");

    let sent = test_sms(&client, &server, "+14155550199").await;
    assert_eq!(sent.status(), 200);
    for (number, code) in [("+15005550001", "21211"), ("+15005550009", "21614")] {
        let refused = test_sms(&client, &server, number).await;
        assert_eq!(refused.status(), 424, "{number}");
        let body: serde_json::Value = refused.json().await.expect("json");
        assert_eq!(body["error"]["code"], "provider_refused", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(code), "{number}: {message}");
    }
    terminate(server);
}

#[tokio::test]
async fn dev_mode_sandbox_is_off_when_a_provider_is_configured() {
    let twilio = fake_twilio().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = reqwest::Client::new();
    let server = start(dir.path(), &twilio.uri());
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        log.contains("sandbox is off because TWILIO_API_BASE is configured"),
        "{log}"
    );
    let sandbox = client
        .get(format!("{}/_sandbox/stripe/v1/balance", server.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(sandbox.status(), 404);
    terminate(server);
}

#[tokio::test]
async fn dev_mode_sandbox_never_exists_outside_dev_mode() {
    let app = crate::helpers::spawn_app().await;
    let org = app.create_org("Configured clinic").await;
    let token = app.token(org.id, org.owner);
    assert_eq!(
        app.get("/_sandbox/stripe/v1/balance", &token)
            .await
            .status(),
        404
    );
    let consent = app
        .get(
            "/_sandbox/google/consent?client_id=byoc-dev-sandbox",
            &token,
        )
        .await;
    assert_eq!(consent.status(), 404);
}
