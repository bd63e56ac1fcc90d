//! Credential events for the SaaS: the store queues every status change in an outbox in the transaction that
//! makes it; this task claims what is due (one replica per event and attempt), POSTs each as JSON signed per
//! Standard Webhooks to `BYOC_EVENTS_URL`, deletes what the receiver accepted (any 2xx) and retries the rest with
//! exponential backoff (1 s doubling to an hour), for [`RETENTION`]. At least once: the `webhook-id` lets the
//! receiver drop duplicates. Signed audit digests ([`crate::usecases::audit_digests`]) go the same way, as
//! `audit.digest` events, for [`RETENTION`] after they were issued.

use std::sync::Arc;
use std::time::Duration;

use byoc_credential_store::{
    AuditDigestDelivery, CredentialEvent, CredentialRepository, EventDelivery, StoreError,
};
use byoc_runtime::audit_digest::SignedDigest;
use byoc_runtime::config::{invalid, parse_url, ConfigError};
use chrono::SecondsFormat;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::task::JoinHandle;
use url::Url;

use crate::plumbing::error::CauseChain;
use crate::usecases::standard_webhooks::SigningSecret;

/// How long an event is kept for delivery (and, without `BYOC_EVENTS_URL`, at all).
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a claimed event is reserved for the replica that claimed it.
const LEASE: Duration = Duration::from_secs(60);
/// The wait before the first retry; it doubles with every attempt.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const LONGEST_RETRY: Duration = Duration::from_secs(3600);
/// How long the receiver has to answer.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Events claimed at once.
const CLAIM_BATCH: u32 = 20;
/// How often the outbox is looked at when it had nothing due.
const POLL: Duration = Duration::from_secs(1);
/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// `BYOC_EVENTS_URL` and `BYOC_EVENTS_SECRET`.
pub struct EventsConfig {
    /// Where events are POSTed.
    pub url: Url,
    /// The Standard Webhooks secret (`whsec_…`).
    pub secret: SecretString,
}

impl EventsConfig {
    /// Reads both variables: neither (no events sent), or both, the URL absolute http(s) and the secret a
    /// well-formed `whsec_` secret.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<EventsConfig>, ConfigError> {
        match (get("BYOC_EVENTS_URL"), get("BYOC_EVENTS_SECRET")) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(invalid(
                "BYOC_EVENTS_SECRET",
                "required when BYOC_EVENTS_URL is set (whsec_ followed by base64)",
            )),
            (None, Some(_)) => Err(invalid(
                "BYOC_EVENTS_URL",
                "required when BYOC_EVENTS_SECRET is set",
            )),
            (Some(url), Some(secret)) => {
                let url = parse_url("BYOC_EVENTS_URL", url.trim())?;
                if let Err(error) = SigningSecret::parse(&secret) {
                    return Err(invalid("BYOC_EVENTS_SECRET", error.to_string()));
                }
                Ok(Some(EventsConfig {
                    url,
                    secret: SecretString::from(secret.trim().to_owned()),
                }))
            }
        }
    }
}

/// The JSON body of an event (Standard Webhooks' `type`, `timestamp`, `data`).
#[derive(Debug, Serialize)]
pub struct EventBody<'a> {
    /// `credential.verified`, `credential.verification_failed`, `credential.reconnect_needed`,
    /// `credential.deactivated` or `credential.purged`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the change was committed (RFC 3339, UTC).
    pub timestamp: String,
    /// The credential.
    pub data: EventData<'a>,
}

/// The credential an event is about (metadata only, never a secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData<'a> {
    /// The event's id (also `webhook-id`).
    pub event_id: String,
    /// The organization.
    pub organization_id: String,
    /// The credential.
    pub credential_id: String,
    /// `twilio`, `google_calendar`, `stripe` or `hubspot`.
    pub credential_type: &'static str,
    /// Its display name.
    pub display_name: &'a str,
    /// Its verification status after the change.
    pub verification_status: &'static str,
    /// The provider's reason for a refusal, if any.
    pub verification_error: Option<&'a str>,
    /// How many times this event has been sent, this attempt included.
    pub attempt: u32,
}

