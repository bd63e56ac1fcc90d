//! `GET /api/organization/audit`: the organization's audit log, newest first, paginated by id.

use actix_web::{get, web};
use byoc_credential_store::{AuditEventId, AuditPage};

use crate::plumbing::caller::{Caller, Permission};
use crate::plumbing::dto::{AuditEntryDto, AuditQuery};
use crate::plumbing::error::{ApiError, ErrorBody};
use crate::startup::state::AppState;

/// Reads the audit log, newest first: `?limit=` (1–200, default 50) and `?before=` (the last id of the
/// previous page). Every member.
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
        (status = 422, description = "limit or before out of range", body = ErrorBody),
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
    let events = state
        .credential_service
        .audit_events(&caller.tenant, page)
        .await?;
    Ok(web::Json(
        events.into_iter().map(AuditEntryDto::from).collect(),
    ))
}
