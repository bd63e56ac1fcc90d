//! Per-organization limits and quota monitoring for the endpoints that use credentials.
//!
//! - Rate limits (one bucket per organization and limit, kept by this process or, with `BYOC_REDIS_URL`, in
//!   Redis for every replica: [`crate::usecases::rate_limits`]): outbound SMS
//!   (`BYOC_SMS_PER_MINUTE`, default 10), credential verifications (`BYOC_VERIFY_PER_MINUTE`, default 10) and
//!   every provider call (`BYOC_PROVIDER_CALLS_PER_MINUTE`, default 120; SMS and verifications count here
//!   too). An exhausted bucket answers 429 with `Retry-After` before any provider is called. Twilio's status
//!   callbacks have a bucket of their own (`BYOC_TWILIO_WEBHOOK_PER_MINUTE`, default 120), taken before the
//!   callback's credential is read.
//! - Daily counters of provider calls and failures per organization and provider, kept in the store
//!   (`provider_usage_daily`, so they survive restarts and add up across replicas).
//! - The counter `byoc_rate_limit_refusals_total` (labels `org_id`, `limit`): the 429s this process answered
//!   because an organization's limit was spent, served like the provider counters below.
//! - The counters `byoc_provider_calls_total` and `byoc_provider_failures_total` (labels `org_id`, `provider`):
//!   the calls **this process** made, counted when made, so summing them over replicas
//!   (`sum by (org_id, provider) (increase(…[1d]))`) gives every replica's calls without counting any twice,
//!   and a restart is a counter reset Prometheus already handles. Served only to a scrape bearing
//!   `BYOC_METRICS_TOKEN` (see [`crate::plumbing::metrics`]).
//! - A warning logged once per organization, provider and day when the day's calls reach
//!   `BYOC_PROVIDER_DAILY_WARNING` (default 1000): only the call whose increment crosses the threshold logs, so
//!   the warning appears once however many replicas count.
//! - Counting never fails or holds up the request that made the call: while the database is unavailable the
//!   counts are queued and written when it is back ([`crate::usecases::write_behind`]).

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byoc_credential_store::{CredentialRepository, CredentialType, OrgId, StoreResult, Tenant};
use byoc_runtime::config::ConfigError;
use chrono::{NaiveDate, Utc};
use prometheus::{IntCounterVec, Opts};

use crate::plumbing::error::ApiError;
use crate::plumbing::metrics::Metrics;
pub use crate::usecases::rate_limits::Guarded;
use crate::usecases::rate_limits::{LimitRates, RateLimits, Refusal};
use crate::usecases::write_behind::{DeferredWrite, WriteBehind};

const DEFAULT_SMS_PER_MINUTE: u32 = 10;
const DEFAULT_VERIFICATIONS_PER_MINUTE: u32 = 10;
const DEFAULT_TWILIO_WEBHOOKS_PER_MINUTE: u32 = 120;
const DEFAULT_PROVIDER_CALLS_PER_MINUTE: u32 = 120;
const DEFAULT_DAILY_WARNING: u64 = 1000;

/// The limits, from `BYOC_SMS_PER_MINUTE`, `BYOC_VERIFY_PER_MINUTE`, `BYOC_TWILIO_WEBHOOK_PER_MINUTE`,
/// `BYOC_PROVIDER_CALLS_PER_MINUTE` and `BYOC_PROVIDER_DAILY_WARNING`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageConfig {
    /// Outbound SMS per organization per minute (also the burst).
    pub sms_per_minute: NonZeroU32,
    /// Credential verifications (each asks the provider) per organization per minute (also the burst).
    pub verifications_per_minute: NonZeroU32,
    /// Twilio status callbacks per organization per minute (also the burst).
    pub twilio_webhooks_per_minute: NonZeroU32,
    /// Provider calls (SMS, free/busy, OAuth exchanges) per organization per minute (also the burst).
    pub provider_calls_per_minute: NonZeroU32,
    /// Provider calls per organization, provider and day at which a warning is logged.
    pub daily_warning: u64,
}

