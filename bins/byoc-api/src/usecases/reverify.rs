//! Credentials that stay healthy: every active credential is verified again with its provider once per
//! `BYOC_REVERIFY_INTERVAL_SECS`, in the service's own name (`service:reverify`), through the same path as a
//! user's verify ([`verify_credential`]). Each replica claims what is due from the store (one replica per
//! credential per round; rounds spread over the interval), paces calls per provider account, and keeps the
//! `byoc_credentials{type, status}` gauge current.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use byoc_credential_store::{
    CredentialRepository, CredentialService, CredentialServiceError, CredentialType,
    DueReverification, ServiceName, StoreError, Tenant, VerificationStatus,
};
use byoc_providers::VerifierRegistry;
use byoc_runtime::config::{invalid, ConfigError};
use prometheus::{IntGaugeVec, Opts};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::plumbing::error::CauseChain;
use crate::plumbing::metrics::Metrics;
use crate::usecases::verification::{verify_credential, VerificationError};

/// The interval when `BYOC_REVERIFY_INTERVAL_SECS` is not set: a day.
pub const DEFAULT_REVERIFY_INTERVAL: Duration = Duration::from_secs(86_400);
/// The longest interval accepted: a year.
const MAX_REVERIFY_INTERVAL_SECS: u64 = 31_536_000;
/// The service principal re-verifications are recorded and audited as.
pub const REVERIFY_SERVICE: &str = "reverify";
/// At most one call per provider account this often, per replica.
pub const ACCOUNT_SPACING: Duration = Duration::from_secs(1);
/// Credentials claimed at once.
const CLAIM_BATCH: u32 = 50;
/// How often the gauge is refreshed (and due work looked for) at most.
const LONGEST_TICK: Duration = Duration::from_secs(30);

/// `BYOC_REVERIFY_INTERVAL_SECS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReverifyConfig {
    /// How often each active credential is verified again; `None` turns it off (`0`).
    pub interval: Option<Duration>,
}

impl Default for ReverifyConfig {
    fn default() -> ReverifyConfig {
        ReverifyConfig {
            interval: Some(DEFAULT_REVERIFY_INTERVAL),
        }
    }
}

impl ReverifyConfig {
    /// Reads `BYOC_REVERIFY_INTERVAL_SECS` (whole seconds, 0 = off, default a day).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<ReverifyConfig, ConfigError> {
        const VAR: &str = "BYOC_REVERIFY_INTERVAL_SECS";
        match get(VAR) {
            None => Ok(ReverifyConfig::default()),
            Some(text) => {
                let seconds = text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|seconds| *seconds <= MAX_REVERIFY_INTERVAL_SECS)
                    .ok_or_else(|| {
                        invalid(
                            VAR,
                            format!(
                                "must be a whole number of seconds from 0 (off) to {MAX_REVERIFY_INTERVAL_SECS}"
                            ),
                        )
                    })?;
                Ok(ReverifyConfig {
                    interval: (seconds > 0).then(|| Duration::from_secs(seconds)),
                })
            }
        }
    }

    /// How often the task wakes: a twentieth of the interval, from 1 s to 30 s (30 s when off: the gauge).
    fn tick(&self) -> Duration {
        self.interval.map_or(LONGEST_TICK, |interval| {
            (interval / 20).clamp(Duration::from_secs(1), LONGEST_TICK)
        })
    }
}

/// The `byoc_credentials{type, status}` gauge: credentials of every organization by provider and status
/// (`pending`, `verified`, `failed`; `deactivated` whatever their last status). Fixed label sets.
#[derive(Clone)]
pub struct CredentialGauge {
    gauge: IntGaugeVec,
}

/// The `status` label values of [`CredentialGauge`].
pub const GAUGE_STATUSES: [&str; 4] = ["pending", "verified", "failed", "deactivated"];

