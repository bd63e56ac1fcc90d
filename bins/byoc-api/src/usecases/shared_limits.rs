//! Per-organization rate limits shared by every replica through Redis (`BYOC_REDIS_URL`).
//!
//! - One round trip per admission (a second only to replace a connection Redis dropped): [`GCRA_SCRIPT`]
//!   (EVALSHA, loaded again when Redis answers NOSCRIPT) checks and takes the guarded action's limits
//!   atomically, on Redis's clock, with the same GCRA and bursts as the in-process limiter. One key per
//!   organization and limit, `{BYOC_REDIS_KEY_PREFIX}limit:{<org id>}:<limit>` (the braces keep an
//!   organization's keys in one Redis Cluster slot), each expiring when its bucket is full again.
//! - Redis unreachable or slow: an admission waits at most `BYOC_REDIS_TIMEOUT_MS` (default
//!   [`DEFAULT_ADMISSION_TIMEOUT`]), then this replica's own buckets answer. One warning per episode,
//!   `byoc_redis_limits_degraded` is 1 and `byoc_redis_limit_errors_total` counts the failed round trips. While
//!   degraded, Redis is asked again at most once per [`RETRY_INTERVAL`] (the other admissions do not wait for
//!   it); its first answer ends the episode (one info line, gauge 0). Redis never makes a request fail.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use byoc_credential_store::OrgId;
use byoc_runtime::config::{invalid, ConfigError};
use prometheus::{IntCounter, IntGauge};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::plumbing::metrics::Metrics;
use crate::usecases::rate_limits::{Guarded, InProcessLimits, Limit, LimitRates, Refusal};

/// How long an admission waits for Redis before this replica's own buckets answer, when
/// `BYOC_REDIS_TIMEOUT_MS` is unset.
pub const DEFAULT_ADMISSION_TIMEOUT: Duration = Duration::from_millis(100);
/// The longest `BYOC_REDIS_TIMEOUT_MS` accepted.
const MAX_ADMISSION_TIMEOUT_MS: u64 = 5_000;
/// While Redis does not answer, how often one admission asks it again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// The key prefix when `BYOC_REDIS_KEY_PREFIX` is unset.
pub const DEFAULT_KEY_PREFIX: &str = "byoc:";
/// The longest `BYOC_REDIS_KEY_PREFIX` accepted.
const MAX_KEY_PREFIX_LEN: usize = 64;

/// The GCRA over `#KEYS` limits, taken in order, on Redis's clock (`TIME`, so every replica shares one clock).
/// `KEYS[i]` holds limit i's theoretical arrival time in microseconds; `ARGV[2i-1]` is its interval (a minute
/// divided by the rate) and `ARGV[2i]` its tolerance (interval × (burst − 1)), in microseconds. Answers
/// `{0, 0}` when every limit admitted, else `{i, wait}`: limit i refused for `wait` microseconds (the limits
/// before it stay taken, as in governor). Each key expires when its bucket is full again.
pub const GCRA_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key)) or now
  local earliest = tat - tolerance
  if now < earliest then
    return {i, earliest - now}
  end
  local next_tat = math.max(tat, now) + interval
  redis.call('SET', key, string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
end
return {0, 0}
";

/// Where the shared limits live: `BYOC_REDIS_URL` (parsed; may hold a password, so never printed),
/// `BYOC_REDIS_KEY_PREFIX`, and how long an admission waits for Redis (`BYOC_REDIS_TIMEOUT_MS`).
pub struct SharedLimitsConfig {
    client: RedisClient,
    key_prefix: String,
    admission_timeout: Duration,
}

/// A parsed Redis URL; `Debug` prints only the type name (the URL may hold a password).
struct RedisClient(redis::Client);

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RedisClient")
    }
}

impl std::fmt::Debug for SharedLimitsConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SharedLimitsConfig")
            .field("client", &self.client)
            .field("key_prefix", &self.key_prefix)
            .field("admission_timeout", &self.admission_timeout)
            .finish()
    }
}

