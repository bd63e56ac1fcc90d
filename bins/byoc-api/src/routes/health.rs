//! `/healthz` (liveness), `/readyz` (database reachable, keyring loaded) and `/metrics` (Prometheus text).

use std::time::Duration;

use actix_web::http::header;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::plumbing::auth::bearer_token;
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::plumbing::metrics::{Exposition, Metrics};
use crate::startup::state::AppState;

/// The liveness and readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` when healthy.
    pub status: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = HealthStatus)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<HealthStatus> {
    web::Json(HealthStatus { status: "ok" })
}

/// How long `/readyz` waits for the database. While Postgres is down the pool keeps retrying a connection until
/// its acquire timeout (5 s); a readiness probe gets its 503 after this instead (give the probe a longer
/// timeout than this).
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the database answers (within [`READY_TIMEOUT`]) and the keyring is loaded.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, body = HealthStatus),
        (status = 503, description = "the database is unreachable or does not answer within 2 s", body = ErrorBody),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<web::Json<HealthStatus>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.check_ready()).await {
        Ok(ready) => ready?,
        Err(_) => {
            tracing::warn!(
                timeout_ms = READY_TIMEOUT.as_millis() as u64,
                "readiness check: the database did not answer in time"
            );
            return Err(ApiError::database_unavailable());
        }
    }
    Ok(web::Json(HealthStatus { status: "ok" }))
}

/// Prometheus text exposition of the service's metrics. The per-organization series (`org_id` label) are
/// served only to a request bearing `BYOC_METRICS_TOKEN`; without the header the public series are served; a
/// bearer token that is not the metrics token (or any, when none is configured) answers 401.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus text format: the public series, and the per-organization ones for a bearer of BYOC_METRICS_TOKEN", content_type = "text/plain", body = String),
        (status = 401, description = "A bearer token that is not BYOC_METRICS_TOKEN", body = ErrorBody),
    )
)]
#[get("/metrics")]
pub async fn metrics(
    request: HttpRequest,
    metrics: web::Data<Metrics>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let exposition = match request.headers().get(header::AUTHORIZATION) {
        None => Exposition::Public,
        Some(value) => {
            let token = bearer_token(value.to_str().ok())?;
            if !state.metrics_access.grants(token) {
                return Err(ApiError::unauthorized("not the metrics token"));
            }
            Exposition::WithOrganizations
        }
    };
    metrics.observe_credential_service(&state.credential_service);
    let text = metrics
        .render(exposition)
        .map_err(|error| ApiError::internal(&error))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
