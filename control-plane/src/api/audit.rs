//! `GET /api/v1/audit`: the audit log, newest first.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;

use super::error::ApiError;
use super::extract::Caller;
use super::openapi::shapes::ListOf;
use super::paging::PageQuery;
use super::paging::PageWindow;
use super::permission::ReadAudit;
use super::AppState;
use crate::changes::audit::AuditEntry;

#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit",
    params(PageQuery),
    responses((status = 200, description = "A page of the audit log, newest first", body = ListOf<AuditEntry>))
)]
pub async fn list(
    State(state): State<AppState>,
    _: Caller<ReadAudit>,
    window: PageWindow,
) -> Result<impl IntoResponse, ApiError> {
    let page = state
        .store
        .audit_entries(window.offset(), window.per_page)
        .await?;
    Ok(Json(window.list(page)))
}