impl SharedLimitsConfig {
    /// Reads `BYOC_REDIS_URL`, `BYOC_REDIS_KEY_PREFIX` and `BYOC_REDIS_TIMEOUT_MS` with `get` (a variable's
    /// value, `None` when unset); `None` without a URL. A bad value names its variable and never repeats the URL.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<SharedLimitsConfig>, ConfigError> {
        let key_prefix = match get("BYOC_REDIS_KEY_PREFIX") {
            None => DEFAULT_KEY_PREFIX.to_owned(),
            Some(text) => parse_key_prefix(text.trim())?,
        };
        let admission_timeout = match get("BYOC_REDIS_TIMEOUT_MS") {
            None => DEFAULT_ADMISSION_TIMEOUT,
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|millis| (1..=MAX_ADMISSION_TIMEOUT_MS).contains(millis))
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    invalid(
                        "BYOC_REDIS_TIMEOUT_MS",
                        format!("must be a whole number of milliseconds from 1 to {MAX_ADMISSION_TIMEOUT_MS}"),
                    )
                })?,
        };
        let Some(url) = get("BYOC_REDIS_URL") else {
            return Ok(None);
        };
        let url = url.trim();
        if !(url.starts_with("redis://") || url.starts_with("redis+unix://")) {
            return Err(invalid(
                "BYOC_REDIS_URL",
                "must be a redis:// (or redis+unix://) URL",
            ));
        }
        let client = redis::Client::open(url)
            .map_err(|_| invalid("BYOC_REDIS_URL", "not a valid Redis URL"))?;
        Ok(Some(SharedLimitsConfig {
            client: RedisClient(client),
            key_prefix,
            admission_timeout,
        }))
    }

    /// The prefix of every key the limits write.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }
}

fn parse_key_prefix(text: &str) -> Result<String, ConfigError> {
    const VARIABLE: &str = "BYOC_REDIS_KEY_PREFIX";
    if text.is_empty() || text.len() > MAX_KEY_PREFIX_LEN {
        return Err(invalid(
            VARIABLE,
            format!("must be 1 to {MAX_KEY_PREFIX_LEN} characters"),
        ));
    }
    if text
        .chars()
        .any(|character| character.is_whitespace() || character == '{' || character == '}')
    {
        return Err(invalid(
            VARIABLE,
            "must not contain spaces or braces (the braces of the keys choose their Redis Cluster slot)",
        ));
    }
    Ok(text.to_owned())
}

/// `byoc_redis_limits_degraded` and `byoc_redis_limit_errors_total`, registered whether or not Redis is
/// configured (the gauge stays 0 without it).
#[derive(Clone)]
pub struct SharedLimitsMetrics {
    degraded: IntGauge,
    errors: IntCounter,
}

impl SharedLimitsMetrics {
    /// Registers both series in `metrics`' public registry.
    pub fn register(metrics: &Metrics) -> Result<SharedLimitsMetrics, prometheus::Error> {
        let degraded = IntGauge::new(
            "redis_limits_degraded",
            "1 while Redis does not answer and this replica applies the per-organization rate limits on its own (0 when they are shared, or without BYOC_REDIS_URL)",
        )?;
        let errors = IntCounter::new(
            "redis_limit_errors_total",
            "Rate-limit admissions Redis did not answer in time or answered with an error (each then answered by this replica's own limits)",
        )?;
        metrics.register(Box::new(degraded.clone()))?;
        metrics.register(Box::new(errors.clone()))?;
        Ok(SharedLimitsMetrics { degraded, errors })
    }
}

