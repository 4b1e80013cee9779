//! Liveness and readiness.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map};

use super::error::ApiError;
use super::extract::Caller;
use super::openapi::shapes::HealthReport;
use super::openapi::shapes::Status;
use super::permission::ReadDependencyErrors;
use super::AppState;

/// `GET /api/v1/health`: the status of every dependency; 503 when the database is down.
/// Shared rate-limit counters that are down only degrade the service: the filter applies its
/// configured fallback to global limits while everything else keeps working. Why a dependency
/// is down goes to the log, and to admins in the answer; anyone else sees the status only.
#[utoipa::path(
    get, path = "/api/v1/health", tag = "health", security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Every dependency is up, or only the shared counters are down (`degraded`)", body = HealthReport),
        (status = 503, description = "The database is down", body = HealthReport),
    )
)]
pub async fn health(
    State(state): State<AppState>,
    caller: Result<Caller<ReadDependencyErrors>, ApiError>,
) -> impl IntoResponse {
    let show_errors = caller.is_ok();
    let down = |dependency: &str, error: &dyn std::fmt::Display| {
        tracing::warn!(dependency, %error, "health check: dependency down");
        if show_errors {
            json!({"status": "down", "error": error.to_string()})
        } else {
            json!({"status": "down"})
        }
    };
    let started = Instant::now();
    let database = state.store.ping().await;
    let latency_ms = started.elapsed().as_millis();
    let (status, database) = match database {
        Ok(()) => (
            StatusCode::OK,
            json!({"status": "ok", "latency_ms": latency_ms}),
        ),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, down("database", &error)),
    };
    let mut overall = if status == StatusCode::OK {
        "ok"
    } else {
        "down"
    };
    let mut checks = Map::new();
    checks.insert("database".into(), database);
    if let Some(dependency) = state.counters.dependency() {
        let started = Instant::now();
        let check = match state.counters.ping().await {
            Ok(()) => json!({"status": "ok", "latency_ms": started.elapsed().as_millis()}),
            Err(error) => {
                if overall == "ok" {
                    overall = "degraded";
                }
                down(dependency, &error)
            }
        };
        checks.insert(dependency.into(), check);
    }
    (
        status,
        Json(json!({
            "status": overall,
            "version": env!("CARGO_PKG_VERSION"),
            "checks": checks,
        })),
    )
}

/// `GET /api/v1/ready`: 200 once the process can serve requests that need the database.
#[utoipa::path(
    get, path = "/api/v1/ready", tag = "health", security(()),
    responses(
        (status = 200, description = "The database answers", body = Status, example = json!({"status": "ready"})),
        (status = 503, description = "`not_ready`: the database is not reachable"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"error": {"code": "not_ready", "message": "the database is not reachable"}}),
            ),
        ),
    }
}
