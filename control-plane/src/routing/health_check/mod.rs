//! Health checks of upstream backends, run by the control plane so that N Envoys need not
//! each probe every backend, and shared among the control plane's replicas so that each
//! backend is checked by one of them.
//!
//! The checker keeps every backend's latest health in memory. A health status change is
//! written at once (with its audit entry, and it republishes xDS; the changes found while the
//! last were written go together in one write); the rest (last check,
//! latency, counts) is written for all backends in one batch every [`SUMMARY_INTERVAL`]. The
//! backends are read once at start; after that the checker follows the routing feed and
//! reloads only the backends, pools it names, or everything when the feed was reset or the
//! replicas changed.

mod feed_cursor;
mod probe;
mod roster;
mod sharing;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use crate::changes::audit::AuditEntry;
use crate::changes::routing::Rerouted;
use crate::changes::signal::ChangeSignal;
use crate::domain::ids::{BackendId, CheckerId};
use crate::domain::live::Live;
use crate::domain::now;
use crate::routing::backend::Backend;
use crate::routing::pool::HealthCheckSettings;
use crate::store::{Store, StoreError};
use feed_cursor::FeedCursor;
use roster::{Due, Roster, StatusChange};
use sharing::{LeaseTiming, Replicas};

/// How often the checker looks, in memory, for backends whose check is due.
const SCAN_INTERVAL: Duration = Duration::from_millis(250);
/// The most checks under way at once, so that a fleet due together (at start) is checked in
/// waves rather than with a socket per backend at the same instant.
const MAX_CHECKS_IN_FLIGHT: usize = 512;
/// How often the checker reads the routing feed for what other replicas changed (this
/// replica's changes wake it at once).
const FEED_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often the latest checks of every backend are written, in one batch.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);
/// The most check results taken at once; their status changes are written together.
const MAX_CHANGES_PER_WRITE: usize = 1000;
/// The most routing changes read at once.
const FEED_PAGE: u64 = 1000;

/// A check's result, from the task that made it.
struct Finished {
    id: BackendId,
    generation: u64,
    result: Result<u64, String>,
}

/// Runs forever: checks this replica's share of the enabled backends at their pools'
/// intervals. `routing` wakes it when this replica changes the routing.
pub async fn run(
    store: Arc<dyn Store>,
    defaults: Live<HealthCheckSettings>,
    routing: ChangeSignal,
) {
    let me = CheckerId::generate();
    let user_agent = format!("tollgate-health-check/{} ({me})", env!("CARGO_PKG_VERSION"));
    let client = match probe::client_builder(&user_agent).build() {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the health-check client; checks are off");
            return;
        }
    };
    tracing::info!(checker = %me, "health checks start");
    let (finished, mut results) = mpsc::unbounded_channel();
    let mut checker = Checker {
        store,
        client,
        user_agent: user_agent.into(),
        roster: Roster::new(*defaults.get()),
        replicas: Replicas::alone(me),
        cursor: None,
        finished,
        in_flight: 0,
    };
    checker.renew_lease().await;
    if checker.cursor.is_none() {
        checker.load_all().await;
    }

    let mut scan = tokio::time::interval(SCAN_INTERVAL);
    let mut feed_poll = tokio::time::interval(FEED_POLL_INTERVAL);
    let mut summary = tokio::time::interval_at(
        tokio::time::Instant::now() + SUMMARY_INTERVAL,
        SUMMARY_INTERVAL,
    );
    let mut next_renewal = tokio::time::Instant::now() + checker.lease_timing().renew_every;
    let announced = routing.announced();
    tokio::pin!(announced);
    loop {
        tokio::select! {
            _ = scan.tick() => {
                checker.roster.set_defaults(*defaults.get());
                checker.start_due_checks();
            }
            Some(done) = results.recv() => {
                let mut finished = vec![done];
                while finished.len() < MAX_CHANGES_PER_WRITE {
                    match results.try_recv() {
                        Ok(more) => finished.push(more),
                        Err(_) => break,
                    }
                }
                checker.finish(finished).await;
            }
            () = &mut announced => {
                announced.set(routing.announced());
                checker.follow_feed().await;
            }
            _ = feed_poll.tick() => checker.follow_feed().await,
            () = tokio::time::sleep_until(next_renewal) => {
                checker.renew_lease().await;
                next_renewal = tokio::time::Instant::now() + checker.lease_timing().renew_every;
            }
            _ = summary.tick() => checker.write_summary().await,
        }
    }
}

