//! `GET /api/v1/audit`: the audit log, newest first.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;

use super::error::ApiError;
use super::extract::Caller;
use super::paging::PageWindow;
use super::permission::ReadAudit;
use super::AppState;

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
