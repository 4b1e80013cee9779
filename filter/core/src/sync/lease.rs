//! Who follows the change feed for this Envoy: a lease in shared data that names the syncer.
//!
//! The `tollgate_sync` service, where Envoy's bootstrap runs it, claims the lease on every tick
//! and always wins. Without it, the workers elect one of themselves: a worker takes the lease
//! when it is vacant or lapsed, the holder renews it on every tick, and each of these writes is
//! a compare-and-swap on the version the worker read, so of two workers that saw the same lapsed
//! lease only one takes it.

use prost::Message;

use crate::host::{Host, WriteError};

/// The shared-data key of the lease.
pub const SYNC_LEASE_KEY: &str = "tollgate:sync-lease";
/// How long a worker's lease holds unless renewed; the holder renews it every 100 ms tick, so
/// only a worker that stopped ticking loses it.
pub const WORKER_LEASE_MS: i64 = 1000;
/// How long the service's claim keeps the workers from syncing; it renews it on every tick.
pub const SERVICE_LEASE_MS: i64 = 3000;
/// The holder the service writes; no worker candidate is named so.
const SERVICE_HOLDER: &str = "tollgate_sync";
/// The version a worker writes with when it read no lease at all. Envoy refuses a
/// compare-and-swap against any other version of a key that exists, and a key read absent a
/// moment ago cannot have reached this one since: the write happens only if the key is still
/// absent, so two workers that both found it absent cannot both take it.
const CREATE_ONLY: u32 = u32::MAX;

/// The lease as shared data holds it.
#[derive(Clone, PartialEq, Message)]
struct Lease {
    #[prost(string, tag = "1")]
    holder: String,
    #[prost(int64, tag = "2")]
    expires_at_ms: i64,
}

impl Lease {
    /// Expired, or expiring later than any holder could have set it: the wall clock went back,
    /// and waiting for that expiry would leave the Envoy without a syncer meanwhile.
    fn lapsed(&self, now_ms: i64) -> bool {
        self.expires_at_ms <= now_ms || self.expires_at_ms > now_ms.saturating_add(SERVICE_LEASE_MS)
    }
}

/// The lease as read, with the version a compare-and-swap needs; an unreadable lease counts
/// as lapsed.
fn read(host: &impl Host) -> (Option<Lease>, Option<u32>) {
    match host.shared_data_get(SYNC_LEASE_KEY) {
        Some((bytes, version)) => (Lease::decode(bytes.as_slice()).ok(), version),
        None => (None, Some(CREATE_ONLY)),
    }
}

/// The service's claim: it overrides any worker's lease, and that worker steps down on its
/// next tick.
pub fn claim_for_service(host: &impl Host, now_ms: i64) {
    let claim = Lease {
        holder: SERVICE_HOLDER.to_owned(),
        expires_at_ms: now_ms.saturating_add(SERVICE_LEASE_MS),
    };
    if let Err(error) = host.shared_data_set(SYNC_LEASE_KEY, &claim.encode_to_vec(), None) {
        log::warn!("could not claim the sync lease for the service: {error:?}");
    }
}

/// One worker's part in the election.
pub struct SyncElection {
    /// This worker's name in the lease, unique to its VM.
    candidate: String,
    holding: bool,
}

impl SyncElection {
    pub fn new(candidate: String) -> Self {
        Self {
            candidate,
            holding: false,
        }
    }

    /// Renews the lease this worker holds, or takes it when it is vacant or lapsed; returns
    /// whether this worker is the syncer until its next tick.
    pub fn tick(&mut self, host: &impl Host, now_ms: i64) -> bool {
        self.holding = self.renew_or_take(host, now_ms);
        self.holding
    }

    /// Whether the lease names this worker now, as it must before the worker publishes what
    /// a watch answered: a service or worker may have taken it since this worker's tick.
    pub fn still_holds(&self, host: &impl Host, now_ms: i64) -> bool {
        self.holding
            && read(host)
                .0
                .is_some_and(|lease| lease.holder == self.candidate && !lease.lapsed(now_ms))
    }

    /// Lets the lease lapse at once, so that another worker takes over on its next tick
    /// rather than a lease's length later.
    pub fn release(&mut self, host: &impl Host) {
        if !std::mem::take(&mut self.holding) {
            return;
        }
        let (Some(lease), Some(version)) = read(host) else {
            return;
        };
        if lease.holder == self.candidate {
            let vacant = Lease {
                holder: String::new(),
                expires_at_ms: 0,
            };
            // A mismatch means a newer holder wrote it: no longer this worker's to give up.
            let _ = host.shared_data_set(SYNC_LEASE_KEY, &vacant.encode_to_vec(), Some(version));
        }
    }