struct Checker {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    user_agent: Arc<str>,
    roster: Roster,
    replicas: Replicas,
    /// `None` until everything has been loaded, and again when a load is due.
    cursor: Option<FeedCursor>,
    finished: mpsc::UnboundedSender<Finished>,
    /// Checks started and not yet finished.
    in_flight: usize,
}

impl Checker {
    fn lease_timing(&self) -> LeaseTiming {
        LeaseTiming::for_shortest_interval(self.roster.shortest_interval())
    }

    fn start_due_checks(&mut self) {
        let room = MAX_CHECKS_IN_FLIGHT.saturating_sub(self.in_flight);
        for due in self.roster.start_due(Instant::now(), room) {
            self.in_flight += 1;
            let (client, user_agent) = (self.client.clone(), self.user_agent.clone());
            let finished = self.finished.clone();
            tokio::spawn(async move {
                let Due {
                    backend,
                    settings,
                    generation,
                } = due;
                let result = probe::probe(&client, &user_agent, &backend, settings.timeout()).await;
                let outcome = if result.is_ok() { "passed" } else { "failed" };
                metrics::counter!("tollgate_health_checks_total", "result" => outcome).increment(1);
                let _ = finished.send(Finished {
                    id: backend.id,
                    generation,
                    result,
                });
            });
        }
    }

    /// Takes checks' results; the status changes among them are written at once, together.
    async fn finish(&mut self, done: Vec<Finished>) {
        self.in_flight = self.in_flight.saturating_sub(done.len());
        let at = now();
        let changes: Vec<_> = done
            .into_iter()
            .filter_map(|done| self.roster.record(&done.id, done.generation, done.result, at))
            .map(|StatusChange { checked, from }| {
                let audit = AuditEntry::new(
                    None,
                    "backend.health_changed",
                    checked.id.as_str(),
                    json!({"from": from, "to": checked.health.status, "error": checked.health.last_error}),
                );
                (checked, audit)
            })
            .collect();
        let recorded = match self.store.record_health_changes(&changes).await {
            Ok(recorded) => recorded,
            // Tried again after each backend's next check.
            Err(error) => {
                tracing::warn!(%error, "cannot record health changes");
                return;
            }
        };
        // A backend changed since it was checked is left out; the routing feed brings it.
        for ((checked, audit), _) in changes.iter().zip(recorded).filter(|(_, kept)| *kept) {
            self.roster.stored(checked);
            let to = checked.health.status.as_str();
            tracing::info!(backend = %checked.id, details = %audit.details, "backend health changed");
            metrics::counter!("tollgate_backend_health_changes_total", "to" => to).increment(1);
        }
    }

    /// Writes the latest checks the store does not hold yet, in one batch.
    async fn write_summary(&mut self) {
        let unstored = self.roster.unstored();
        if unstored.is_empty() {
            return;
        }
        match self.store.record_health_summary(&unstored).await {
            Ok(_) => unstored
                .iter()
                .for_each(|checked| self.roster.stored(checked)),
            Err(error) => tracing::warn!(%error, "cannot record the latest health checks"),
        }
    }