/// Why shared limits could not start.
#[derive(Debug, thiserror::Error)]
pub enum SharedLimitsError {
    /// The Redis client needs a Tokio runtime to start in.
    #[error("shared rate limits must start inside a Tokio runtime")]
    NoRuntime,
    /// The Redis client refused its configuration.
    #[error("Redis client: {0}")]
    Client(#[source] redis::RedisError),
}

/// Buckets in Redis shared by every replica, and this replica's own for when Redis does not answer.
pub struct SharedLimits {
    connection: ConnectionManager,
    admission_timeout: Duration,
    script: redis::Script,
    key_prefix: String,
    rates: LimitRates,
    fallback: InProcessLimits,
    health: Health,
}

impl SharedLimits {
    /// Shared limits of `rates` in the Redis of `config`. Connects lazily (Redis need not answer at start-up:
    /// until it does, this replica's own buckets answer). Must be called inside a Tokio runtime.
    pub fn start(
        config: &SharedLimitsConfig,
        rates: LimitRates,
        metrics: SharedLimitsMetrics,
    ) -> Result<SharedLimits, SharedLimitsError> {
        tokio::runtime::Handle::try_current().map_err(|_| SharedLimitsError::NoRuntime)?;
        let admission_timeout = config.admission_timeout;
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(admission_timeout.max(RETRY_INTERVAL)))
            .set_response_timeout(Some(admission_timeout.max(RETRY_INTERVAL)));
        let connection =
            ConnectionManager::new_lazy_with_config(config.client.0.clone(), manager_config)
                .map_err(SharedLimitsError::Client)?;
        tracing::info!(
            key_prefix = %config.key_prefix,
            timeout_ms = millis(admission_timeout),
            "per-organization rate limits are shared through Redis"
        );
        Ok(SharedLimits {
            connection,
            admission_timeout,
            script: redis::Script::new(GCRA_SCRIPT),
            key_prefix: config.key_prefix.clone(),
            rates,
            fallback: InProcessLimits::new(rates),
            health: Health::new(metrics, config.key_prefix.clone(), admission_timeout),
        })
    }

    /// Takes one unit of each of `what`'s limits for `org` in Redis (one round trip), or, when Redis does not
    /// answer within the admission timeout (or is being left alone after failing), in this replica's buckets.
    pub async fn admit(&self, org: OrgId, what: Guarded) -> Result<(), Refusal> {
        if !self.health.may_ask_redis() {
            return self.fallback.admit(org, what);
        }
        match tokio::time::timeout(self.admission_timeout, self.ask_redis(org, what)).await {
            Ok(Ok(decision)) => {
                self.health.answered();
                decision
            }
            Ok(Err(error)) => {
                self.health.failed(&error);
                self.fallback.admit(org, what)
            }
            Err(_) => {
                self.health.failed(&format!(
                    "no answer within {} ms",
                    self.admission_timeout.as_millis()
                ));
                self.fallback.admit(org, what)
            }
        }
    }

    /// Whether Redis is being left alone and this replica's buckets answer (what the gauge shows).
    pub fn is_degraded(&self) -> bool {
        self.health.degraded.load(Ordering::Acquire)
    }

    /// Drops this replica's fallback buckets of idle organizations.
    pub fn forget_idle(&self) {
        self.fallback.forget_idle();
    }

    /// The key of `org`'s bucket of `limit`.
    pub fn key(&self, org: OrgId, limit: Limit) -> String {
        format!("{}limit:{{{org}}}:{}", self.key_prefix, limit.as_str())
    }