impl CredentialGauge {
    /// Registers the gauge in `metrics`' public registry, every series at 0.
    pub fn register(metrics: &Metrics) -> Result<CredentialGauge, prometheus::Error> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "credentials",
                "Credentials of every organization by provider and status (deactivated ones as deactivated)",
            ),
            &["type", "status"],
        )?;
        metrics.register(Box::new(gauge.clone()))?;
        let credential_gauge = CredentialGauge { gauge };
        credential_gauge.set(&HashMap::new());
        Ok(credential_gauge)
    }

    fn set(&self, counts: &HashMap<(CredentialType, &'static str), u64>) {
        for credential_type in CredentialType::ALL {
            for status in GAUGE_STATUSES {
                let count = counts.get(&(credential_type, status)).copied().unwrap_or(0);
                self.gauge
                    .with_label_values(&[credential_type.as_str(), status])
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
    }

    /// Reads the counts from the store and sets every series.
    async fn refresh(&self, repository: &dyn CredentialRepository) -> Result<(), StoreError> {
        let mut counts = HashMap::new();
        for count in repository.credential_status_counts().await? {
            let status = match (count.is_active, count.verification_status) {
                (false, _) => "deactivated",
                (true, VerificationStatus::Pending) => "pending",
                (true, VerificationStatus::Verified) => "verified",
                (true, VerificationStatus::Failed) => "failed",
            };
            *counts.entry((count.credential_type, status)).or_insert(0) += count.credentials;
        }
        self.set(&counts);
        Ok(())
    }
}

/// At most one provider call per account per [`ACCOUNT_SPACING`] (Twilio's Account SID; a credential without
/// one is its own account).
#[derive(Default)]
struct AccountPacer {
    last_call: HashMap<String, Instant>,
}

impl AccountPacer {
    /// Waits until `due`'s account may be called again, and notes the call.
    async fn pace(&mut self, due: &DueReverification) {
        let account = due
            .provider_account_id
            .clone()
            .unwrap_or_else(|| due.credential_id.to_string());
        let now = Instant::now();
        self.last_call
            .retain(|_, called| now.duration_since(*called) < ACCOUNT_SPACING);
        if let Some(called) = self.last_call.get(&account) {
            tokio::time::sleep_until(*called + ACCOUNT_SPACING).await;
        }
        self.last_call.insert(account, Instant::now());
    }
}

/// Starts the background task: refreshes the gauge every tick and, unless re-verification is off, verifies
/// what the store says is due.
pub fn start(
    config: ReverifyConfig,
    service: CredentialService,
    verifiers: VerifierRegistry,
    gauge: CredentialGauge,
) -> JoinHandle<()> {
    tokio::spawn(run(config, service, verifiers, gauge))
}

async fn run(
    config: ReverifyConfig,
    service: CredentialService,
    verifiers: VerifierRegistry,
    gauge: CredentialGauge,
) {
    let repository = Arc::clone(service.repository());
    let mut ticks = tokio::time::interval(config.tick());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pacer = AccountPacer::default();
    let mut claim_refused = false;
    loop {
        ticks.tick().await;
        if let Err(error) = gauge.refresh(repository.as_ref()).await {
            tracing::debug!(error = %CauseChain(&error), "credential gauge: the store did not answer");
        }
        let Some(interval) = config.interval else {
            continue;
        };
        loop {
            let due = match repository
                .claim_due_reverifications(interval, CLAIM_BATCH)
                .await
            {
                Ok(due) => {
                    claim_refused = false;
                    due
                }
                Err(error @ StoreError::Denied { .. }) => {
                    if !claim_refused {
                        tracing::warn!(
                            error = %CauseChain(&error),
                            "re-verification is off until the service may act as a service (BYOC_SERVICE_DATABASE_URL)"
                        );
                    }
                    claim_refused = true;
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %CauseChain(&error), "re-verification: could not claim due credentials");
                    break;
                }
            };
            let claimed = due.len();
            for credential in due {
                pacer.pace(&credential).await;
                reverify(&service, &verifiers, &credential).await;
            }
            if claimed < CLAIM_BATCH as usize {
                break;
            }
        }
    }
}

/// Verifies one claimed credential as `service:reverify` and logs what came of it.
async fn reverify(
    service: &CredentialService,
    verifiers: &VerifierRegistry,
    due: &DueReverification,
) {
    let name = match ServiceName::parse(REVERIFY_SERVICE) {
        Ok(name) => name,
        Err(error) => {
            tracing::error!(%error, "re-verification: invalid service name");
            return;
        }
    };
    let tenant = Tenant::service(due.org_id, name);
    match verify_credential(service, verifiers, &tenant, due.credential_id).await {
        Ok(verification) if verification.verified => tracing::debug!(
            org_id = %due.org_id, credential_id = %due.credential_id, "re-verification: still verified"
        ),
        Ok(verification) => tracing::info!(
            org_id = %due.org_id,
            credential_id = %due.credential_id,
            credential_type = %due.credential_type,
            reason = verification.metadata.verification_error.as_deref().unwrap_or(""),
            "re-verification: the provider refused the credential; marked failed"
        ),
        Err(VerificationError::Service(CredentialServiceError::Inactive { .. })) => {
            tracing::debug!(
                credential_id = %due.credential_id, "re-verification: deactivated meanwhile"
            )
        }
        Err(VerificationError::Service(CredentialServiceError::Store(store)))
            if matches!(*store, StoreError::NotFound { .. }) =>
        {
            tracing::debug!(credential_id = %due.credential_id, "re-verification: purged meanwhile")
        }
        Err(error) => tracing::warn!(
            org_id = %due.org_id,
            credential_id = %due.credential_id,
            error = %CauseChain(&error),
            "re-verification: could not verify; nothing recorded, tried again next round"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Option<&str>) -> Result<ReverifyConfig, ConfigError> {
        ReverifyConfig::from_lookup(|_| value.map(str::to_owned))
    }

    #[test]
    fn the_interval_defaults_to_a_day_zero_turns_it_off_and_bad_values_name_the_variable() {
        assert_eq!(
            parse(None).unwrap().interval,
            Some(DEFAULT_REVERIFY_INTERVAL)
        );
        assert_eq!(parse(Some("0")).unwrap().interval, None);
        assert_eq!(
            parse(Some(" 5 ")).unwrap().interval,
            Some(Duration::from_secs(5))
        );
        for bad in ["-1", "soon", "1.5", "99999999999"] {
            let line = parse(Some(bad)).unwrap_err().to_string();
            assert!(line.starts_with("BYOC_REVERIFY_INTERVAL_SECS:"), "{line}");
        }
    }

    #[test]
    fn the_tick_is_a_twentieth_of_the_interval_within_bounds() {
        let tick = |seconds| {
            ReverifyConfig {
                interval: Some(Duration::from_secs(seconds)),
            }
            .tick()
        };
        assert_eq!(tick(3), Duration::from_secs(1));
        assert_eq!(tick(200), Duration::from_secs(10));
        assert_eq!(tick(86_400), LONGEST_TICK);
        assert_eq!(ReverifyConfig { interval: None }.tick(), LONGEST_TICK);
    }
}
