//! Runs every test-SMS scenario of the plan's Phase 0 against a fake Twilio and writes
//! `docs/twilio-sms-test-results.md` (or the path given as the first argument).
//!
//! `cargo run -p byoc-api --example sms_scenarios [-- OUTPUT.md]`
//!
//! The real `byoc-api` runs on a temporary SQLite store with fresh keys; the fake Twilio (wiremock) answers as
//! Twilio documents: an active account with an SMS-capable number, and the documented error bodies for an
//! unverified recipient (21608), an unsubscribed recipient (21610), rate limiting (20429 with `Retry-After`)
//! and an account whose auth token stopped working (20003). Each scenario goes through `POST /api/sms/test`
//! as an organization member; the document records the request, the answer's status, error code and
//! message, and the latency measured around the HTTP call.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use byoc_api::startup::config::Config;
use byoc_api::startup::config::TokenClaimRules;
use byoc_api::{Application, Services};
use byoc_credential_store::{
    CredentialRepository, HotLeadThreshold, OrganizationName, Role, UserId,
};
use byoc_crypto::MasterKey;
use byoc_runtime::tokens::mint_token;
use secrecy::{ExposeSecret, SecretString};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GOOD_SID: &str = "AC0123456789abcdef0123456789abcdef";
const REVOKED_SID: &str = "AC0fedcba9876543210fedcba987654321";
const AUTH_TOKEN: &str = "scenario-auth-token-0123456789";
const SENDER: &str = "+14155550123";
const RECIPIENT: &str = "+14155550199";
const UNVERIFIED_RECIPIENT: &str = "+14155550101";
const UNSUBSCRIBED_RECIPIENT: &str = "+14155550102";
const THROTTLED_RECIPIENT: &str = "+14155550103";

struct Scenario {
    name: &'static str,
    org: &'static str,
    to: &'static str,
    expected: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "success",
        org: "configured",
        to: RECIPIENT,
        expected: "200 with Twilio's message SID and status",
    },
    Scenario {
        name: "invalid phone",
        org: "configured",
        to: "+1415555",
        expected: "422 naming `to`; Twilio is not called",
    },
    Scenario {
        name: "auth failure",
        org: "revoked token",
        to: RECIPIENT,
        expected: "424 carrying Twilio 20003; the credential is marked failed",
    },
    Scenario {
        name: "after auth failure",
        org: "revoked token",
        to: RECIPIENT,
        expected: "409 credential_not_configured (the failed credential is not used again)",
    },
    Scenario {
        name: "unverified number (trial account)",
        org: "configured",
        to: UNVERIFIED_RECIPIENT,
        expected: "424 carrying Twilio 21608",
    },
    Scenario {
        name: "unsubscribed recipient",
        org: "configured",
        to: UNSUBSCRIBED_RECIPIENT,
        expected: "424 carrying Twilio 21610",
    },
    Scenario {
        name: "rate limited by Twilio",
        org: "configured",
        to: THROTTLED_RECIPIENT,
        expected: "429 with Retry-After from Twilio's answer",
    },
    Scenario {
        name: "not configured",
        org: "no credential",
        to: RECIPIENT,
        expected: "409 credential_not_configured naming Twilio",
    },
    Scenario {
        name: "deactivated",
        org: "deactivated",
        to: RECIPIENT,
        expected: "409 credential_not_configured right after deactivation",
    },
];

struct Outcome {
    status: u16,
    code: String,
    message: String,
    retry_after: Option<String>,
    latency: Duration,
}

async fn fake_twilio() -> MockServer {
    let server = MockServer::start().await;
    for sid in [GOOD_SID, REVOKED_SID] {
        Mock::given(method("GET"))
            .and(path(format!(
                "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "incoming_phone_numbers": [{"phone_number": SENDER, "capabilities": {"sms": true}}]
            })))
            .mount(&server)
            .await;
    }
    let messages = format!("/2010-04-01/Accounts/{GOOD_SID}/Messages.json");
    let refusals = [
        (UNVERIFIED_RECIPIENT, 400, 21608, "The number +14155550101 is unverified. Trial accounts cannot send messages to unverified numbers; verify +14155550101 at twilio.com/user/account/phone-numbers/verified, or purchase a Twilio number to send messages to unverified numbers."),
        (UNSUBSCRIBED_RECIPIENT, 400, 21610, "Attempt to send to unsubscribed recipient"),
        (THROTTLED_RECIPIENT, 429, 20429, "Too Many Requests"),
    ];
    for (to, status, code, message) in refusals {
        let encoded: String = url::form_urlencoded::byte_serialize(to.as_bytes()).collect();
        Mock::given(method("POST"))
            .and(path(messages.clone()))
            .and(body_string_contains(format!("To={encoded}")))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("Retry-After", "120")
                    .set_body_json(serde_json::json!({
                        "code": code, "message": message,
                        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status
                    })),
            )
            .with_priority(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(messages))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
            "sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/2010-04-01/Accounts/{REVOKED_SID}/Messages.json"
        )))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "code": 20003, "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401
        })))
        .mount(&server)
        .await;
    server
}

