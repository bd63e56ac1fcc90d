//! What a rate-limit admission costs with the buckets in Redis (`BYOC_REDIS_URL`, one script round trip)
//! against this process's governor buckets, in the same run: per-admission latency one at a time (p50, p90,
//! p99) and throughput with 64 admissions in flight, then the ratios Redis ÷ in-process.
//!
//! `cargo bench -p byoc-api --bench admission` (or `bash bench/rate_limit_admission.sh`), with Redis on
//! `BYOC_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`); its keys go under a fresh prefix and expire
//! within a second. Rounds alternate between the two so both see the same machine load.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use byoc_api::plumbing::metrics::{Exposition, Metrics};
use byoc_api::usecases::rate_limits::{Guarded, InProcessLimits, LimitRates, RateLimits};
use byoc_api::usecases::shared_limits::{SharedLimits, SharedLimitsConfig, SharedLimitsMetrics};
use byoc_credential_store::OrgId;

/// Organizations the admissions cycle through (every one has its own buckets).
const ORGANIZATIONS: usize = 1000;
/// Alternating rounds of each backend.
const ROUNDS: usize = 10;
/// Admissions one at a time per round.
const SEQUENTIAL_PER_ROUND: usize = 2_000;
/// Admissions in flight at once in the throughput rounds.
const IN_FLIGHT: usize = 64;
/// Admissions per in-flight task per throughput round.
const PER_TASK: usize = 200;

fn main() {
    // Shows the warning with its cause should Redis fail during the run.
    let _ = byoc_runtime::telemetry::init("warn", std::io::stderr, false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    // High enough that no admission is refused: the bench measures the admission, not the 429.
    let rate = NonZeroU32::new(100_000_000).unwrap_or(NonZeroU32::MIN);
    let rates = LimitRates::new(rate, rate, rate, rate);
    let url = std::env::var("BYOC_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("byoc-bench:{}:", uuid::Uuid::new_v4().simple());
    let config = SharedLimitsConfig::from_lookup(|name| match name {
        "BYOC_REDIS_URL" => Some(url.clone()),
        "BYOC_REDIS_KEY_PREFIX" => Some(prefix.clone()),
        _ => None,
    })
    .expect("valid Redis settings")
    .expect("a Redis URL");
    let registry = Metrics::new().expect("metrics");
    let metrics = SharedLimitsMetrics::register(&registry).expect("register");
    let shared = SharedLimits::start(&config, rates, metrics).expect("shared limits start");
    let backends = [
        (
            "in-process",
            Arc::new(RateLimits::InProcess(InProcessLimits::new(rates))),
        ),
        ("redis", Arc::new(RateLimits::Shared(shared))),
    ];
    let organizations: Arc<Vec<OrgId>> =
        Arc::new((0..ORGANIZATIONS).map(|_| OrgId::new_random()).collect());

    // Warm-up: connect, load the script, create every organization's buckets.
    for (_, limits) in &backends {
        for org in organizations.iter() {
            limits.admit(*org, Guarded::Sms).await.expect("admitted");
        }
    }

    let mut latencies: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut throughput: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        for (index, (_, limits)) in backends.iter().enumerate() {
            for call in 0..SEQUENTIAL_PER_ROUND {
                let org = organizations[(round * SEQUENTIAL_PER_ROUND + call) % ORGANIZATIONS];
                let started = Instant::now();
                limits.admit(org, Guarded::Sms).await.expect("admitted");
                latencies[index].push(started.elapsed());
            }
            throughput[index].push(in_flight_rate(limits, &organizations).await);
        }
    }

    let exposition = registry.render(Exposition::Public).expect("metrics render");
    assert!(
        exposition.contains("byoc_redis_limit_errors_total 0"),
        "Redis failed during the run, so some admissions were in-process: {exposition}"
    );
    println!(
        "rate-limit admission ({ROUNDS} alternating rounds; Guarded::Sms takes two limits; {ORGANIZATIONS} organizations)"
    );
    println!();
    println!("| measure | in-process (governor) | redis (one EVALSHA) | redis ÷ in-process |");
    println!("| --- | --- | --- | --- |");
    for (name, quantile) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
        let local = percentile(&mut latencies[0], quantile);
        let redis = percentile(&mut latencies[1], quantile);
        println!(
            "| one at a time, {name} | {local:.2?} | {redis:.2?} | {:.0}× |",
            redis.as_secs_f64() / local.as_secs_f64()
        );
    }
    let local = median(&mut throughput[0]);
    let redis = median(&mut throughput[1]);
    println!(
        "| {IN_FLIGHT} in flight, admissions/s (median round) | {local:.0} | {redis:.0} | {:.4}× |",
        redis / local
    );
}

/// Admissions per second with [`IN_FLIGHT`] tasks each admitting [`PER_TASK`] times.
async fn in_flight_rate(limits: &Arc<RateLimits>, organizations: &Arc<Vec<OrgId>>) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|task| {
            let limits = Arc::clone(limits);
            let organizations = Arc::clone(organizations);
            tokio::spawn(async move {
                for call in 0..PER_TASK {
                    let org = organizations[(task * PER_TASK + call) % ORGANIZATIONS];
                    limits.admit(org, Guarded::Sms).await.expect("admitted");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    (IN_FLIGHT * PER_TASK) as f64 / started.elapsed().as_secs_f64()
}

fn percentile(samples: &mut [Duration], quantile: f64) -> Duration {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
