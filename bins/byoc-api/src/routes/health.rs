//! `/healthz` (liveness), `/readyz` (database reachable, keyring loaded) and `/metrics` (Prometheus text).

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::metrics::Metrics;
use crate::state::AppState;

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

/// Prometheus text exposition of the service's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String))
)]
#[get("/metrics")]
pub async fn metrics(
    metrics: web::Data<Metrics>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    metrics.observe_credential_service(&state.credential_service);
    let text = metrics
        .render()
        .map_err(|error| ApiError::internal(&error))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