impl<'a> EventBody<'a> {
    /// The body of `event`.
    pub fn of(event: &'a CredentialEvent) -> EventBody<'a> {
        EventBody {
            kind: event.kind.as_str(),
            timestamp: event
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            data: EventData {
                event_id: event.id.to_string(),
                organization_id: event.org_id.to_string(),
                credential_id: event.credential_id.to_string(),
                credential_type: event.credential_type.as_str(),
                display_name: &event.display_name,
                verification_status: event.verification_status.as_str(),
                verification_error: event.verification_error.as_deref(),
                attempt: event.attempts,
            },
        }
    }
}

/// The JSON body of an `audit.digest` event.
#[derive(Debug, Serialize)]
pub struct DigestEventBody {
    /// `audit.digest`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the digest was issued (RFC 3339, UTC).
    pub timestamp: String,
    /// The digest.
    pub data: DigestEventData,
}

/// What an `audit.digest` event carries: the digest exactly as filed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestEventData {
    /// The event's id (also `webhook-id`).
    pub event_id: String,
    /// The organization.
    pub organization_id: String,
    /// `{"payload": "<JSON text>", "signature": "<hex>"}`.
    pub digest: SignedDigest,
    /// How many times this event has been sent, this attempt included.
    pub attempt: u32,
}

impl DigestEventBody {
    /// The body of a digest's delivery.
    pub fn of(delivery: &AuditDigestDelivery) -> DigestEventBody {
        DigestEventBody {
            kind: "audit.digest",
            timestamp: delivery
                .issued_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            data: DigestEventData {
                event_id: delivery.id.to_string(),
                organization_id: delivery.digest.org_id.to_string(),
                digest: SignedDigest::of(&delivery.digest),
                attempt: delivery.attempts,
            },
        }
    }
}

/// The wait after attempt `attempts` failed: 1 s, 2 s, 4 s, … at most an hour.
pub fn retry_after(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    FIRST_RETRY
        .saturating_mul(1u32 << doublings)
        .min(LONGEST_RETRY)
}

/// Why the events task could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The HTTP client could not be built.
    #[error("events HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The secret no longer parses (it was checked when the configuration was read).
    #[error("BYOC_EVENTS_SECRET: {0}")]
    Secret(#[from] crate::usecases::standard_webhooks::SecretError),
}

/// Sends events to the configured receiver.
struct Sender {
    url: Url,
    secret: SigningSecret,
    client: reqwest::Client,
}

impl Sender {
    fn new(config: &EventsConfig) -> Result<Sender, EventsError> {
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(EventsError::Client)?;
        Ok(Sender {
            url: config.url.clone(),
            secret: SigningSecret::parse(config.secret.expose_secret())?,
            client,
        })
    }

    /// One delivery attempt of a credential event.
    async fn deliver(&self, event: &CredentialEvent) -> EventDelivery {
        self.post(&event.id.to_string(), &EventBody::of(event), event.attempts)
            .await
    }

    /// One delivery attempt of an audit digest.
    async fn deliver_digest(&self, delivery: &AuditDigestDelivery) -> EventDelivery {
        self.post(
            &delivery.id.to_string(),
            &DigestEventBody::of(delivery),
            delivery.attempts,
        )
        .await
    }

    /// POSTs `body` signed as event `id`, attempt `attempts`.
    async fn post(&self, id: &str, body: &impl Serialize, attempts: u32) -> EventDelivery {
        let body = match serde_json::to_vec(body) {
            Ok(body) => body,
            Err(error) => {
                return EventDelivery::Retry {
                    after: LONGEST_RETRY,
                    error: format!("cannot encode the event: {error}"),
                }
            }
        };
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.secret.sign(id, timestamp, &body);
        let answer = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let failure = match answer {
            Ok(response) if response.status().is_success() => return EventDelivery::Delivered,
            Ok(response) => format!("the receiver answered HTTP {}", response.status().as_u16()),
            Err(error) => format!("the receiver could not be reached: {}", CauseChain(&error)),
        };
        EventDelivery::Retry {
            after: retry_after(attempts),
            error: failure,
        }
    }
}

/// Starts the background task: delivers events when `config` is set, and prunes events older than
/// [`RETENTION`] either way.
pub fn start(
    config: Option<&EventsConfig>,
    repository: Arc<dyn CredentialRepository>,
) -> Result<JoinHandle<()>, EventsError> {
    let sender = config.map(Sender::new).transpose()?;
    Ok(tokio::spawn(run(sender, repository)))
}

