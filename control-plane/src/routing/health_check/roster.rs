//! The backends the checker knows, in memory: each one's settings, its latest health and the
//! health the store holds, whether this replica checks it, and when it is due.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::sharing::Replicas;
use crate::domain::ids::BackendId;
use crate::domain::Timestamp;
use crate::routing::backend::{Backend, BackendHealth, CheckedHealth, HealthStatus};
use crate::routing::pool::HealthCheckSettings;

/// One check to make.
#[derive(Debug, Clone)]
pub struct Due {
    pub backend: Backend,
    pub settings: HealthCheckSettings,
    /// Which settings of the backend the check was made with.
    pub generation: u64,
}

/// A health status that changed and is not yet stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub checked: CheckedHealth,
    pub from: HealthStatus,
}

#[derive(Debug)]
struct Tracked {
    backend: Backend,
    live: BackendHealth,
    stored: BackendHealth,
    owned: bool,
    last_started: Option<Instant>,
    in_flight: bool,
    generation: u64,
}

impl Tracked {
    fn checked(&self) -> CheckedHealth {
        CheckedHealth {
            id: self.backend.id.clone(),
            settings_updated_at: self.backend.updated_at,
            health: self.live.clone(),
        }
    }
}

/// Every backend known to this replica.
#[derive(Debug)]
pub struct Roster {
    backends: HashMap<BackendId, Tracked>,
    pool_settings: HashMap<String, HealthCheckSettings>,
    defaults: HealthCheckSettings,
    next_generation: u64,
}

impl Roster {
    pub fn new(defaults: HealthCheckSettings) -> Self {
        Self {
            backends: HashMap::new(),
            pool_settings: HashMap::new(),
            defaults,
            next_generation: 0,
        }
    }

    /// Replaces the settings of pools without their own (a configuration reload).
    pub fn set_defaults(&mut self, defaults: HealthCheckSettings) {
        self.defaults = defaults;
    }

    /// Replaces the pools' own health-check settings.
    pub fn set_pool_settings(
        &mut self,
        settings: impl IntoIterator<Item = (String, HealthCheckSettings)>,
    ) {
        self.pool_settings = settings.into_iter().collect();
    }

    /// The shortest check interval of any pool, which sets how fast replicas notice each other.
    pub fn shortest_interval(&self) -> Duration {
        let shortest = self
            .pool_settings
            .values()
            .chain(std::iter::once(&self.defaults))
            .map(|settings| settings.interval_secs)
            .min()
            .unwrap_or(self.defaults.interval_secs);
        Duration::from_secs(shortest.into())
    }

    /// How many backends this replica checks.
    pub fn owned(&self) -> usize {
        self.backends.values().filter(|t| t.owned).count()
    }

    /// Takes every stored backend at once (at start, after the feed was reset, or when the
    /// replicas changed), keeping what is known of the backends this replica checked before.
    pub fn load_all(&mut self, backends: Vec<Backend>, replicas: &Replicas, at: Timestamp) {
        let mut previous = std::mem::take(&mut self.backends);
        for backend in backends {
            let id = backend.id.clone();
            let tracked = self.take(previous.remove(&id), backend, replicas, at);
            self.backends.insert(id, tracked);
        }
    }

    /// Takes one backend as now stored, or its removal.
    pub fn apply(
        &mut self,
        id: &BackendId,
        stored: Option<Backend>,
        replicas: &Replicas,
        at: Timestamp,
    ) {
        let known = self.backends.remove(id);
        if let Some(backend) = stored {
            let tracked = self.take(known, backend, replicas, at);
            self.backends.insert(id.clone(), tracked);
        }
    }

    /// What is tracked of a stored `backend`: what was known, if this replica checked it
    /// before with the same probe settings; otherwise the stored health, due at once if the
    /// backend was known (just taken over, or probed differently now), else an interval after
    /// its stored last check.
    fn take(
        &mut self,
        known: Option<Tracked>,
        backend: Backend,
        replicas: &Replicas,
        at: Timestamp,
    ) -> Tracked {
        let owned = replicas.owns(&backend.id);
        match known {
            Some(mut known) if known.owned && owned && same_probe(&known.backend, &backend) => {
                known.backend = backend;
                known
            }
            known => {
                let interval = self.settings_of(&backend).interval_secs;
                let last_started = match known {
                    Some(_) => None,
                    None => started_before(&backend.health, interval, at),
                };
                self.next_generation += 1;
                Tracked {
                    live: backend.health.clone(),
                    stored: backend.health.clone(),
                    backend,
                    owned,
                    last_started,
                    in_flight: false,
                    generation: self.next_generation,
                }
            }
        }
    }

