//! `GET /api/v1/users/{id}/quota`: a user's quotas, usage, what allowances hold, and period.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::SelfOr;
use super::openapi::shapes::QuotaReport;
use super::permission::ReadUsers;
use super::users::find;
use super::AppState;
use crate::domain::now;
use crate::limits::inherited::Inherited;
use crate::limits::quota::BYTES_PER_MB;
use crate::limits::quota_state::QuotaState;

#[utoipa::path(
    get, path = "/api/v1/users/{id}/quota", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 200, description = "The user's quotas in the current period", body = QuotaReport), (status = 404, description = "`not_found`: no such user"))
)]
pub async fn get(
    State(state): State<AppState>,
    _: SelfOr<ReadUsers>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let user = find(&state, &id).await?;
    let inherited = Inherited::load(state.store.as_ref(), &user).await?;
    let at = now();
    let policy = state.quotas.get();
    let quota = QuotaState::load(state.store.as_ref(), &policy, &user, &inherited, at).await?;
    let reserved = state
        .store
        .reserved(&user.id, quota.period.start, at)
        .await?;
    let (quotas, usage) = (quota.quotas, quota.usage);
    Ok(Json(json!({
        "user_id": user.id,
        "period_start": quota.period.start,
        "period_end": quota.period.end,
        "reset_day": quotas.reset_day,
        "time_zone": policy.time_zone.name(),
        "quotas": [
            {
                "name": "monthly_requests",
                "limit": quotas.monthly_requests,
                "used": usage.requests,
                "remaining": quotas.monthly_requests.map(|limit| limit.saturating_sub(usage.requests)),
                "reserved": reserved.requests,
            },
            in_megabytes("monthly_bandwidth_mb", quotas.monthly_bandwidth_mb, usage.bytes, reserved.bytes),
            in_megabytes("storage_quota_mb", quotas.storage_quota_mb, usage.storage_bytes, 0),
        ],
    })))
}

/// A quota set in MB and counted in bytes; used, remaining and reserved may be fractions of
/// an MB.
fn in_megabytes(name: &str, limit_mb: Option<u64>, used_bytes: u64, reserved_bytes: u64) -> Value {
    let megabytes = |bytes: u128| bytes as f64 / BYTES_PER_MB as f64;
    let remaining = limit_mb.map(|limit| {
        let limit_bytes = u128::from(limit) * u128::from(BYTES_PER_MB);
        megabytes(limit_bytes.saturating_sub(u128::from(used_bytes)))
    });
    json!({
        "name": name,
        "limit": limit_mb,
        "used": megabytes(u128::from(used_bytes)),
        "used_bytes": used_bytes,
        "remaining": remaining,
        "reserved": megabytes(u128::from(reserved_bytes)),
        "reserved_bytes": reserved_bytes,
    })
}