struct Org {
    admin: String,
    member: String,
}

async fn create_org(
    repository: &Arc<dyn CredentialRepository>,
    jwt_secret: &SecretString,
    name: &str,
) -> Result<Org, Box<dyn Error>> {
    let organization = repository
        .operator_create_organization(&OrganizationName::parse(name)?, HotLeadThreshold::DEFAULT)
        .await?;
    let mut tokens = Vec::new();
    for role in [Role::Admin, Role::Member] {
        let user = UserId::new_random();
        repository
            .operator_add_member(organization.id, user, role)
            .await?;
        tokens.push(mint_token(
            jwt_secret,
            &TokenClaimRules::default(),
            organization.id.as_uuid(),
            user.as_uuid(),
            Duration::from_secs(3600),
        )?);
    }
    let member = tokens.pop().ok_or("member token")?;
    let admin = tokens.pop().ok_or("admin token")?;
    Ok(Org { admin, member })
}

async fn add_verified_twilio(
    client: &reqwest::Client,
    base: &str,
    org: &Org,
    sid: &str,
) -> Result<String, Box<dyn Error>> {
    let row: serde_json::Value = client
        .post(format!("{base}/api/organization/credentials/twilio"))
        .bearer_auth(&org.admin)
        .json(&serde_json::json!({
            "accountSid": sid, "authToken": AUTH_TOKEN, "phoneNumber": SENDER, "displayName": "Clinic Twilio"
        }))
        .send()
        .await?
        .json()
        .await?;
    let id = row["id"].as_str().ok_or("credential id")?.to_owned();
    let verified: serde_json::Value = client
        .post(format!("{base}/api/organization/credentials/{id}/verify"))
        .bearer_auth(&org.admin)
        .send()
        .await?
        .json()
        .await?;
    if verified["verified"] != true {
        return Err(format!("verification failed: {verified}").into());
    }
    Ok(id)
}

