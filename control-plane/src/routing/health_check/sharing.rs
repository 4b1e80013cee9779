//! How replicas share the checks: each renews a lease in the store, and each backend is
//! checked by the live replica that ranks first for it (rendezvous hashing), so a replica that
//! arrives or dies moves only its own share of the backends.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::domain::ids::{BackendId, CheckerId};
use crate::store::CheckerLease;

/// The fastest a replica renews its lease, whatever the intervals: one write a second.
const FASTEST_RENEWAL: Duration = Duration::from_secs(1);
/// The slowest, so that a dead replica is noticed soon even with hour-long intervals.
const SLOWEST_RENEWAL: Duration = Duration::from_secs(10);

/// How often a replica renews its lease and how long the lease lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub renew_every: Duration,
    pub lease: Duration,
}

impl LeaseTiming {
    /// Renewed four times per shortest check interval (1-10 s) and lapsing after two missed
    /// renewals, so a dead replica's backends move within the interval: the lease lapses,
    /// the others notice at their next renewal, and check what they took at once.
    pub fn for_shortest_interval(interval: Duration) -> Self {
        let renew_every = (interval / 4).clamp(FASTEST_RENEWAL, SLOWEST_RENEWAL);
        Self {
            renew_every,
            lease: renew_every * 2,
        }
    }
}

/// The live replicas as this one last saw them, itself always among them.
#[derive(Debug, Clone)]
pub struct Replicas {
    me: CheckerId,
    /// Sorted, this replica included.
    live: Vec<String>,
}

impl Replicas {
    /// This replica before it has seen any other.
    pub fn alone(me: CheckerId) -> Self {
        let live = vec![me.to_string()];
        Self { me, live }
    }

    pub fn me(&self) -> &CheckerId {
        &self.me
    }

    /// How many replicas share the checks.
    pub fn count(&self) -> usize {
        self.live.len()
    }

    /// Takes the leases unexpired at `now_ms` as the live replicas; `true` when they differ
    /// from before, so that backends move.
    pub fn update(&mut self, leases: &[CheckerLease], now_ms: i64) -> bool {
        let mut live: Vec<String> = leases
            .iter()
            .filter(|lease| lease.expires_at_ms >= now_ms)
            .map(|lease| lease.checker.clone())
            .chain(std::iter::once(self.me.to_string()))
            .collect();
        live.sort();
        live.dedup();
        let changed = live != self.live;
        self.live = live;
        changed
    }

    /// Whether this replica checks `backend`.
    pub fn owns(&self, backend: &BackendId) -> bool {
        self.live.len() == 1
            || self
                .live
                .iter()
                .max_by_key(|checker| (rank(checker, backend), *checker))
                .is_some_and(|first| first == self.me.as_str())
    }
}

/// A replica's rank for a backend, the same in every replica.
fn rank(checker: &str, backend: &BackendId) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(checker.as_bytes())
        .chain_update([0])
        .chain_update(backend.as_str().as_bytes())
        .finalize();
    let mut rank = [0; 8];
    rank.copy_from_slice(&digest[..8]);
    rank
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(checker: &str, expires_at_ms: i64) -> CheckerLease {
        CheckerLease {
            checker: checker.to_string(),
            expires_at_ms,
        }
    }

    fn replicas(me: &str, others: &[&str]) -> Replicas {
        let mut replicas = Replicas::alone(CheckerId::from_string(me.to_string()));
        let leases: Vec<_> = others.iter().map(|other| lease(other, 100)).collect();
        replicas.update(&leases, 0);
        replicas
    }

    #[test]
    fn each_backend_has_exactly_one_owner_and_a_dead_owner_s_share_moves() {
        let backends: Vec<BackendId> = (0..1000).map(|_| BackendId::generate()).collect();
        let names = ["hc_a", "hc_b", "hc_c"];
        let all: Vec<Replicas> = names.iter().map(|me| replicas(me, &names)).collect();
        let owners = |backend: &BackendId, replicas: &[Replicas]| {
            replicas.iter().filter(|r| r.owns(backend)).count()
        };
        assert!(backends.iter().all(|b| owners(b, &all) == 1));
        let shares: Vec<usize> = all
            .iter()
            .map(|r| backends.iter().filter(|b| r.owns(b)).count())
            .collect();
        assert!(
            shares.iter().all(|share| (250..=420).contains(share)),
            "{shares:?}"
        );

        // hc_c dies: the others see only each other, and keep what they had.
        let survivors = [replicas("hc_a", &["hc_b"]), replicas("hc_b", &["hc_a"])];
        assert!(backends.iter().all(|b| owners(b, &survivors) == 1));
        for (before, after) in all.iter().zip(&survivors) {
            assert!(backends
                .iter()
                .filter(|b| before.owns(b))
                .all(|b| after.owns(b)));
        }
    }

    #[test]
    fn expired_leases_do_not_count_and_the_replica_always_counts_itself() {
        let mut replicas = Replicas::alone(CheckerId::from_string("hc_me".into()));
        assert!(replicas.owns(&BackendId::generate()));
        assert!(replicas.update(&[lease("hc_other", 2_000)], 1_000));
        assert_eq!(replicas.count(), 2);
        assert!(!replicas.update(&[lease("hc_other", 2_000)], 1_500));
        assert!(replicas.update(&[lease("hc_other", 2_000)], 2_001));
        assert_eq!(replicas.count(), 1);
    }

    #[test]
    fn a_lease_lapses_well_within_the_interval() {
        let default = LeaseTiming::for_shortest_interval(Duration::from_secs(30));
        assert_eq!(default.renew_every, Duration::from_millis(7500));
        assert_eq!(default.lease, Duration::from_secs(15));
        let fast = LeaseTiming::for_shortest_interval(Duration::from_secs(1));
        assert_eq!(fast.renew_every, Duration::from_secs(1));
        let slow = LeaseTiming::for_shortest_interval(Duration::from_secs(3600));
        assert_eq!(slow.renew_every, Duration::from_secs(10));
    }
}
