//! Health checks of upstream backends, run by the control plane so that N Envoys need not
//! each probe every backend. Results go to the store; a status change republishes xDS.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::changes::audit::AuditEntry;
use crate::domain::now;
use crate::routing::backend::Backend;
use crate::routing::health_probe;
use crate::routing::pool::HealthCheckSettings;
use crate::store::Store;

/// How often the checker looks for backends whose check is due.
const SCAN_INTERVAL: Duration = Duration::from_millis(250);

/// Runs forever: checks each enabled backend at its pool's interval.
pub async fn run(store: Arc<dyn Store>, defaults: HealthCheckSettings) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the health-check client; checks are off");
            return;
        }
    };
    // Backends being checked now; due times come from the stored last check, so a changed
    // interval takes effect at once.
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut interval = tokio::time::interval(SCAN_INTERVAL);
    loop {
        interval.tick().await;
        let (backends, settings) = match (store.backends().await, store.pool_settings().await) {
            (Ok(backends), Ok(settings)) => {
                (backends, settings.into_iter().collect::<HashMap<_, _>>())
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot read backends for health checks");
                continue;
            }
        };
        let at = now();
        for backend in backends.into_iter().filter(|b| b.enabled) {
            let policy = settings
                .get(backend.pool.as_str())
                .copied()
                .unwrap_or(defaults);
            let interval = chrono::Duration::seconds(policy.interval_secs.into());
            let due = backend
                .health
                .last_checked_at
                .is_none_or(|last| at - last >= interval);
            let claimed = due
                && in_flight
                    .lock()
                    .map(|mut checking| checking.insert(backend.id.to_string()))
                    .unwrap_or(false);
            if claimed {
                let in_flight = in_flight.clone();
                let (client, store) = (client.clone(), store.clone());
                tokio::spawn(async move {
                    let id = backend.id.to_string();
                    check_one(client, store, backend, policy).await;
                    if let Ok(mut checking) = in_flight.lock() {
                        checking.remove(&id);
                    }
                });
            }
        }
    }
}

async fn check_one(
    client: reqwest::Client,
    store: Arc<dyn Store>,
    backend: Backend,
    policy: HealthCheckSettings,
) {
    let result = probe(&client, &backend, policy.timeout()).await;
    let health = backend.health.after_check(
        result,
        now(),
        policy.unhealthy_threshold,
        policy.healthy_threshold,
    );
    let changed = health.status != backend.health.status;
    let audit = changed.then(|| {
        AuditEntry::new(
            None,
            "backend.health_changed",
            backend.id.as_str(),
            json!({"from": backend.health.status, "to": health.status, "error": health.last_error}),
        )
    });
    if let Err(error) = store
        .record_health(&backend.id, &health, audit.as_ref())
        .await
    {
        tracing::warn!(%error, backend = %backend.id, "cannot record a health check");
        return;
    }
    if changed {
        tracing::info!(
            backend = %backend.id,
            url = %backend.url,
            from = backend.health.status.as_str(),
            to = health.status.as_str(),
            "backend health changed"
        );
        metrics::counter!("tollgate_backend_health_changes_total", "to" => health.status.as_str())
            .increment(1);
    }
}

/// One GET of the backend's health-check path: `Ok(latency_ms)` for a 2xx or 3xx answer
/// within the timeout.
async fn probe(
    client: &reqwest::Client,
    backend: &Backend,
    timeout: Duration,
) -> Result<u64, String> {
    let target = health_probe::target(backend, client).await?;
    let url = format!("{}{}", target.base_url, backend.health_check_path);
    let started = Instant::now();
    let response = target
        .client
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timed out".to_string()
            } else {
                "connection failed".to_string()
            }
        })?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX))
    } else {
        Err(format!("answered {}", status.as_u16()))
    }
}
