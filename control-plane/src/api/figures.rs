//! `GET /metrics` (Prometheus text format) and `GET /api/v1/metrics` (a JSON summary for
//! admins). Both add the backends' health as the store holds it, read at the time of asking,
//! so a removed backend leaves no stale series behind.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::extract::Caller;
use super::permission::ReadMetrics;
use super::AppState;
use crate::routing::backend::{Backend, HealthStatus};

/// `GET /metrics`: every recorded metric, then `tollgate_backend_health_status`.
#[utoipa::path(
    get, path = "/metrics", tag = "health", security(()),
    responses((status = 200, description = "Prometheus metrics", body = String, content_type = "text/plain"))
)]
pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    match state.store.backends().await {
        Ok(backends) => text.push_str(&backend_health(&backends)),
        Err(error) => tracing::warn!(%error, "cannot read the backends' health for /metrics"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// `GET /api/v1/metrics`: the backends by health, and every counter and gauge summed over its
/// labels.
#[utoipa::path(
    get, path = "/api/v1/metrics", tag = "health",
    responses((status = 200, description = "The backends by health, and every counter and gauge summed over its labels", body = Object))
)]
pub async fn summary(
    State(state): State<AppState>,
    _: Caller<ReadMetrics>,
) -> Result<impl IntoResponse, ApiError> {
    let backends = state.store.backends().await?;
    let count = |status: HealthStatus| {
        backends
            .iter()
            .filter(|backend| backend.health.status == status)
            .count()
    };
    Ok(Json(json!({
        "backends": {
            "total": backends.len(),
            "healthy": count(HealthStatus::Healthy),
            "unhealthy": count(HealthStatus::Unhealthy),
            "unknown": count(HealthStatus::Unknown),
        },
        "metrics": totals(&state.metrics.render()),
    })))
}

/// The backends' health as a Prometheus gauge: 1 healthy, 0 otherwise. Backend ids and pool
/// names are lowercase letters, digits, `_` and `-`, so they need no escaping.
fn backend_health(backends: &[Backend]) -> String {
    let mut text = String::from(
        "# HELP tollgate_backend_health_status 1 while the backend passes its health checks, \
         0 otherwise\n# TYPE tollgate_backend_health_status gauge\n",
    );
    for backend in backends {
        let up = u8::from(backend.health.status == HealthStatus::Healthy);
        let _ = writeln!(
            text,
            "tollgate_backend_health_status{{backend=\"{}\",pool=\"{}\"}} {up}",
            backend.id, backend.pool
        );
    }
    text
}

/// Each series' value in Prometheus text, summed per metric name over its labels; a summary's
/// quantiles are left out (its `_sum` and `_count` stay).
fn totals(text: &str) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.contains("quantile=\"") {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse::<f64>().ok());
        if let (Some(value), false) = (value, name_end == 0) {
            *totals.entry(line[..name_end].to_string()).or_insert(0.0) += value;
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_per_name_without_quantiles() {
        let text = "# TYPE a counter\na{x=\"1\"} 2\na{x=\"2\"} 3\nb 1.5\n\
                    d{quantile=\"0.5\"} 9\nd_count 4\n\n";
        let totals = totals(text);
        assert_eq!(totals.get("a"), Some(&5.0));
        assert_eq!(totals.get("b"), Some(&1.5));
        assert_eq!(totals.get("d_count"), Some(&4.0));
        assert_eq!(totals.get("d"), None);
        assert_eq!(totals.len(), 3);
    }
}
