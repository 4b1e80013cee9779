//! `GET /api/v1/audit`: the audit log, newest first.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller, PageWindow};
use super::permission::ReadAudit;
use super::AppState;

#[derive(Debug, Deserialize)]
pub struct ListAudit {
    page: Option<u64>,
    per_page: Option<u64>,
}

pub async fn list(
    State(state): State<AppState>,
    _: Caller<ReadAudit>,
    ApiQuery(query): ApiQuery<ListAudit>,
) -> Result<impl IntoResponse, ApiError> {
    let window = PageWindow::from_query(query.page, query.per_page)?;
    let page = state
        .store
        .audit_entries(window.offset(), window.per_page)
        .await?;
    Ok(Json(window.list(page)))
}
