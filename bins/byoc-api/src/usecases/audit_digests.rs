//! Signed audit digests: every `BYOC_AUDIT_DIGEST_INTERVAL_SECS` this task signs, for each organization whose
//! audit chain moved, its chain head with the Ed25519 key of `BYOC_AUDIT_SIGNING_KEY`, records the digest (the
//! record is the claim: of many replicas, one issues each digest) and writes the digests not yet filed to
//! `BYOC_AUDIT_DIGEST_DIR`. The credential-events task delivers each as an `audit.digest` webhook. Digests older
//! than the events' retention are pruned from the database (their proof is the copies outside it), each
//! organization's newest kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use byoc_credential_store::{CredentialRepository, StoreError};
use byoc_runtime::audit_digest::{file_digest, AuditSigningKey};
use byoc_runtime::config::{invalid, ConfigError};
use prometheus::{IntCounterVec, Opts};
use tokio::task::JoinHandle;

use crate::plumbing::error::CauseChain;
use crate::plumbing::metrics::Metrics;
use crate::usecases::credential_events;

/// The default `BYOC_AUDIT_DIGEST_INTERVAL_SECS`: an hour.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// The longest interval accepted: a week.
const LONGEST_INTERVAL_SECS: u64 = 7 * 24 * 3600;
/// How often the task looks for work at most (sooner when the interval is shorter).
const LONGEST_POLL: Duration = Duration::from_secs(30);
/// Organizations digested, and digests filed, per database call.
const BATCH: u32 = 100;
/// How often digests older than [`credential_events::RETENTION`] are pruned from the database (each
/// organization's newest stays).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// `BYOC_AUDIT_SIGNING_KEY`, `BYOC_AUDIT_DIGEST_INTERVAL_SECS` and `BYOC_AUDIT_DIGEST_DIR`.
#[derive(Clone)]
pub struct AuditDigestConfig {
    /// The signing key; without one (and outside dev mode) digests are off.
    pub signing_key: Option<Arc<AuditSigningKey>>,
    /// How often each organization whose chain moved gets a digest.
    pub interval: Duration,
    /// Where digests are written as files, if anywhere.
    pub dir: Option<PathBuf>,
}

impl AuditDigestConfig {
    /// Reads the three variables (empty counts as unset).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<AuditDigestConfig, ConfigError> {
        let signing_key = get("BYOC_AUDIT_SIGNING_KEY")
            .map(|text| {
                AuditSigningKey::parse(&text)
                    .map(Arc::new)
                    .map_err(|error| invalid("BYOC_AUDIT_SIGNING_KEY", error.to_string()))
            })
            .transpose()?;
        let interval = match get("BYOC_AUDIT_DIGEST_INTERVAL_SECS") {
            None => DEFAULT_INTERVAL,
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|secs| (1..=LONGEST_INTERVAL_SECS).contains(secs))
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    invalid(
                        "BYOC_AUDIT_DIGEST_INTERVAL_SECS",
                        format!(
                            "must be a whole number of seconds from 1 to {LONGEST_INTERVAL_SECS}"
                        ),
                    )
                })?,
        };
        let dir = get("BYOC_AUDIT_DIGEST_DIR").map(|text| PathBuf::from(text.trim()));
        Ok(AuditDigestConfig {
            signing_key,
            interval,
            dir,
        })
    }
}

/// How many digests were issued, filed, or could not be filed.
#[derive(Clone)]
pub struct DigestMetrics {
    digests: IntCounterVec,
}

impl DigestMetrics {
    /// Registers `byoc_audit_digests_total{outcome}` (`issued`, `filed`, `file_failed`).
    pub fn register(metrics: &Metrics) -> Result<DigestMetrics, prometheus::Error> {
        let digests = IntCounterVec::new(
            Opts::new(
                "audit_digests_total",
                "Signed audit digests this replica issued, wrote to BYOC_AUDIT_DIGEST_DIR, or failed to write",
            ),
            &["outcome"],
        )?;
        metrics.register(Box::new(digests.clone()))?;
        for outcome in ["issued", "filed", "file_failed"] {
            digests.with_label_values(&[outcome]);
        }
        Ok(DigestMetrics { digests })
    }

    fn count(&self, outcome: &'static str) {
        self.digests.with_label_values(&[outcome]).inc();
    }
}

/// Starts the digest task when `config` has a key; says at start what it does (or that digests are off).
pub fn start(
    config: AuditDigestConfig,
    repository: Arc<dyn CredentialRepository>,
    metrics: DigestMetrics,
) -> Option<JoinHandle<()>> {
    let Some(key) = config.signing_key else {
        tracing::warn!(
            "audit digests are off: set BYOC_AUDIT_SIGNING_KEY (an Ed25519 seed, 64 hex digits) to sign them"
        );
        return None;
    };
    tracing::info!(
        public_key = %key.public_key().to_hex(),
        interval_secs = config.interval.as_secs(),
        dir = config.dir.as_ref().map(|dir| dir.display().to_string()),
        "audit digests are on"
    );
    let task = DigestTask {
        key,
        interval: config.interval,
        dir: config.dir,
        repository,
        metrics,
    };
    Some(tokio::spawn(task.run()))
}

