//! `GET /api/organization/audit`: the organization's audit log, newest first, paginated by id;
//! `GET /api/organization/audit/export`: the whole filtered range as JSON Lines, streamed;
//! `GET /api/organization/audit/verify`: whether its hash chain holds; and `GET /api/audit/signing-key`: the
//! public key that checks the signed audit digests.

use actix_web::web::Bytes;
use actix_web::{get, web, HttpResponse};
use byoc_credential_store::{AuditEvent, AuditEventId, AuditFilter, AuditPage, Tenant};

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{
    AuditEntryDto, AuditExportQuery, AuditQuery, AuditVerifyResponse, SigningKeyResponse,
};
use crate::plumbing::error::{ApiError, CauseChain, ErrorBody};
use crate::startup::state::AppState;

/// Events read from the database per statement while exporting: what the export holds in memory at once.
const EXPORT_BATCH: u32 = 1000;
/// The export's media type (JSON Lines).
const JSON_LINES: &str = "application/jsonl";

/// Reads the audit log, newest first: `?limit=` (1–500, default 50) and `?before=` (the last id of the
/// previous page), filtered by `action`, `credentialId`, `actor`, `from` (inclusive) and `to` (exclusive) when
/// given. Every member.
#[utoipa::path(
    get,
    path = "/api/organization/audit",
    tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Audit entries, newest first", body = [AuditEntryDto]),
        (status = 400, description = "Unreadable query string", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 422, description = "limit or before out of range, or a filter that does not parse (the message names it)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/organization/audit")]
pub async fn list_audit(
    caller: Caller,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<AuditEntryDto>>, ApiError> {
    caller.require(Permission::Use)?;
    let page = AuditPage {
        limit: query.page_size()?,
        before: query.cursor()?.map(AuditEventId),
    };
    let filter = query.filter()?;
    let events = state
        .credential_service
        .matching_audit_events(&caller.tenant, &filter, page)
        .await?;
    Ok(web::Json(
        events.into_iter().map(AuditEntryDto::from).collect(),
    ))
}

/// Checks the organization's audit hash chain: every event's hash and link, and the chain head. Every member.
#[utoipa::path(
    get,
    path = "/api/organization/audit/verify",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the check found (a broken chain is still a 200, with intact false)", body = AuditVerifyResponse),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/organization/audit/verify")]
pub async fn verify_audit(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<web::Json<AuditVerifyResponse>, ApiError> {
    caller.require(Permission::Use)?;
    let report = state
        .credential_service
        .verify_audit_chain(&caller.tenant)
        .await?;
    Ok(web::Json(report.into()))
}

/// Exports the organization's audit events that match the filters, newest first, as JSON Lines (one entry per
/// line, as the list returns them), streamed: read a thousand at a time, never held whole. Owners and admins.
#[utoipa::path(
    get,
    path = "/api/organization/audit/export",
    tag = "audit",
    params(AuditExportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "JSON Lines: one audit entry per line, newest first", content_type = "application/jsonl", body = AuditEntryDto),
        (status = 400, description = "Unreadable query string", body = ErrorBody),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not an owner or admin of the token's organization", body = ErrorBody),
        (status = 422, description = "A filter that does not parse (the message names it)", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/organization/audit/export")]
pub async fn export_audit(
    caller: Caller,
    query: web::Query<AuditExportQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Manage)?;
    let filter = query.filter()?;
    // The first batch is read before answering, so that an unavailable database is a 503, not a cut stream.
    let first = read_batch(&state, &caller.tenant, &filter, None).await?;
    let stream = futures::stream::try_unfold(
        ExportState {
            state,
            tenant: caller.tenant.clone(),
            filter,
            batch: Some(first),
        },
        next_chunk,
    );
    Ok(HttpResponse::Ok()
        .content_type(JSON_LINES)
        .streaming(stream))
}

struct ExportState {
    state: web::Data<AppState>,
    tenant: Tenant,
    filter: AuditFilter,
    /// The batch to send next; `None` once the range is exhausted.
    batch: Option<Vec<AuditEvent>>,
}

/// The next chunk of the export: the pending batch as lines, with the following batch read ahead.
async fn next_chunk(mut export: ExportState) -> Result<Option<(Bytes, ExportState)>, ApiError> {
    let Some(batch) = export.batch.take().filter(|batch| !batch.is_empty()) else {
        return Ok(None);
    };
    let full = batch.len() == EXPORT_BATCH as usize;
    let before = batch.last().map(|event| event.id);
    let mut chunk = Vec::with_capacity(batch.len() * 256);
    for event in batch {
        serde_json::to_writer(&mut chunk, &AuditEntryDto::from(event))
            .map_err(|error| ApiError::internal(&error))?;
        chunk.push(b'\n');
    }
    if full {
        export.batch = Some(
            read_batch(&export.state, &export.tenant, &export.filter, before)
                .await
                .inspect_err(|error| {
                    tracing::error!(error = %CauseChain(error), "audit export cut short");
                })?,
        );
    }
    Ok(Some((Bytes::from(chunk), export)))
}

async fn read_batch(
    state: &AppState,
    tenant: &Tenant,
    filter: &AuditFilter,
    before: Option<AuditEventId>,
) -> Result<Vec<AuditEvent>, ApiError> {
    Ok(state
        .credential_service
        .matching_audit_events(
            tenant,
            filter,
            AuditPage {
                limit: EXPORT_BATCH,
                before,
            },
        )
        .await?)
}

/// The public key that checks the signed audit digests (no authentication: it is public). 404 when digests
/// are off (no `BYOC_AUDIT_SIGNING_KEY`).
#[utoipa::path(
    get,
    path = "/api/audit/signing-key",
    tag = "audit",
    responses(
        (status = 200, description = "The Ed25519 public key", body = SigningKeyResponse),
        (status = 404, description = "Audit digests are off", body = ErrorBody),
    )
)]
#[get("/api/audit/signing-key")]
pub async fn signing_key(
    state: web::Data<AppState>,
) -> Result<web::Json<SigningKeyResponse>, ApiError> {
    let key = state
        .audit_public_key
        .ok_or_else(|| ApiError::not_found("audit signing key (digests are off)"))?;
    Ok(web::Json(SigningKeyResponse {
        algorithm: byoc_runtime::audit_digest::ALGORITHM,
        public_key: key.to_hex(),
    }))
}
