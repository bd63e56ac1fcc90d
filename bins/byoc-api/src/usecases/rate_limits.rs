//! The per-organization rate limits and who keeps their buckets: this process ([`InProcessLimits`], governor
//! keyed limiters), or Redis for every replica at once ([`SharedLimits`], when `BYOC_REDIS_URL` is set).
//! Callers ask [`RateLimits::admit`] and never learn which answered.
//!
//! Both apply the same GCRA: a limit of N per minute admits a burst of N at once, then one more every 60/N
//! seconds. An admission takes the guarded action's limits in order ([`Guarded::limits`]) and stops at the first
//! that refuses; what the earlier limits took stays taken.

use std::num::NonZeroU32;
use std::time::Duration;

use byoc_credential_store::OrgId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::usecases::shared_limits::SharedLimits;

/// One per-organization limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Outbound SMS (`BYOC_SMS_PER_MINUTE`).
    Sms,
    /// Credential verifications (`BYOC_VERIFY_PER_MINUTE`).
    Verifications,
    /// Twilio status callbacks (`BYOC_TWILIO_WEBHOOK_PER_MINUTE`).
    TwilioWebhooks,
    /// Every provider call (`BYOC_PROVIDER_CALLS_PER_MINUTE`).
    ProviderCalls,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 4] = [
        Limit::Sms,
        Limit::Verifications,
        Limit::TwilioWebhooks,
        Limit::ProviderCalls,
    ];

    /// The limit's name in logs and in Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Sms => "sms",
            Limit::Verifications => "verifications",
            Limit::TwilioWebhooks => "twilio_webhook",
            Limit::ProviderCalls => "provider_calls",
        }
    }

    fn index(self) -> usize {
        match self {
            Limit::Sms => 0,
            Limit::Verifications => 1,
            Limit::TwilioWebhooks => 2,
            Limit::ProviderCalls => 3,
        }
    }
}

/// What a rate limit guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarded {
    /// An outbound SMS (counts against both the SMS and the provider-call limit).
    Sms,
    /// A credential verification (counts against both the verification and the provider-call limit).
    Verification,
    /// A Twilio status callback (its own limit only: it calls no provider).
    TwilioWebhook,
    /// Any other provider call.
    ProviderCall,
}

impl Guarded {
    /// The limits an admission takes, in the order they are taken.
    pub fn limits(self) -> &'static [Limit] {
        match self {
            Guarded::Sms => &[Limit::Sms, Limit::ProviderCalls],
            Guarded::Verification => &[Limit::Verifications, Limit::ProviderCalls],
            Guarded::TwilioWebhook => &[Limit::TwilioWebhooks],
            Guarded::ProviderCall => &[Limit::ProviderCalls],
        }
    }
}

/// Each limit's rate: N per organization per minute, with a burst of N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitRates {
    per_minute: [NonZeroU32; 4],
}

impl LimitRates {
    /// The rates of the SMS, verification, Twilio callback and provider-call limits.
    pub fn new(
        sms: NonZeroU32,
        verifications: NonZeroU32,
        twilio_webhooks: NonZeroU32,
        provider_calls: NonZeroU32,
    ) -> LimitRates {
        LimitRates {
            per_minute: [sms, verifications, twilio_webhooks, provider_calls],
        }
    }

    /// How many `limit` admits per organization and minute (also its burst).
    pub fn per_minute(&self, limit: Limit) -> NonZeroU32 {
        self.per_minute[limit.index()]
    }

    /// The time one admission costs: a minute divided by the rate (at least 1 µs).
    pub fn interval(&self, limit: Limit) -> Duration {
        (Duration::from_secs(60) / self.per_minute(limit).get()).max(Duration::from_micros(1))
    }
}

/// An admission refused: which limit refused and how long until it admits again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that refused.
    pub limit: Limit,
    /// The wait until that limit admits one more.
    pub wait: Duration,
}

/// This process's buckets: one governor keyed limiter per limit, one bucket per organization.
pub struct InProcessLimits {
    buckets: [DefaultKeyedRateLimiter<OrgId>; 4],
    clock: DefaultClock,
}

impl InProcessLimits {
    /// Empty buckets for `rates`.
    pub fn new(rates: LimitRates) -> InProcessLimits {
        let bucket = |limit| RateLimiter::keyed(Quota::per_minute(rates.per_minute(limit)));
        InProcessLimits {
            buckets: Limit::ALL.map(bucket),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one unit of each of `what`'s limits for `org`, in order, stopping at the first that refuses.
    pub fn admit(&self, org: OrgId, what: Guarded) -> Result<(), Refusal> {
        for &limit in what.limits() {
            self.buckets[limit.index()]
                .check_key(&org)
                .map_err(|not_until| Refusal {
                    limit,
                    wait: not_until.wait_time_from(self.clock.now()),
                })?;
        }
        Ok(())
    }

    /// Drops the buckets of organizations that have been idle long enough to be full again.
    pub fn forget_idle(&self) {
        for bucket in &self.buckets {
            bucket.retain_recent();
        }
    }
}

/// Who keeps the buckets: this process, or Redis for every replica.
pub enum RateLimits {
    /// This process's own buckets (no `BYOC_REDIS_URL`).
    InProcess(InProcessLimits),
    /// Buckets in Redis shared by every replica, with this process's buckets while Redis does not answer.
    Shared(SharedLimits),
}

impl RateLimits {
    /// Takes one unit of each of `what`'s limits for `org`, or says which limit refused and for how long.
    pub async fn admit(&self, org: OrgId, what: Guarded) -> Result<(), Refusal> {
        match self {
            RateLimits::InProcess(limits) => limits.admit(org, what),
            RateLimits::Shared(limits) => limits.admit(org, what).await,
        }
    }

    /// Drops this process's buckets of idle organizations (Redis expires its keys by itself).
    pub fn forget_idle(&self) {
        match self {
            RateLimits::InProcess(limits) => limits.forget_idle(),
            RateLimits::Shared(limits) => limits.forget_idle(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(sms: u32, provider_calls: u32) -> LimitRates {
        let rate = |value| NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN);
        LimitRates::new(rate(sms), rate(10), rate(10), rate(provider_calls))
    }

    #[test]
    fn a_limit_admits_its_burst_then_refuses_for_one_interval() {
        let limits = InProcessLimits::new(rates(3, 100));
        let org = OrgId::new_random();
        for _ in 0..3 {
            assert_eq!(limits.admit(org, Guarded::Sms), Ok(()));
        }
        let refusal = limits
            .admit(org, Guarded::Sms)
            .expect_err("the burst is spent");
        assert_eq!(refusal.limit, Limit::Sms);
        assert!(refusal.wait > Duration::ZERO && refusal.wait <= Duration::from_secs(20));
        assert_eq!(
            limits.admit(OrgId::new_random(), Guarded::Sms),
            Ok(()),
            "another organization has its own buckets"
        );
    }

    #[test]
    fn limits_are_taken_in_order_and_earlier_ones_stay_taken() {
        let limits = InProcessLimits::new(rates(5, 2));
        let org = OrgId::new_random();
        assert_eq!(limits.admit(org, Guarded::Sms), Ok(()));
        assert_eq!(limits.admit(org, Guarded::ProviderCall), Ok(()));
        let refusal = limits
            .admit(org, Guarded::Sms)
            .expect_err("provider calls spent");
        assert_eq!(refusal.limit, Limit::ProviderCalls);
        let refusal = limits
            .admit(org, Guarded::TwilioWebhook)
            .map(|()| "admitted");
        assert_eq!(refusal, Ok("admitted"), "callbacks call no provider");
    }
}
