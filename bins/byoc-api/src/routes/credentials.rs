//! `/api/organization/credentials…`: list, add, verify, deactivate and purge an organization's credentials.

use actix_web::{get, web};

use crate::caller::{Caller, Permission};
use crate::dto::CredentialRow;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Lists the organization's credentials (metadata only, newest first; never a secret). Every member.
#[utoipa::path(
    get,
    path = "/api/organization/credentials",
    tag = "credentials",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The organization's credentials", body = [CredentialRow]),
        (status = 401, description = "Missing, malformed, badly signed or expired token", body = ErrorBody),
        (status = 403, description = "Not a member of the token's organization", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
#[get("/api/organization/credentials")]
pub async fn list_credentials(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<CredentialRow>>, ApiError> {
    caller.require(Permission::Use)?;
    let credentials = state.repository.list_credentials(&caller.tenant).await?;
    Ok(web::Json(
        credentials.into_iter().map(CredentialRow::from).collect(),
    ))
}