async fn run(
    client: &reqwest::Client,
    base: &str,
    org: &Org,
    to: &str,
) -> Result<Outcome, Box<dyn Error>> {
    let started = Instant::now();
    let response = client
        .post(format!("{base}/api/sms/test"))
        .bearer_auth(&org.member)
        .json(&serde_json::json!({"to": to}))
        .send()
        .await?;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = response.json().await?;
    let (code, message) = if status == 200 {
        (
            "—".to_owned(),
            format!(
                "sid {}, status {}",
                body["sid"].as_str().unwrap_or_default(),
                body["status"].as_str().unwrap_or_default()
            ),
        )
    } else {
        (
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    Ok(Outcome {
        status,
        code,
        message,
        retry_after,
        latency,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let output = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs/twilio-sms-test-results.md".to_owned());
    let twilio = fake_twilio().await;
    let folder = tempfile::tempdir()?;
    let master_key = MasterKey::generate().to_hex();
    let jwt_secret =
        SecretString::from(format!("scenario-secret-{}", uuid::Uuid::new_v4().simple()));
    let values = [
        (
            "DATABASE_URL",
            format!("sqlite://{}", folder.path().join("byoc.db").display()),
        ),
        (
            "BYOC_MASTER_KEYS",
            format!("1:{}", master_key.expose_secret()),
        ),
        ("BYOC_JWT_SECRET", jwt_secret.expose_secret().to_owned()),
        ("BYOC_BIND", "127.0.0.1:0".to_owned()),
        ("TWILIO_API_BASE", twilio.uri()),
    ];
    let config = Config::from_lookup(|name| {
        values
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })?;
    let services = Services::open(&config.runtime).await?;
    let repository = Arc::clone(&services.repository);
    let application = Application::with_services(&config, services)?;
    let base = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::new();

    let configured = create_org(&repository, &jwt_secret, "Configured clinic").await?;
    add_verified_twilio(&client, &base, &configured, GOOD_SID).await?;
    let revoked = create_org(&repository, &jwt_secret, "Revoked-token clinic").await?;
    add_verified_twilio(&client, &base, &revoked, REVOKED_SID).await?;
    let unconfigured = create_org(&repository, &jwt_secret, "Unconfigured clinic").await?;
    let deactivated = create_org(&repository, &jwt_secret, "Deactivated clinic").await?;
    let id = add_verified_twilio(&client, &base, &deactivated, GOOD_SID).await?;
    let warm = run(&client, &base, &deactivated, RECIPIENT).await?;
    if warm.status != 200 {
        return Err(format!(
            "the deactivation scenario's first send failed: {}",
            warm.status
        )
        .into());
    }
    client
        .delete(format!("{base}/api/organization/credentials/{id}"))
        .bearer_auth(&deactivated.admin)
        .send()
        .await?
        .error_for_status()?;

    let mut rows = String::new();
    for scenario in SCENARIOS {
        let org = match scenario.org {
            "configured" => &configured,
            "revoked token" => &revoked,
            "no credential" => &unconfigured,
            _ => &deactivated,
        };
        let outcome = run(&client, &base, org, scenario.to).await?;
        let retry = outcome
            .retry_after
            .map(|seconds| format!(" (Retry-After: {seconds})"))
            .unwrap_or_default();
        writeln!(
            rows,
            "| {} | `{{\"to\": \"{}\"}}` ({}) | {}{} | {} | {} | {:.1} ms | {} |",
            scenario.name,
            scenario.to,
            scenario.org,
            outcome.status,
            retry,
            outcome.code,
            outcome.message.replace('|', "\\|"),
            outcome.latency.as_secs_f64() * 1000.0,
            scenario.expected,
        )?;
        println!("{:<36} {} {}", scenario.name, outcome.status, outcome.code);
    }
    let sends = twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.method.as_str() == "POST")
        .count();
    let document = format!(
        "# Twilio SMS test results (Phase 0)\n\n\
         **These results were produced against a mock of Twilio, not a real Twilio account.** The command\n\
         `cargo run -p byoc-api --example sms_scenarios` (source: `bins/byoc-api/examples/sms_scenarios.rs`)\n\
         starts the real `byoc-api` on a temporary SQLite store and points `TWILIO_API_BASE` at a local fake\n\
         (wiremock) that answers with Twilio's documented bodies and codes. Every request is\n\
         `POST /api/sms/test` as a member of the organization named in the second column; the text sent is the\n\
         plan's hot-lead alert (\"🔥 Hot Lead! Test Lead just expressed high interest in booking.\"). Latency is\n\
         measured around the HTTP call to byoc-api (fake Twilio on localhost, debug build), so it shows byoc's own\n\
         overhead, not Twilio's or the carrier's.\n\n\
         | scenario | request (organization) | status | error code | message | latency | expected |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n\
         {rows}\n\
         The fake Twilio received {sends} message requests in total (the invalid phone, not-configured and\n\
         deactivated scenarios, and the send after the auth failure, never reach Twilio).\n\n\
         Request shapes are checked separately against a Prism mock of Twilio's own OpenAPI spec\n\
         (`cargo test -p byoc-api --test api sms::sends_conform_to_twilios_openapi_spec`).\n\n\
         ## Running it against a real Twilio account\n\n\
         The fake cannot show that an SMS *arrives*. To check delivery (the plan's \"arrives within 5 seconds\"):\n\n\
         1. Run `byoc-api` with `BYOC_PUBLIC_URL` set to an https URL Twilio can reach (e.g. a tunnel), so the\n\
            status callback `{{BYOC_PUBLIC_URL}}/api/webhooks/twilio/status?org=ORG` is delivered, and without\n\
            `TWILIO_API_BASE` (the default is `https://api.twilio.com`).\n\
         2. Add the clinic's Account SID, Auth Token and number (`POST /api/organization/credentials/twilio` or\n\
            the settings page) and verify it.\n\
         3. `curl -X POST $BYOC/api/sms/test -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json'\n\
            -d '{{\"to\": \"+1…\"}}'` for each scenario: your own phone (success), `+1415555` (invalid phone), a\n\
            number not verified on a trial account (21608), a number that replied STOP (21610); rotate the auth\n\
            token in the Twilio console for the auth failure.\n\
         4. The webhook records each status with its time; the log line `SMS status recorded` carries\n\
            `delivery_ms`, the time from send to `delivered`.\n"
    );
    std::fs::write(&output, document)?;
    println!("wrote {output}");
    Ok(())
}