    fn renew_or_take(&self, host: &impl Host, now_ms: i64) -> bool {
        let (lease, version) = read(host);
        let open = lease
            .as_ref()
            .is_none_or(|lease| lease.holder == self.candidate || lease.lapsed(now_ms));
        // Without a version the write could not be a compare-and-swap.
        let (true, Some(version)) = (open, version) else {
            return false;
        };
        let claim = Lease {
            holder: self.candidate.clone(),
            expires_at_ms: now_ms.saturating_add(WORKER_LEASE_MS),
        };
        match host.shared_data_set(SYNC_LEASE_KEY, &claim.encode_to_vec(), Some(version)) {
            Ok(()) => true,
            Err(WriteError::CasMismatch) => false,
            Err(WriteError::Failed(error)) => {
                log::warn!("could not write the sync lease: {error}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    use super::*;
    use crate::host::memory::MemoryHost;

    const TICK_MS: i64 = 100;
    const START_MS: i64 = 1_767_225_600_000;

    struct Worker {
        host: Rc<MemoryHost>,
        election: Rc<RefCell<SyncElection>>,
    }

    impl Worker {
        fn tick(&self) -> bool {
            self.election
                .borrow_mut()
                .tick(&*self.host, now_ms(&self.host))
        }

        fn holds(&self) -> bool {
            self.election
                .borrow()
                .still_holds(&*self.host, now_ms(&self.host))
        }
    }

    fn now_ms(host: &MemoryHost) -> i64 {
        host.now_us() / 1000
    }

    /// `count` workers of one Envoy at [`START_MS`].
    fn workers(count: usize) -> Vec<Worker> {
        let first = MemoryHost::at(START_MS * 1000);
        let hosts: Vec<MemoryHost> = (1..count).map(|_| first.another_worker()).collect();
        std::iter::once(first)
            .chain(hosts)
            .enumerate()
            .map(|(index, host)| Worker {
                host: Rc::new(host),
                election: Rc::new(RefCell::new(SyncElection::new(format!("worker-{index}")))),
            })
            .collect()
    }

    fn advance(workers: &[Worker], ms: i64) {
        let host = &workers[0].host;
        host.set_now_us(host.now_us() + ms * 1000);
    }

    fn holders(workers: &[Worker]) -> Vec<usize> {
        (0..workers.len()).filter(|&i| workers[i].holds()).collect()
    }

    #[test]
    fn the_first_worker_to_tick_holds_the_lease_and_renews_it() {
        let workers = workers(3);
        for _ in 0..20 {
            let ticked: Vec<bool> = workers.iter().map(Worker::tick).collect();
            assert_eq!(ticked, vec![true, false, false]);
            advance(&workers, TICK_MS);
        }
        assert_eq!(holders(&workers), vec![0]);
    }

    #[test]
    fn a_lapsed_lease_is_taken_over_by_another_worker() {
        let workers = workers(2);
        assert!(workers[0].tick());
        assert!(!workers[1].tick());
        // Worker 0 stops ticking (its VM is stuck or gone).
        advance(&workers, WORKER_LEASE_MS - TICK_MS);
        assert!(!workers[1].tick(), "the lease has not lapsed yet");
        advance(&workers, TICK_MS);
        assert!(workers[1].tick(), "a lapsed lease is taken over");
        assert_eq!(holders(&workers), vec![1]);
        assert!(
            !workers[0].tick(),
            "the old holder finds the lease taken and steps down"
        );
        assert!(workers[1].tick());
    }

    #[test]
    fn a_lease_left_by_a_clock_that_went_back_is_taken_over() {
        let workers = workers(2);
        assert!(workers[0].tick());
        // Worker 0 stops ticking and the wall clock steps back by a minute.
        advance(&workers, -60_000);
        assert!(
            workers[1].tick(),
            "an expiry further away than any holder sets counts as lapsed"
        );
        assert_eq!(holders(&workers), vec![1]);
    }

    #[test]
    fn a_released_lease_is_taken_at_the_next_tick() {
        let workers = workers(2);
        assert!(workers[0].tick());
        workers[0].election.borrow_mut().release(&*workers[0].host);
        assert!(workers[1].tick());
        assert!(!workers[0].tick());
    }

    /// Makes `second` run a whole tick just before `first` writes the lease.
    fn race(first: &Worker, second: &Worker) {
        let rival = Worker {
            host: Rc::clone(&second.host),
            election: Rc::clone(&second.election),
        };
        let raced = Cell::new(false);
        first.host.before_each_write(move |_| {
            if !raced.replace(true) {
                assert!(rival.tick(), "the rival wins the race");
            }
        });
    }

    #[test]
    fn workers_racing_for_a_vacant_lease_elect_one() {
        let workers = workers(2);
        race(&workers[0], &workers[1]);
        assert!(!workers[0].tick(), "the lease was created under its feet");
        assert_eq!(holders(&workers), vec![1]);
        assert!(workers[1].tick());
        assert!(!workers[0].tick());
    }

    #[test]
    fn workers_racing_for_a_lapsed_lease_elect_one() {
        let workers = workers(3);
        assert!(workers[2].tick());
        advance(&workers, WORKER_LEASE_MS);
        race(&workers[0], &workers[1]);
        assert!(!workers[0].tick(), "the lease changed since it was read");
        assert_eq!(holders(&workers), vec![1]);
        assert!(!workers[2].tick(), "the lapsed holder stays out");
        assert!(workers[1].tick());
    }

    #[test]
    fn the_service_overrides_workers_and_they_return_when_it_is_gone() {
        let workers = workers(2);
        assert!(workers[0].tick());
        claim_for_service(&*workers[0].host, START_MS);
        assert!(
            !workers[0].holds(),
            "a claimed lease is no longer the worker's"
        );
        for _ in 0..(SERVICE_LEASE_MS / TICK_MS) {
            assert!(!workers[0].tick() && !workers[1].tick());
            advance(&workers, TICK_MS);
        }
        assert!(workers[0].tick() || workers[1].tick());
        assert_eq!(holders(&workers).len(), 1);
    }
}