    /// At most `limit` of the checks due at `now`, each marked as started.
    pub fn start_due(&mut self, now: Instant, limit: usize) -> Vec<Due> {
        let mut due = Vec::new();
        for tracked in self.backends.values_mut() {
            if due.len() == limit {
                break;
            }
            if !tracked.owned || !tracked.backend.enabled || tracked.in_flight {
                continue;
            }
            let settings = settings_of(&self.pool_settings, self.defaults, &tracked.backend);
            let interval = Duration::from_secs(settings.interval_secs.into());
            if tracked
                .last_started
                .is_some_and(|last| now.duration_since(last) < interval)
            {
                continue;
            }
            tracked.in_flight = true;
            tracked.last_started = Some(now);
            due.push(Due {
                backend: tracked.backend.clone(),
                settings,
                generation: tracked.generation,
            });
        }
        due
    }

    /// Takes a check's result; answers the status change to store, if any. A result for
    /// settings the backend no longer has is dropped.
    pub fn record(
        &mut self,
        id: &BackendId,
        generation: u64,
        result: Result<u64, String>,
        at: Timestamp,
    ) -> Option<StatusChange> {
        let settings = self
            .backends
            .get(id)
            .map(|t| self.settings_of(&t.backend))?;
        let tracked = self
            .backends
            .get_mut(id)
            .filter(|t| t.generation == generation)?;
        tracked.in_flight = false;
        tracked.live = tracked.live.after_check(
            result,
            at,
            settings.unhealthy_threshold,
            settings.healthy_threshold,
        );
        (tracked.live.status != tracked.stored.status).then(|| StatusChange {
            checked: tracked.checked(),
            from: tracked.stored.status,
        })
    }

    /// The store now holds `checked`.
    pub fn stored(&mut self, checked: &CheckedHealth) {
        if let Some(tracked) = self.backends.get_mut(&checked.id) {
            if tracked.backend.updated_at == checked.settings_updated_at {
                tracked.stored = checked.health.clone();
            }
        }
    }

    /// The checks of this replica's backends that the store does not hold yet, status changes
    /// aside (they are stored on their own, with their audit entry).
    pub fn unstored(&self) -> Vec<CheckedHealth> {
        self.backends
            .values()
            .filter(|t| t.owned && t.live != t.stored && t.live.status == t.stored.status)
            .map(Tracked::checked)
            .collect()
    }

    fn settings_of(&self, backend: &Backend) -> HealthCheckSettings {
        settings_of(&self.pool_settings, self.defaults, backend)
    }
}

fn settings_of(
    pools: &HashMap<String, HealthCheckSettings>,
    defaults: HealthCheckSettings,
    backend: &Backend,
) -> HealthCheckSettings {
    pools
        .get(backend.pool.as_str())
        .copied()
        .unwrap_or(defaults)
}

/// Whether a check of `a` tells as much about `b`.
fn same_probe(a: &Backend, b: &Backend) -> bool {
    a.url == b.url
        && a.health_check_path == b.health_check_path
        && a.tls_sni == b.tls_sni
        && a.tls_ca == b.tls_ca
        && a.tls_insecure == b.tls_insecure
}

