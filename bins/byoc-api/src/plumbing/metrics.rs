//! Prometheus metrics: HTTP requests by route and status, request latency, credential operations, and the
//! credential service's cache and audit-queue figures (read when `/metrics` is scraped).
//!
//! Every label value comes from a fixed set, never from request data: `route` is a registered route pattern
//! (or `unmatched`), `method` one of the standard methods (or `other`), `status` the status code the service
//! answered. The per-organization series (labelled `org_id`) live in a registry of their own, served only to a
//! request that bears `BYOC_METRICS_TOKEN` ([`PerOrganizationAccess`]).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use byoc_credential_store::{CredentialService, CredentialType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use ring::hmac;
use ring::rand::SystemRandom;
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument;

/// The label used for requests that matched no route (keeps label cardinality bounded).
const UNMATCHED_ROUTE: &str = "unmatched";
/// The `method` label of a request whose method is not one of the standard ones.
const OTHER_METHOD: &str = "other";
/// The `outcome` labels of the `verified` credential operation.
const VERIFICATION_OUTCOMES: [&str; 2] = ["ok", "refused"];

/// The `method` label of a request: the standard methods by name, anything else [`OTHER_METHOD`] (a client
/// may invent any number of methods; each would otherwise add series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => OTHER_METHOD,
    }
}

/// Who may read the per-organization series of `/metrics`: a request bearing `BYOC_METRICS_TOKEN`. Keeps an
/// HMAC of the token under a random key, never the token itself, and compares in constant time. Without a
/// configured token nobody may.
pub struct PerOrganizationAccess {
    token: Option<(hmac::Key, hmac::Tag)>,
}

impl PerOrganizationAccess {
    /// Access for bearers of `token`; `None` grants it to nobody. Fails only when the system random generator
    /// does.
    pub fn new(
        token: Option<&SecretString>,
    ) -> Result<PerOrganizationAccess, ring::error::Unspecified> {
        let token = token
            .map(|token| {
                let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())?;
                let tag = hmac::sign(&key, token.expose_secret().as_bytes());
                Ok::<_, ring::error::Unspecified>((key, tag))
            })
            .transpose()?;
        Ok(PerOrganizationAccess { token })
    }

    /// Whether `presented` (a bearer token) is the configured metrics token.
    pub fn grants(&self, presented: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|(key, tag)| hmac::verify(key, presented.as_bytes(), tag.as_ref()).is_ok())
    }
}

/// Which series a `/metrics` answer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// Every series without an organization label.
    Public,
    /// The public series and the per-organization ones (for a bearer of `BYOC_METRICS_TOKEN`).
    WithOrganizations,
}

/// Why a status callback was refused: the `reason` label of `byoc_twilio_webhook_refusals_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookRefusal {
    /// No `org` in the URL, or not an organization id.
    UnknownOrganization,
    /// No `X-Twilio-Signature` header.
    MissingSignature,
    /// The organization sent more callbacks than `BYOC_TWILIO_WEBHOOK_PER_MINUTE` allows.
    RateLimited,
    /// The organization has no usable Twilio credential.
    NoCredential,
    /// The form's `AccountSid` is not the account of the organization's credential.
    AccountMismatch,
    /// The signature does not check out with the organization's auth token.
    BadSignature,
}

impl WebhookRefusal {
    /// Every reason, in the order they are checked.
    pub const ALL: [WebhookRefusal; 6] = [
        WebhookRefusal::UnknownOrganization,
        WebhookRefusal::MissingSignature,
        WebhookRefusal::RateLimited,
        WebhookRefusal::NoCredential,
        WebhookRefusal::AccountMismatch,
        WebhookRefusal::BadSignature,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookRefusal::UnknownOrganization => "unknown_organization",
            WebhookRefusal::MissingSignature => "missing_signature",
            WebhookRefusal::RateLimited => "rate_limited",
            WebhookRefusal::NoCredential => "no_credential",
            WebhookRefusal::AccountMismatch => "account_mismatch",
            WebhookRefusal::BadSignature => "bad_signature",
        }
    }
}