impl Default for UsageConfig {
    fn default() -> UsageConfig {
        UsageConfig {
            sms_per_minute: NonZeroU32::new(DEFAULT_SMS_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
            verifications_per_minute: NonZeroU32::new(DEFAULT_VERIFICATIONS_PER_MINUTE)
                .unwrap_or(NonZeroU32::MIN),
            twilio_webhooks_per_minute: NonZeroU32::new(DEFAULT_TWILIO_WEBHOOKS_PER_MINUTE)
                .unwrap_or(NonZeroU32::MIN),
            provider_calls_per_minute: NonZeroU32::new(DEFAULT_PROVIDER_CALLS_PER_MINUTE)
                .unwrap_or(NonZeroU32::MIN),
            daily_warning: DEFAULT_DAILY_WARNING,
        }
    }
}

impl UsageConfig {
    /// The rate limits' rates.
    pub fn rates(&self) -> LimitRates {
        LimitRates::new(
            self.sms_per_minute,
            self.verifications_per_minute,
            self.twilio_webhooks_per_minute,
            self.provider_calls_per_minute,
        )
    }

    /// Reads the limits with `get` (a variable's value, `None` when unset); a bad value names its variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<UsageConfig, ConfigError> {
        let defaults = UsageConfig::default();
        let per_minute = |variable: &'static str, default: NonZeroU32| match get(variable) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<NonZeroU32>()
                .map_err(|_| ConfigError::Invalid {
                    variable,
                    reason: "must be a whole number of at least 1".to_owned(),
                }),
        };
        let daily_warning = match get("BYOC_PROVIDER_DAILY_WARNING") {
            None => defaults.daily_warning,
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|value| *value > 0)
                .ok_or_else(|| ConfigError::Invalid {
                    variable: "BYOC_PROVIDER_DAILY_WARNING",
                    reason: "must be a whole number of at least 1".to_owned(),
                })?,
        };
        Ok(UsageConfig {
            sms_per_minute: per_minute("BYOC_SMS_PER_MINUTE", defaults.sms_per_minute)?,
            verifications_per_minute: per_minute(
                "BYOC_VERIFY_PER_MINUTE",
                defaults.verifications_per_minute,
            )?,
            twilio_webhooks_per_minute: per_minute(
                "BYOC_TWILIO_WEBHOOK_PER_MINUTE",
                defaults.twilio_webhooks_per_minute,
            )?,
            provider_calls_per_minute: per_minute(
                "BYOC_PROVIDER_CALLS_PER_MINUTE",
                defaults.provider_calls_per_minute,
            )?,
            daily_warning,
        })
    }
}

/// Per-organization rate limits, and the door to the daily provider counters.
pub struct Usage {
    limits: RateLimits,
    writes: Arc<WriteBehind>,
    limiter_day: Mutex<NaiveDate>,
    calls: IntCounterVec,
    failures: IntCounterVec,
    refusals: IntCounterVec,
}