struct DigestTask {
    key: Arc<AuditSigningKey>,
    interval: Duration,
    dir: Option<PathBuf>,
    repository: Arc<dyn CredentialRepository>,
    metrics: DigestMetrics,
}

impl DigestTask {
    async fn run(self) {
        let poll = self.interval.min(LONGEST_POLL);
        let mut refused = false;
        let mut next_prune = tokio::time::Instant::now();
        loop {
            match self.issue().await {
                Ok(()) => refused = false,
                Err(error @ StoreError::Denied { .. }) => {
                    if !refused {
                        tracing::warn!(
                            error = %CauseChain(&error),
                            "audit digests are off until the service may act as a service (BYOC_SERVICE_DATABASE_URL)"
                        );
                    }
                    refused = true;
                }
                Err(error) => {
                    tracing::warn!(error = %CauseChain(&error), "audit digests: could not issue");
                }
            }
            if let (Some(dir), false) = (&self.dir, refused) {
                if let Err(error) = self.file(dir).await {
                    tracing::warn!(error = %CauseChain(&error), "audit digests: could not file");
                }
            }
            if !refused && tokio::time::Instant::now() >= next_prune {
                match self
                    .repository
                    .prune_audit_digests(credential_events::RETENTION)
                    .await
                {
                    Ok(pruned) => tracing::debug!(pruned, "audit digests: pruned"),
                    Err(error) => {
                        tracing::debug!(error = %CauseChain(&error), "audit digests: could not prune")
                    }
                }
                next_prune += PRUNE_EVERY;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Signs and records a digest for every organization that is due one.
    async fn issue(&self) -> Result<(), StoreError> {
        loop {
            let due = self
                .repository
                .audit_digests_due(self.interval, BATCH)
                .await?;
            let mut recorded_any = false;
            for organization in &due {
                let digest = self.key.sign(organization);
                if self.repository.record_audit_digest(&digest).await? {
                    recorded_any = true;
                    self.metrics.count("issued");
                    tracing::info!(
                        org_id = %organization.org_id,
                        head_seq = organization.head.seq,
                        "audit digest issued"
                    );
                }
            }
            if due.len() < BATCH as usize || !recorded_any {
                return Ok(());
            }
        }
    }

    /// Writes the recorded digests not yet filed.
    async fn file(&self, dir: &std::path::Path) -> Result<(), StoreError> {
        loop {
            let unfiled = self.repository.unfiled_audit_digests(BATCH).await?;
            for digest in &unfiled {
                let dir = dir.to_path_buf();
                let copy = digest.clone();
                let written = tokio::task::spawn_blocking(move || file_digest(&dir, &copy)).await;
                match written {
                    Ok(Ok(_)) => {
                        self.repository
                            .mark_audit_digest_filed(digest.org_id, digest.digest_seq)
                            .await?;
                        self.metrics.count("filed");
                    }
                    Ok(Err(error)) => {
                        self.metrics.count("file_failed");
                        tracing::error!(
                            org_id = %digest.org_id,
                            head_seq = digest.head_seq,
                            %error,
                            "audit digest could not be written to BYOC_AUDIT_DIGEST_DIR (retried next round)"
                        );
                        return Ok(());
                    }
                    Err(error) => {
                        self.metrics.count("file_failed");
                        tracing::error!(%error, "audit digest writer stopped");
                        return Ok(());
                    }
                }
            }
            if unfiled.len() < BATCH as usize {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<AuditDigestConfig, ConfigError> {
        AuditDigestConfig::from_lookup(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_key_interval_and_folder_parse_and_a_bad_key_is_one_line_without_it() {
        let config = parse(&[]).unwrap();
        assert!(config.signing_key.is_none() && config.dir.is_none());
        assert_eq!(config.interval, DEFAULT_INTERVAL);
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let config = parse(&[
            ("BYOC_AUDIT_SIGNING_KEY", seed),
            ("BYOC_AUDIT_DIGEST_INTERVAL_SECS", "60"),
            ("BYOC_AUDIT_DIGEST_DIR", "/var/lib/byoc/digests"),
        ])
        .unwrap();
        assert!(config.signing_key.is_some());
        assert_eq!(config.interval, Duration::from_secs(60));
        assert_eq!(config.dir, Some(PathBuf::from("/var/lib/byoc/digests")));
        let short = &seed[..60];
        let line = parse(&[("BYOC_AUDIT_SIGNING_KEY", short)])
            .err()
            .unwrap()
            .to_string();
        assert!(
            line.starts_with("BYOC_AUDIT_SIGNING_KEY:") && !line.contains(short),
            "{line}"
        );
        for bad in ["0", "-1", "soon", "604801"] {
            let line = parse(&[("BYOC_AUDIT_DIGEST_INTERVAL_SECS", bad)])
                .err()
                .unwrap()
                .to_string();
            assert!(
                line.starts_with("BYOC_AUDIT_DIGEST_INTERVAL_SECS:"),
                "{line}"
            );
        }
    }
}
