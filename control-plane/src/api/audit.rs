//! `GET /api/v1/audit`: the audit log, newest first, filtered by `actor`, `action` (exact,
//! or a prefix as `user.*`), `target`, `tenant`, `since` and `until` (RFC 3339). Staff of a
//! tenant read only the entries of their tenant's objects.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::openapi::shapes::ListOf;
use super::paging::PageQuery;
use super::paging::PageWindow;
use super::permission::ReadAudit;
use super::AppState;
use crate::changes::audit::AuditEntry;
use crate::domain::Timestamp;
use crate::store::{ActionMatch, AuditFilter, Page};

/// The longest value a filter takes: ids, actions and tenants are far shorter.
const MAX_FILTER_CHARS: usize = 200;

/// The filters of the query, before they are checked.
#[derive(Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    tenant: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit",
    params(PageQuery),
    responses((status = 200, description = "A page of the audit log, newest first", body = ListOf<AuditEntry>))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller<ReadAudit>,
    ApiQuery(query): ApiQuery<AuditQuery>,
    window: PageWindow,
) -> Result<impl IntoResponse, ApiError> {
    let mut filter = query.filter()?;
    if let Some(own) = caller.reach().only_tenant() {
        if filter
            .tenant_id
            .as_deref()
            .is_some_and(|asked| asked != own)
        {
            let nothing: Page<AuditEntry> = Page {
                items: Vec::new(),
                total: 0,
            };
            return Ok(Json(window.list(nothing)));
        }
        filter.tenant_id = Some(own.to_string());
    }
    let page = state
        .store
        .audit_entries_matching(&filter, window.offset(), window.per_page)
        .await?;
    Ok(Json(window.list(page)))
}

impl AuditQuery {
    fn filter(self) -> Result<AuditFilter, ApiError> {
        let action = text("action", self.action)?
            .map(|action| match action.strip_suffix('*') {
                Some(start) if !start.contains('*') => Ok(ActionMatch::Prefix(start.to_string())),
                None if !action.contains('*') => Ok(ActionMatch::Exact(action)),
                _ => Err(invalid(
                    "action",
                    "`action` is an action, or a prefix ending in `*` (`user.*`)",
                )),
            })
            .transpose()?;
        let since = time("since", self.since)?;
        let until = time("until", self.until)?;
        if let (Some(since), Some(until)) = (since, until) {
            if since > until {
                return Err(invalid("until", "`until` must not be before `since`"));
            }
        }
        Ok(AuditFilter {
            actor_user_id: text("actor", self.actor)?,
            action,
            target: text("target", self.target)?,
            tenant_id: text("tenant", self.tenant)?,
            since,
            until,
        })
    }
}

/// A filter's value: not empty, and at most [`MAX_FILTER_CHARS`].
fn text(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(value) if value.is_empty() || value.chars().count() > MAX_FILTER_CHARS => {
            Err(invalid(
                name,
                &format!("`{name}` must be 1 to {MAX_FILTER_CHARS} characters"),
            ))
        }
        value => Ok(value),
    }
}

fn time(name: &str, value: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|value| {
            chrono::DateTime::parse_from_rfc3339(&value)
                .map(|at| at.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    invalid(
                        name,
                        &format!("`{name}` must be an RFC 3339 time (2026-12-07T17:00:00Z)"),
                    )
                })
        })
        .transpose()
}

fn invalid(name: &str, message: &str) -> ApiError {
    ApiError::validation(message).with_field("field", json!(name))
}