impl Usage {
    /// Admits through `limits` and registers this process's provider-call counters in `metrics`; the daily
    /// counters are written through `writes` (see [`DailyCounters`]).
    pub fn new(
        limits: RateLimits,
        writes: Arc<WriteBehind>,
        metrics: &Metrics,
    ) -> Result<Usage, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "provider_calls_total",
                "Provider calls this process made with an organization's credentials, by organization and provider (sum over replicas)",
            ),
            &["org_id", "provider"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "provider_failures_total",
                "Failed provider calls this process made, by organization and provider (sum over replicas)",
            ),
            &["org_id", "provider"],
        )?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "rate_limit_refusals_total",
                "Requests this process refused with 429 because an organization's limit was spent, by organization and limit (sms, verifications, twilio_webhook, provider_calls)",
            ),
            &["org_id", "limit"],
        )?;
        metrics.register_per_organization(Box::new(calls.clone()))?;
        metrics.register_per_organization(Box::new(failures.clone()))?;
        metrics.register_per_organization(Box::new(refusals.clone()))?;
        Ok(Usage {
            limits,
            writes,
            limiter_day: Mutex::new(Utc::now().date_naive()),
            calls,
            failures,
            refusals,
        })
    }

    /// Takes one unit of the organization's budget for `what`, or answers 429 with the wait in `Retry-After`.
    /// Never fails otherwise: when Redis does not answer, this replica's own limits do.
    pub async fn admit(&self, org: OrgId, what: Guarded) -> Result<(), ApiError> {
        self.limits.admit(org, what).await.map_err(|refusal| {
            self.refusals
                .with_label_values(&[org.to_string().as_str(), refusal.limit.as_str()])
                .inc();
            limited(org, refusal)
        })
    }

    /// Counts one provider call (and a failure when `succeeded` is false): in this process's counters now, and
    /// in the organization's daily counter in the store (queued while the database is unavailable, see
    /// [`crate::usecases::write_behind`]). Never fails the request that made the call.
    pub async fn record(&self, tenant: &Tenant, provider: CredentialType, succeeded: bool) {
        let org = tenant.org_id.to_string();
        let labels = [org.as_str(), provider.as_str()];
        self.calls.with_label_values(&labels).inc();
        if !succeeded {
            self.failures.with_label_values(&labels).inc();
        }
        let day = Utc::now().date_naive();
        self.forget_old_buckets(day);
        self.writes
            .submit(DeferredWrite::ProviderCall {
                tenant: tenant.clone(),
                provider,
                day,
                failed: !succeeded,
            })
            .await;
    }

    /// Once a day, drops this process's rate-limit buckets of organizations that have been idle.
    fn forget_old_buckets(&self, today: NaiveDate) {
        if let Ok(mut day) = self.limiter_day.lock() {
            if *day != today {
                self.limits.forget_idle();
                *day = today;
            }
        }
    }
}

fn limited(org: OrgId, refusal: Refusal) -> ApiError {
    tracing::info!(
        org_id = %org,
        limit = refusal.limit.as_str(),
        wait_ms = refusal.wait.as_millis() as u64,
        "rate limited"
    );
    ApiError::rate_limited(refusal.wait.max(Duration::from_secs(1)))
}

/// The daily provider-call counters, kept in the store (they add up across replicas and survive restarts),
/// and the daily warning.
pub struct DailyCounters {
    repository: Arc<dyn CredentialRepository>,
    daily_warning: u64,
}

impl DailyCounters {
    /// The counters in `repository`; `config` gives the warning threshold.
    pub fn new(config: UsageConfig, repository: Arc<dyn CredentialRepository>) -> DailyCounters {
        DailyCounters {
            repository,
            daily_warning: config.daily_warning,
        }
    }

    /// Adds one call (and a failure when `failed`) of `day` to the organization's counter in the store, and
    /// logs the daily warning when this call reaches the threshold.
    pub async fn count(
        &self,
        tenant: &Tenant,
        provider: CredentialType,
        day: NaiveDate,
        failed: bool,
    ) -> StoreResult<()> {
        let counter = self
            .repository
            .increment_usage(tenant, provider, day, 1, u32::from(failed))
            .await?;
        if counter.calls >= self.daily_warning && counter.calls - 1 < self.daily_warning {
            tracing::warn!(
                org_id = %tenant.org_id,
                provider = provider.as_str(),
                day = %day,
                calls = counter.calls,
                failures = counter.failures,
                threshold = self.daily_warning,
                "daily provider call warning threshold reached"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_from_the_environment_and_bad_values_name_the_variable() {
        let config = UsageConfig::from_lookup(|_| None).expect("defaults");
        assert_eq!(config, UsageConfig::default());
        let config = UsageConfig::from_lookup(|name| match name {
            "BYOC_SMS_PER_MINUTE" => Some("3".to_owned()),
            "BYOC_PROVIDER_DAILY_WARNING" => Some("50".to_owned()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(config.sms_per_minute.get(), 3);
        assert_eq!(config.daily_warning, 50);
        for variable in [
            "BYOC_SMS_PER_MINUTE",
            "BYOC_VERIFY_PER_MINUTE",
            "BYOC_TWILIO_WEBHOOK_PER_MINUTE",
            "BYOC_PROVIDER_CALLS_PER_MINUTE",
            "BYOC_PROVIDER_DAILY_WARNING",
        ] {
            let error = UsageConfig::from_lookup(|name| (name == variable).then(|| "0".to_owned()))
                .expect_err("zero is refused");
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }
}
