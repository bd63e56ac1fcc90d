//! `GET /api/organization/audit`: the organization's audit log, newest first, paginated by id; and
//! `GET /api/organization/audit/verify`: whether its hash chain holds.

use actix_web::{get, web};
use byoc_credential_store::{AuditEventId, AuditPage};

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{AuditEntryDto, AuditQuery, AuditVerifyResponse};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::startup::state::AppState;

/// Reads the audit log, newest first: `?limit=` (1–200, default 50) and `?before=` (the last id of the
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
