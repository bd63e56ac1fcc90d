//! Per-organization rate limits shared by replicas through Redis (`BYOC_REDIS_URL`): three replicas on one
//! Postgres database and one key prefix send at most the limit's burst (plus what the minute replenishes)
//! however the requests are spread; a private Redis killed mid-test leaves the replicas serving on their own
//! limits (gauge 1, one warning), and restarted on the same port makes them share again (gauge 0).
//!
//! The shared tests use the Redis on `BYOC_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`), each under a key
//! prefix of its own; the outage test starts and kills a `redis-server` of its own, never that one.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::process::{Child, Command};
use wiremock::MockServer;

use crate::helpers::{captured_logs, Store, TestApp};
use crate::sms::{
    app_with_twilio_on, fake_twilio_accounts, send_test, verified_twilio, RECIPIENT, SID_A,
};

/// The Redis the shared tests use.
fn test_redis_url() -> String {
    std::env::var("BYOC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `BYOC_REDIS_TIMEOUT_MS` of these tests: long enough that a loaded test machine's stalls are not taken for
/// an outage (a Redis that does not answer within the timeout is the SIGSTOP test of `usecases::shared_limits`).
const GENEROUS_TIMEOUT_MS: &str = "2000";

/// A key prefix no other test uses.
fn fresh_prefix() -> String {
    format!("byoc-test:{}:", uuid::Uuid::new_v4().simple())
}

/// How many messages the fake Twilio was asked to send.
async fn messages_sent(twilio: &MockServer) -> usize {
    twilio
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.url.path().ends_with("/Messages.json"))
        .count()
}

/// The `Retry-After` of a 429, in seconds.
fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("a 429 carries Retry-After in seconds")
}

#[tokio::test]
async fn three_replicas_send_at_most_the_organizations_limit_together() {
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let first = app_with_twilio_on(
        Store::Postgres,
        &twilio,
        &[
            ("BYOC_SMS_PER_MINUTE", "10".to_owned()),
            ("BYOC_REDIS_URL", test_redis_url()),
            ("BYOC_REDIS_KEY_PREFIX", fresh_prefix()),
            // Sharing is what this test checks: a stall of the loaded test machine must not look like an outage.
            ("BYOC_REDIS_TIMEOUT_MS", GENEROUS_TIMEOUT_MS.to_owned()),
        ],
    )
    .await;
    let second = first.spawn_replica().await;
    let third = first.spawn_replica().await;
    let org = first.create_org("Busy clinic").await;
    verified_twilio(&first, &org, SID_A).await;

    let replicas = [&first, &second, &third];
    let started = Instant::now();
    let responses = join_all((0..60).map(|i| send_test(replicas[i % 3], &org, RECIPIENT))).await;
    let elapsed = started.elapsed();

    let mut admitted = 0;
    for response in &responses {
        match response.status().as_u16() {
            200 => admitted += 1,
            429 => assert!((1..=60).contains(&retry_after(response))),
            other => panic!("only 200 and 429 are expected, got {other}"),
        }
    }
    let sent = messages_sent(&twilio).await;
    assert_eq!(sent, admitted, "every admitted request sent one message");
    // A limit of 10 per minute: a burst of 10, then one more every 6 s of the run.
    let replenished = (elapsed.as_secs() / 6) as usize;
    assert!(
        (1..=10 + replenished).contains(&sent),
        "{sent} messages sent by three replicas in {elapsed:?} against 10 per minute"
    );
    for replica in replicas {
        assert_eq!(replica.metric("byoc_redis_limits_degraded").await, 0.0);
        assert_eq!(replica.metric("byoc_redis_limit_errors_total").await, 0.0);
    }
}

/// A `redis-server` of the test's own on a free port, without persistence.
struct PrivateRedis {
    port: u16,
    process: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut redis = PrivateRedis {
            port,
            process: None,
        };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server on the same port and waits until it answers PING.
    async fn restart(&mut self) {
        let process = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        self.process = Some(process);
        let client = redis::Client::open(self.url()).expect("URL");
        for _ in 0..100 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the private redis-server does not answer on port {}",
            self.port
        );
    }

    /// Kills the server (SIGKILL): its connections drop and its port refuses connections.
    async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await.expect("kill redis-server");
        }
    }
}

/// Sends a test SMS and checks that Redis's state never makes it fail: 200 or 429.
async fn send_and_status(app: &TestApp, org: &crate::helpers::TestOrg) -> u16 {
    let status = send_test(app, org, RECIPIENT).await.status().as_u16();
    assert!(status == 200 || status == 429, "got {status}");
    status
}

#[tokio::test]
async fn replicas_use_their_own_limits_while_redis_is_down_and_share_again_when_it_is_back() {
    let mut redis = PrivateRedis::start().await;
    let prefix = fresh_prefix();
    let twilio = fake_twilio_accounts(&[SID_A]).await;
    let first = app_with_twilio_on(
        Store::Postgres,
        &twilio,
        &[
            ("BYOC_SMS_PER_MINUTE", "1".to_owned()),
            ("BYOC_REDIS_URL", redis.url()),
            ("BYOC_REDIS_KEY_PREFIX", prefix.clone()),
            // A killed Redis refuses connections at once; only a stall of the machine could wait this long.
            ("BYOC_REDIS_TIMEOUT_MS", GENEROUS_TIMEOUT_MS.to_owned()),
        ],
    )
    .await;
    let second = first.spawn_replica().await;
    let org = first.create_org("Clinic").await;
    verified_twilio(&first, &org, SID_A).await;

    assert_eq!(send_and_status(&first, &org).await, 200);
    assert_eq!(
        send_and_status(&second, &org).await,
        429,
        "one SMS a minute, shared: the second replica counts the first one's"
    );

    redis.kill().await;
    assert_eq!(
        send_and_status(&first, &org).await,
        200,
        "served on the replica's own limit"
    );
    assert_eq!(first.metric("byoc_redis_limits_degraded").await, 1.0);
    assert!(first.metric("byoc_redis_limit_errors_total").await >= 1.0);
    assert_eq!(
        send_and_status(&first, &org).await,
        429,
        "the replica's own limit applies"
    );

    redis.restart().await;
    let mut degraded = 1.0;
    for _ in 0..100 {
        send_and_status(&first, &org).await;
        degraded = first.metric("byoc_redis_limits_degraded").await;
        if degraded == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(degraded, 0.0, "the replica shares its limits again");
    // The restarted Redis was empty, so the first replica's SMS since then spent the shared minute; the second
    // replica's own bucket is full and answers only while Redis does not.
    assert_eq!(
        send_and_status(&second, &org).await,
        429,
        "the second replica counts the first one's SMS again"
    );
    assert_eq!(second.metric("byoc_redis_limits_degraded").await, 0.0);

    let logs = captured_logs();
    let lines = |message: &str| {
        logs.lines()
            .filter(|line| line.contains(message) && line.contains(&prefix))
            .count()
    };
    assert_eq!(
        lines("Redis does not answer"),
        1,
        "one warning for the episode"
    );
    assert_eq!(lines("Redis answers again"), 1, "one line when it ends");
}