/// When a check recorded in the store as of `at` started, as this process's clock reads
/// it; `None` (due at once) when there was none within the interval.
fn started_before(health: &BackendHealth, interval_secs: u32, at: Timestamp) -> Option<Instant> {
    let age = (at - health.last_checked_at?).to_std().ok()?;
    if age >= Duration::from_secs(interval_secs.into()) {
        return None;
    }
    Instant::now().checked_sub(age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::CheckerId;
    use crate::routing::backend::{BackendUrl, Weight};
    use crate::routing::pool::PoolName;

    fn backend(url: &str) -> Backend {
        let at = crate::domain::now();
        Backend {
            id: BackendId::generate(),
            url: BackendUrl::parse(url).expect("url"),
            weight: Weight::DEFAULT,
            health_check_path: "/healthz".into(),
            pool: PoolName::default_pool(),
            enabled: true,
            tls_sni: None,
            tls_ca: None,
            tls_insecure: false,
            health: BackendHealth::default(),
            created_at: at,
            updated_at: at,
        }
    }

    fn alone() -> Replicas {
        Replicas::alone(CheckerId::generate())
    }

    fn settings() -> HealthCheckSettings {
        HealthCheckSettings {
            interval_secs: 10,
            timeout_secs: 1,
            unhealthy_threshold: 1,
            healthy_threshold: 1,
        }
    }

    #[test]
    fn only_a_status_change_is_stored_at_once_and_the_rest_waits_for_the_summary() {
        let (mut roster, replicas, now) = (Roster::new(settings()), alone(), Instant::now());
        let one = backend("http://127.0.0.1:1");
        roster.load_all(vec![one.clone()], &replicas, crate::domain::now());
        let due = roster.start_due(now, usize::MAX);
        assert_eq!(due.len(), 1);
        assert!(roster.start_due(now, usize::MAX).is_empty(), "in flight");

        let change = roster
            .record(&one.id, due[0].generation, Ok(2), crate::domain::now())
            .expect("unknown to healthy");
        assert_eq!(
            (change.from, change.checked.health.status),
            (HealthStatus::Unknown, HealthStatus::Healthy)
        );
        assert!(
            roster.unstored().is_empty(),
            "a status change is not in the summary"
        );
        roster.stored(&change.checked);

        assert!(roster
            .start_due(now + Duration::from_secs(9), usize::MAX)
            .is_empty());
        let due = roster.start_due(now + Duration::from_secs(10), usize::MAX);
        assert!(roster
            .record(&one.id, due[0].generation, Ok(3), crate::domain::now())
            .is_none());
        let unstored = roster.unstored();
        assert_eq!(unstored.len(), 1);
        assert_eq!(unstored[0].health.consecutive_successes, 2);
        roster.stored(&unstored[0]);
        assert!(roster.unstored().is_empty());
    }

    #[test]
    fn a_new_url_drops_the_check_in_flight_and_starts_over_from_the_stored_health() {
        let (mut roster, replicas, now) = (Roster::new(settings()), alone(), Instant::now());
        let one = backend("http://127.0.0.1:1");
        roster.load_all(vec![one.clone()], &replicas, crate::domain::now());
        let before = roster.start_due(now, usize::MAX);

        let mut moved = one.clone();
        moved.url = BackendUrl::parse("http://127.0.0.1:2").expect("url");
        roster.apply(
            &one.id,
            Some(moved.clone()),
            &replicas,
            crate::domain::now(),
        );
        assert!(roster
            .record(&one.id, before[0].generation, Ok(1), crate::domain::now())
            .is_none());
        let after = roster.start_due(now, usize::MAX);
        assert_eq!(after.len(), 1, "due at once");
        assert_eq!(after[0].backend.url, moved.url);

        let mut reweighted = moved.clone();
        reweighted.weight = Weight::try_from(5).expect("weight");
        roster.apply(&one.id, Some(reweighted), &replicas, crate::domain::now());
        assert!(roster
            .record(&one.id, after[0].generation, Ok(1), crate::domain::now())
            .is_some());

        roster.apply(&one.id, None, &replicas, crate::domain::now());
        assert!(roster
            .start_due(now + Duration::from_secs(60), usize::MAX)
            .is_empty());
    }

    #[test]
    fn a_recent_stored_check_is_not_repeated_at_start_and_disabled_backends_are_not_checked() {
        let (mut roster, replicas, now) = (Roster::new(settings()), alone(), Instant::now());
        let mut recent = backend("http://127.0.0.1:1");
        recent.health.last_checked_at = Some(crate::domain::now() - chrono::Duration::seconds(2));
        let mut disabled = backend("http://127.0.0.1:2");
        disabled.enabled = false;
        let never = backend("http://127.0.0.1:3");
        roster.load_all(
            vec![recent, disabled, never.clone()],
            &replicas,
            crate::domain::now(),
        );
        let due = roster.start_due(now, usize::MAX);
        assert_eq!(
            due.iter().map(|d| d.backend.id.clone()).collect::<Vec<_>>(),
            vec![never.id]
        );
        assert_eq!(
            roster
                .start_due(now + Duration::from_secs(9), usize::MAX)
                .len(),
            1
        );
    }
}