    /// Renews this replica's lease and looks at the others'; when they changed, backends move
    /// and everything is loaded again to take over the stored health of those that came.
    async fn renew_lease(&mut self) {
        let timing = self.lease_timing();
        let now_ms = now().timestamp_millis();
        let expires_at_ms =
            now_ms.saturating_add(i64::try_from(timing.lease.as_millis()).unwrap_or(i64::MAX));
        if let Err(error) = self
            .store
            .renew_checker_lease(self.replicas.me().as_str(), expires_at_ms)
            .await
        {
            tracing::warn!(%error, "cannot renew the health-check lease");
        }
        let leases = match self.store.checker_leases().await {
            Ok(leases) => leases,
            Err(error) => {
                tracing::warn!(%error, "cannot read the other health checkers");
                return;
            }
        };
        if leases.iter().any(|lease| lease.expires_at_ms < now_ms) {
            if let Err(error) = self.store.remove_expired_checkers(now_ms).await {
                tracing::warn!(%error, "cannot forget the expired health checkers");
            }
        }
        let changed = self.replicas.update(&leases, now_ms);
        metrics::gauge!("tollgate_health_checkers").set(self.replicas.count() as f64);
        if changed {
            tracing::info!(replicas = self.replicas.count(), "health checkers changed");
            self.cursor = None;
            self.load_all().await;
        }
    }

    /// Loads every backend and pool; the routing feed is followed from there.
    async fn load_all(&mut self) {
        match self.read_all().await {
            Ok(cursor) => {
                self.cursor = Some(cursor);
                metrics::counter!("tollgate_health_check_full_loads_total").increment(1);
                metrics::gauge!("tollgate_health_checked_backends").set(self.roster.owned() as f64);
            }
            Err(error) => tracing::warn!(%error, "cannot read the backends for health checks"),
        }
    }

    async fn read_all(&mut self) -> Result<FeedCursor, StoreError> {
        let latest = self.store.latest_routing_change().await?;
        let settings = self.store.pool_settings().await?;
        let backends = self.store.backends().await?;
        self.roster.set_pool_settings(settings);
        self.roster.load_all(backends, &self.replicas, now());
        Ok(FeedCursor::after_full_load(latest))
    }

    /// Applies what the routing feed says changed since it was last read.
    async fn follow_feed(&mut self) {
        let Some(after) = self.cursor.as_ref().map(FeedCursor::read_after) else {
            self.load_all().await;
            return;
        };
        let changes = match self.store.routing_changes_since(after, FEED_PAGE).await {
            Ok(changes) => changes,
            Err(error) => {
                tracing::warn!(%error, "cannot read the routing feed");
                return;
            }
        };
        if changes.is_empty() {
            if self
                .store
                .latest_routing_change()
                .await
                .is_ok_and(|latest| latest < after)
            {
                tracing::info!("the routing feed was reset; loading every backend again");
                self.load_all().await;
            }
            return;
        }
        let positions: Vec<u64> = changes.iter().map(|change| change.cursor).collect();
        let Some(fresh) = self
            .cursor
            .as_mut()
            .map(|cursor| cursor.read(&positions, Instant::now()))
        else {
            return;
        };
        let fresh: HashSet<u64> = fresh.into_iter().collect();
        let mut backends = HashSet::new();
        let mut pools_changed = false;
        for change in changes.iter().filter(|c| fresh.contains(&c.cursor)) {
            match &change.rerouted {
                Rerouted::Backend(id) => {
                    backends.insert(id.clone());
                }
                Rerouted::Pool(_) => pools_changed = true,
                Rerouted::Group(_) => {}
            }
        }
        if pools_changed {
            match self.store.pool_settings().await {
                Ok(settings) => self.roster.set_pool_settings(settings),
                Err(error) => tracing::warn!(%error, "cannot read the pools' health checks"),
            }
        }
        self.reload_backends(backends).await;
        metrics::gauge!("tollgate_health_checked_backends").set(self.roster.owned() as f64);
    }

    /// Takes the named backends as now stored; those not found were removed.
    async fn reload_backends(&mut self, ids: HashSet<BackendId>) {
        if ids.is_empty() {
            return;
        }
        let ids: Vec<BackendId> = ids.into_iter().collect();
        let stored = match self.store.backends_by_id(&ids).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "cannot read the changed backends");
                // Everything is read again rather than missing the changes.
                self.cursor = None;
                return;
            }
        };
        let mut stored: HashMap<BackendId, Backend> =
            stored.into_iter().map(|b| (b.id.clone(), b)).collect();
        let at = now();
        for id in ids {
            let backend = stored.remove(&id);
            self.roster.apply(&id, backend, &self.replicas, at);
        }
    }
}