async fn run(sender: Option<Sender>, repository: Arc<dyn CredentialRepository>) {
    let mut next_prune = tokio::time::Instant::now();
    let mut refused = false;
    loop {
        if tokio::time::Instant::now() >= next_prune {
            match repository.prune_credential_events(RETENTION).await {
                Ok(0) => {}
                Ok(pruned) => tracing::warn!(
                    pruned,
                    "credential events older than 7 days were dropped undelivered"
                ),
                Err(error) => {
                    tracing::debug!(error = %CauseChain(&error), "credential events: could not prune")
                }
            }
            next_prune += PRUNE_EVERY;
        }
        let Some(sender) = &sender else {
            tokio::time::sleep_until(next_prune).await;
            continue;
        };
        let events = match repository.claim_credential_events(CLAIM_BATCH, LEASE).await {
            Ok(events) => {
                refused = false;
                events
            }
            Err(error) => {
                if !refused || !matches!(error, StoreError::Denied { .. }) {
                    tracing::warn!(error = %CauseChain(&error), "credential events: could not claim");
                }
                refused = matches!(error, StoreError::Denied { .. });
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let full = events.len() == CLAIM_BATCH as usize;
        for event in &events {
            let outcome = sender.deliver(event).await;
            if let EventDelivery::Retry { after, error } = &outcome {
                tracing::warn!(
                    event_id = %event.id,
                    event_type = event.kind.as_str(),
                    attempt = event.attempts,
                    retry_in_secs = after.as_secs(),
                    %error,
                    "credential event not delivered; will retry"
                );
            }
            if let Err(error) = repository.finish_credential_event(event.id, &outcome).await {
                tracing::warn!(
                    event_id = %event.id,
                    error = %CauseChain(&error),
                    "credential event: could not record the delivery (it is sent again after its lease)"
                );
            }
        }
        let digests_full = deliver_digests(sender, repository.as_ref()).await;
        if !full && !digests_full {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Delivers the audit digests that are due; whether a full batch was claimed (more may be waiting).
async fn deliver_digests(sender: &Sender, repository: &dyn CredentialRepository) -> bool {
    let deliveries = match repository
        .claim_audit_digest_deliveries(CLAIM_BATCH, LEASE, RETENTION)
        .await
    {
        Ok(deliveries) => deliveries,
        Err(error) => {
            tracing::debug!(error = %CauseChain(&error), "audit digests: could not claim deliveries");
            return false;
        }
    };
    for delivery in &deliveries {
        let outcome = sender.deliver_digest(delivery).await;
        if let EventDelivery::Retry { after, error } = &outcome {
            tracing::warn!(
                event_id = %delivery.id,
                event_type = "audit.digest",
                attempt = delivery.attempts,
                retry_in_secs = after.as_secs(),
                %error,
                "audit digest event not delivered; will retry"
            );
        }
        if let Err(error) = repository
            .finish_audit_digest_delivery(delivery.id, &outcome)
            .await
        {
            tracing::warn!(
                event_id = %delivery.id,
                error = %CauseChain(&error),
                "audit digest event: could not record the delivery (it is sent again after its lease)"
            );
        }
    }
    deliveries.len() == CLAIM_BATCH as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<EventsConfig>, ConfigError> {
        EventsConfig::from_lookup(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn both_variables_or_neither_and_a_malformed_secret_is_one_line_without_it() {
        assert!(parse(&[]).unwrap().is_none());
        let config = parse(&[
            ("BYOC_EVENTS_URL", "https://saas.example/hooks"),
            ("BYOC_EVENTS_SECRET", SECRET),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.url.as_str(), "https://saas.example/hooks");
        let line = parse(&[("BYOC_EVENTS_URL", "https://saas.example/hooks")])
            .err()
            .unwrap()
            .to_string();
        assert!(line.starts_with("BYOC_EVENTS_SECRET:"), "{line}");
        let line = parse(&[("BYOC_EVENTS_SECRET", SECRET)])
            .err()
            .unwrap()
            .to_string();
        assert!(line.starts_with("BYOC_EVENTS_URL:"), "{line}");
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_%%%",
            "whsec_c2hvcnQ=",
        ] {
            let line = parse(&[
                ("BYOC_EVENTS_URL", "https://saas.example/hooks"),
                ("BYOC_EVENTS_SECRET", bad),
            ])
            .err()
            .unwrap()
            .to_string();
            assert!(
                line.starts_with("BYOC_EVENTS_SECRET:")
                    && !line.contains(bad)
                    && !line.contains('\n'),
                "{line}"
            );
        }
        let line = parse(&[
            ("BYOC_EVENTS_URL", "not a url"),
            ("BYOC_EVENTS_SECRET", SECRET),
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(line.starts_with("BYOC_EVENTS_URL:"), "{line}");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_an_hour() {
        assert_eq!(retry_after(1), Duration::from_secs(1));
        assert_eq!(retry_after(2), Duration::from_secs(2));
        assert_eq!(retry_after(5), Duration::from_secs(16));
        assert_eq!(retry_after(40), LONGEST_RETRY);
    }
}