/// The service's metrics, registered in two registries: the public series and the per-organization ones.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    per_organization: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    credential_operations: IntCounterVec,
    audit_queue: IntGauge,
    legacy_fallback_uses: IntCounter,
    cache_lookups: IntCounterVec,
    outage_answers: IntCounter,
    database_in_doubt: IntGauge,
    twilio_webhook_refusals: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("byoc".to_owned()), None)?;
        let per_organization = Registry::new_custom(Some("byoc".to_owned()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and method",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route", "method"],
        )?;
        let credential_operations = IntCounterVec::new(
            Opts::new(
                "credential_operations_total",
                "Credential operations by operation, credential type and outcome",
            ),
            &["operation", "credential_type", "outcome"],
        )?;
        // The verification outcomes exist from start at 0, so the first refusal of a replica shows in
        // `increase()` (an alert on refusals would miss a series that appears already at 1).
        for credential_type in CredentialType::ALL {
            for outcome in VERIFICATION_OUTCOMES {
                credential_operations.with_label_values(&[
                    "verified",
                    credential_type.as_str(),
                    outcome,
                ]);
            }
        }
        let audit_queue = IntGauge::new(
            "audit_queue_pending",
            "Audit events queued by the credential service and not yet written",
        )?;
        let legacy_fallback_uses = IntCounter::new(
            "legacy_fallback_uses_total",
            "Times the legacy TWILIO_* credentials were served to an organization in the fallback list",
        )?;
        let cache_lookups = IntCounterVec::new(
            Opts::new(
                "credential_cache_lookups_total",
                "Credential lookups by the credential service, answered from its cache (hit) or not (miss)",
            ),
            &["result"],
        )?;
        let outage_answers = IntCounter::new(
            "outage_cached_answers_total",
            "Credentials, member roles and organizations answered as last read (within the cache TTL) because the database could not answer",
        )?;
        registry.register(Box::new(cache_lookups.clone()))?;
        let database_in_doubt = IntGauge::new(
            "database_in_doubt",
            "1 while the credential change listener has lost the database (Postgres): credentials, roles and organizations are read with a short wait and answered from the cache when the database does not answer",
        )?;
        registry.register(Box::new(outage_answers.clone()))?;
        registry.register(Box::new(database_in_doubt.clone()))?;
        registry.register(Box::new(audit_queue.clone()))?;
        registry.register(Box::new(legacy_fallback_uses.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_latency.clone()))?;
        registry.register(Box::new(credential_operations.clone()))?;
        let twilio_webhook_refusals = IntCounterVec::new(
            Opts::new(
                "twilio_webhook_refusals_total",
                "Twilio status callbacks refused, by reason (unknown_organization, missing_signature, rate_limited, no_credential, account_mismatch, bad_signature)",
            ),
            &["reason"],
        )?;
        for reason in WebhookRefusal::ALL {
            twilio_webhook_refusals.with_label_values(&[reason.as_str()]);
        }
        registry.register(Box::new(twilio_webhook_refusals.clone()))?;
        Ok(Metrics {
            registry,
            per_organization,
            http_requests,
            http_latency,
            credential_operations,
            audit_queue,
            legacy_fallback_uses,
            cache_lookups,
            outage_answers,
            database_in_doubt,
            twilio_webhook_refusals,
        })
    }

    /// Counts one credential operation (`created`, `verified`, `deactivated`, `purged`, …).
    pub fn credential_operation(&self, operation: &str, credential_type: &str, outcome: &str) {
        self.credential_operations
            .with_label_values(&[operation, credential_type, outcome])
            .inc();
    }

    /// Counts one refused Twilio status callback.
    pub fn twilio_webhook_refused(&self, reason: WebhookRefusal) {
        self.twilio_webhook_refusals
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Registers another collector of public series (no organization label) in the service's registry.
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// Registers a collector of per-organization series (labelled `org_id`), served only with
    /// [`Exposition::WithOrganizations`].
    pub fn register_per_organization(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.per_organization.register(collector)
    }

    /// Reads the credential service's figures (audit queue, legacy fallback uses, cache hits and misses,
    /// answers served from the cache through a database outage, whether the database is in doubt) into the
    /// metrics.
    pub fn observe_credential_service(&self, service: &CredentialService) {
        let stats = service.cache_stats();
        for (result, total) in [("hit", stats.hits), ("miss", stats.misses)] {
            let counter = self.cache_lookups.with_label_values(&[result]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.outage_answers.inc_by(
            stats
                .outage_answers
                .saturating_sub(self.outage_answers.get()),
        );
        self.database_in_doubt
            .set(i64::from(service.database_in_doubt()));
        self.audit_queue
            .set(i64::try_from(service.pending_audit_events()).unwrap_or(i64::MAX));
        let uses = service.legacy_fallback_uses();
        self.legacy_fallback_uses
            .inc_by(uses.saturating_sub(self.legacy_fallback_uses.get()));
    }

    /// The Prometheus text exposition of the public series, and of the per-organization ones too when
    /// `exposition` says so.
    pub fn render(&self, exposition: Exposition) -> Result<String, prometheus::Error> {
        let mut families = self.registry.gather();
        if exposition == Exposition::WithOrganizations {
            families.extend(self.per_organization.gather());
        }
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&families, &mut buffer)?;
        String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
    }

    fn observe(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_latency
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// The header carrying a request's id (taken from the caller when it sends a sane one, else generated).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Middleware: gives each request an id (answered in `x-request-id` and attached to every log line of the
/// request), records its route pattern, status and latency, and logs one line per request (method, route
/// pattern, status, milliseconds; never the query string, which may hold an OAuth code).
pub async fn track_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(request.method());
    let metrics = request.app_data::<web::Data<Metrics>>().cloned();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut result = next.call(request).instrument(span.clone()).await;
    let (route, status) = match &result {
        Ok(response) => (
            response.request().match_pattern(),
            response.status().as_u16(),
        ),
        Err(error) => (None, error.as_response_error().status_code().as_u16()),
    };
    let route = route.unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.observe(&route, method, status, elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            route = %route,
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    if let (Ok(response), Ok(value)) = (&mut result, HeaderValue::from_str(&request_id)) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    result
}

/// A caller's request id is reused when it is 1 to 64 characters of `A-Z a-z 0-9 - _ .`.
fn is_sane_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_checked() {
        assert!(is_sane_request_id("abc-123_x.y"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id(&"a".repeat(65)));
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let invented = Method::from_bytes(b"BREW").expect("a valid token");
        assert_eq!(method_label(&invented), OTHER_METHOD);
    }

    #[test]
    fn only_the_configured_token_grants_the_per_organization_series() {
        let token = SecretString::from("a-metrics-token-that-is-long-enough-0123");
        let access = PerOrganizationAccess::new(Some(&token)).expect("random");
        assert!(access.grants("a-metrics-token-that-is-long-enough-0123"));
        assert!(!access.grants("a-metrics-token-that-is-long-enough-0124"));
        assert!(!access.grants(""));
        let nobody = PerOrganizationAccess::new(None).expect("random");
        assert!(!nobody.grants("a-metrics-token-that-is-long-enough-0123"));
    }

    #[test]
    fn renders_registered_metrics_in_text_format() {
        let metrics = Metrics::new().expect("metrics register");
        metrics.observe("/healthz", "GET", 200, 0.002);
        metrics.credential_operation("created", "twilio", "ok");
        let per_org = IntGauge::new("per_org_probe", "a per-organization series").expect("gauge");
        metrics
            .register_per_organization(Box::new(per_org))
            .expect("register");
        assert!(!metrics
            .render(Exposition::Public)
            .expect("render")
            .contains("byoc_per_org_probe"));
        let text = metrics
            .render(Exposition::WithOrganizations)
            .expect("render");
        assert!(text.contains("byoc_per_org_probe 0"), "{text}");
        assert!(
            text.contains(
                r#"byoc_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("byoc_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"byoc_credential_operations_total{credential_type="twilio",operation="created",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"byoc_credential_operations_total{credential_type="google_calendar",operation="verified",outcome="refused"} 0"#),
            "the verification outcomes are there before the first verification: {text}"
        );
    }
}