    async fn ask_redis(&self, org: OrgId, what: Guarded) -> Result<Result<(), Refusal>, String> {
        let limits = what.limits();
        let mut invocation = self.script.prepare_invoke();
        for &limit in limits {
            let interval = micros(self.rates.interval(limit));
            let burst = u64::from(self.rates.per_minute(limit).get());
            invocation
                .key(self.key(org, limit))
                .arg(interval)
                .arg(interval.saturating_mul(burst - 1));
        }
        let mut connection = self.connection.clone();
        let answer = match invocation.invoke_async(&mut connection).await {
            // A connection Redis dropped (a restart, an idle timeout) is replaced by the manager on its first
            // failure; the admission tries the new one once, within the same timeout.
            Err(error) if error.is_io_error() || error.is_connection_dropped() => {
                invocation.invoke_async(&mut connection).await
            }
            answer => answer,
        };
        let (refused_by, wait): (usize, u64) = answer.map_err(|error| error.to_string())?;
        if refused_by == 0 {
            return Ok(Ok(()));
        }
        let limit = limits.get(refused_by - 1).copied().ok_or_else(|| {
            format!(
                "the limit script named limit {refused_by} of {}",
                limits.len()
            )
        })?;
        Ok(Err(Refusal {
            limit,
            wait: Duration::from_micros(wait),
        }))
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Whether Redis answers, when to ask it again, and the log lines and metrics of an episode.
struct Health {
    degraded: AtomicBool,
    /// Milliseconds after `started` before which a degraded replica does not ask Redis.
    retry_at_ms: AtomicU64,
    started: Instant,
    metrics: SharedLimitsMetrics,
    key_prefix: String,
    admission_timeout: Duration,
}

impl Health {
    fn new(
        metrics: SharedLimitsMetrics,
        key_prefix: String,
        admission_timeout: Duration,
    ) -> Health {
        metrics.degraded.set(0);
        Health {
            degraded: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            started: Instant::now(),
            metrics,
            key_prefix,
            admission_timeout,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Healthy: always. Degraded: for one admission per [`RETRY_INTERVAL`] (the one that claims the retry).
    fn may_ask_redis(&self) -> bool {
        if !self.degraded.load(Ordering::Acquire) {
            return true;
        }
        let now = self.now_ms();
        let retry_at = self.retry_at_ms.load(Ordering::Acquire);
        now >= retry_at
            && self
                .retry_at_ms
                .compare_exchange(
                    retry_at,
                    now + millis(RETRY_INTERVAL),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn answered(&self) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            self.metrics.degraded.set(0);
            tracing::info!(
                key_prefix = %self.key_prefix,
                "Redis answers again: per-organization rate limits are shared across replicas again"
            );
        }
    }

    fn failed(&self, cause: &str) {
        self.metrics.errors.inc();
        self.retry_at_ms
            .store(self.now_ms() + millis(RETRY_INTERVAL), Ordering::Release);
        if !self.degraded.swap(true, Ordering::AcqRel) {
            self.metrics.degraded.set(1);
            tracing::warn!(
                key_prefix = %self.key_prefix,
                error = cause,
                timeout_ms = millis(self.admission_timeout),
                retry_interval_ms = millis(RETRY_INTERVAL),
                "Redis does not answer: per-organization rate limits are applied by this replica alone until it does"
            );
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Option<SharedLimitsConfig>, ConfigError> {
        SharedLimitsConfig::from_lookup(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_redis_url_and_prefix_are_parsed_and_bad_values_name_the_variable() {
        assert!(config(&[]).expect("unset is valid").is_none());
        let parsed = config(&[("BYOC_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/3")])
            .expect("valid")
            .expect("configured");
        assert_eq!(parsed.key_prefix(), DEFAULT_KEY_PREFIX);
        assert!(!format!("{parsed:?}").contains("hunter2"));
        let parsed = config(&[
            ("BYOC_REDIS_URL", "redis://127.0.0.1"),
            ("BYOC_REDIS_KEY_PREFIX", "tenant-a:"),
        ])
        .expect("valid")
        .expect("configured");
        assert_eq!(parsed.key_prefix(), "tenant-a:");
        assert_eq!(parsed.admission_timeout, DEFAULT_ADMISSION_TIMEOUT);
        let parsed = config(&[
            ("BYOC_REDIS_URL", "redis://127.0.0.1"),
            ("BYOC_REDIS_TIMEOUT_MS", "250"),
        ])
        .expect("valid")
        .expect("configured");
        assert_eq!(parsed.admission_timeout, Duration::from_millis(250));
        for (pairs, variable) in [
            (
                &[("BYOC_REDIS_URL", "http://:hunter2@127.0.0.1")][..],
                "BYOC_REDIS_URL",
            ),
            (
                &[("BYOC_REDIS_URL", "redis://:hunter2@[::1")][..],
                "BYOC_REDIS_URL",
            ),
            (
                &[
                    ("BYOC_REDIS_URL", "redis://x"),
                    ("BYOC_REDIS_KEY_PREFIX", "a{b}"),
                ][..],
                "BYOC_REDIS_KEY_PREFIX",
            ),
            (
                &[("BYOC_REDIS_KEY_PREFIX", "")][..],
                "BYOC_REDIS_KEY_PREFIX",
            ),
            (
                &[("BYOC_REDIS_TIMEOUT_MS", "0")][..],
                "BYOC_REDIS_TIMEOUT_MS",
            ),
            (
                &[("BYOC_REDIS_TIMEOUT_MS", "5001")][..],
                "BYOC_REDIS_TIMEOUT_MS",
            ),
        ] {
            let line = config(pairs).expect_err("refused").to_string();
            assert!(line.starts_with(variable), "{line}");
            assert!(!line.contains("hunter2"), "{line}");
        }
    }

    fn rates(sms: u32, provider_calls: u32) -> LimitRates {
        let rate = |value| NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN);
        LimitRates::new(rate(sms), rate(10), rate(10), rate(provider_calls))
    }

    /// Shared limits on the test Redis (`BYOC_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) under a
    /// prefix of their own.
    fn shared(rates: LimitRates) -> SharedLimits {
        let url = std::env::var("BYOC_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        shared_on(&url, rates, "2000")
    }

    /// Shared limits on the Redis at `url`, waiting at most `timeout_ms` for it: long enough in the tests that
    /// check sharing that a stall of the loaded test machine is not taken for an outage.
    fn shared_on(url: &str, rates: LimitRates, timeout_ms: &str) -> SharedLimits {
        let prefix = format!("byoc-test:{}:", uuid::Uuid::new_v4().simple());
        let config = config(&[
            ("BYOC_REDIS_URL", url),
            ("BYOC_REDIS_KEY_PREFIX", prefix.as_str()),
            ("BYOC_REDIS_TIMEOUT_MS", timeout_ms),
        ])
        .expect("valid")
        .expect("configured");
        let metrics =
            SharedLimitsMetrics::register(&Metrics::new().expect("metrics")).expect("register");
        SharedLimits::start(&config, rates, metrics).expect("starts")
    }

    async fn key_ttl_ms(limits: &SharedLimits, key: &str) -> i64 {
        let mut connection = limits.connection.clone();
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("PTTL")
    }

    #[tokio::test]
    async fn the_script_admits_the_burst_then_refuses_for_one_interval_with_expiring_keys() {
        let limits = shared(rates(3, 100));
        let org = OrgId::new_random();
        for _ in 0..3 {
            assert_eq!(limits.admit(org, Guarded::Sms).await, Ok(()));
        }
        let refusal = limits
            .admit(org, Guarded::Sms)
            .await
            .expect_err("the burst is spent");
        assert_eq!(refusal.limit, Limit::Sms);
        assert!(
            refusal.wait > Duration::ZERO && refusal.wait <= Duration::from_secs(20),
            "{refusal:?}"
        );
        assert!(!limits.is_degraded());
        let ttl = key_ttl_ms(&limits, &limits.key(org, Limit::Sms)).await;
        assert!(
            (40_000..=60_000).contains(&ttl),
            "three of 3 per minute taken: {ttl} ms"
        );
        let ttl = key_ttl_ms(&limits, &limits.key(org, Limit::ProviderCalls)).await;
        assert!(
            (1..=1_800).contains(&ttl),
            "three of 100 per minute taken: {ttl} ms"
        );
        assert_eq!(
            limits.admit(OrgId::new_random(), Guarded::Sms).await,
            Ok(()),
            "another organization has its own buckets"
        );
    }

    #[tokio::test]
    async fn the_script_takes_limits_in_order_like_the_in_process_limiter() {
        let limits = shared(rates(5, 2));
        let local = InProcessLimits::new(rates(5, 2));
        let org = OrgId::new_random();
        for what in [
            Guarded::Sms,
            Guarded::ProviderCall,
            Guarded::Sms,
            Guarded::TwilioWebhook,
            Guarded::Verification,
        ] {
            let in_redis = limits
                .admit(org, what)
                .await
                .map_err(|refusal| refusal.limit);
            let in_process = local.admit(org, what).map_err(|refusal| refusal.limit);
            assert_eq!(in_redis, in_process, "{what:?}");
        }
        let ttl = key_ttl_ms(&limits, &limits.key(org, Limit::Sms)).await;
        assert!(
            (20_000..=24_000).contains(&ttl),
            "the SMS refused by the provider-call limit kept its SMS unit (2 × 12 s): {ttl} ms"
        );
    }

    #[tokio::test]
    async fn a_redis_that_is_not_there_at_start_up_leaves_admissions_to_the_process() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let limits = shared_on(&format!("redis://127.0.0.1:{port}"), rates(2, 100), "2000");
        let org = OrgId::new_random();
        assert_eq!(limits.admit(org, Guarded::Sms).await, Ok(()));
        assert!(limits.is_degraded());
        assert_eq!(limits.admit(org, Guarded::Sms).await, Ok(()));
        assert_eq!(
            limits.admit(org, Guarded::Sms).await.map_err(|r| r.limit),
            Err(Limit::Sms),
            "this process's bucket of 2 a minute"
        );
        assert_eq!(
            limits.health.metrics.errors.get(),
            1,
            "asked once, refused at once"
        );
    }

    /// A `redis-server` of the test's own (no persistence), killed when dropped.
    struct PrivateRedis {
        process: std::process::Child,
        url: String,
    }

    impl PrivateRedis {
        async fn start() -> PrivateRedis {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            let process = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let redis = PrivateRedis {
                process,
                url: format!("redis://127.0.0.1:{port}"),
            };
            let client = redis::Client::open(redis.url.as_str()).expect("URL");
            for _ in 0..100 {
                if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                    let pong: Result<String, _> =
                        redis::cmd("PING").query_async(&mut connection).await;
                    if pong.is_ok() {
                        return redis;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the private redis-server does not answer on port {port}");
        }

        fn signal(&self, signal: &str) {
            let status = std::process::Command::new("kill")
                .args([signal, &self.process.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill {signal}");
        }
    }

    impl Drop for PrivateRedis {
        fn drop(&mut self) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }

    /// A Redis that stops answering (SIGSTOP: connections stay open, nothing answers) makes admissions wait
    /// out the timeout and use this process's buckets; once it answers again the shared buckets are back.
    #[tokio::test]
    async fn a_redis_that_stops_answering_leaves_admissions_to_the_process_until_it_answers() {
        let redis = PrivateRedis::start().await;
        let limits = shared_on(&redis.url, rates(1, 100), "500");
        let org = OrgId::new_random();
        assert_eq!(limits.admit(org, Guarded::Sms).await, Ok(()));
        assert_eq!(
            limits.admit(org, Guarded::Sms).await.map_err(|r| r.limit),
            Err(Limit::Sms),
            "one a minute, in Redis"
        );

        redis.signal("-STOP");
        assert_eq!(
            limits.admit(org, Guarded::Sms).await,
            Ok(()),
            "this process's own bucket is still full"
        );
        assert!(limits.is_degraded());
        assert_eq!(limits.health.metrics.degraded.get(), 1);
        assert_eq!(limits.health.metrics.errors.get(), 1);
        assert_eq!(
            limits.admit(org, Guarded::Sms).await.map_err(|r| r.limit),
            Err(Limit::Sms),
            "this process's bucket applies while Redis is left alone"
        );
        assert_eq!(
            limits.health.metrics.errors.get(),
            1,
            "within the retry interval Redis is not asked"
        );

        redis.signal("-CONT");
        for _ in 0..50 {
            if !limits.is_degraded() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = limits.admit(org, Guarded::Sms).await;
        }
        assert!(!limits.is_degraded(), "Redis answers again");
        assert_eq!(limits.health.metrics.degraded.get(), 0);
        assert_eq!(
            limits.admit(org, Guarded::Sms).await.map_err(|r| r.limit),
            Err(Limit::Sms),
            "the shared bucket, spent before Redis stopped, answers again"
        );
    }
}
