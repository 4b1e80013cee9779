//! This worker's view of the addresses whose failed authentications the Envoy counted lately
//! ([`WorkerFailures`]), and the set in shared data through which the workers share them.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use super::failing_addresses::{FailingAddresses, FailureBucket, WorkerFailures};
use crate::host::{Host, WriteError};

const SHARED_KEY: &str = "tollgate:rl:failing_addresses";
/// Compare-and-swap attempts before a failure is kept for this worker only (it is shared with
/// the next failure of the address).
const MAX_ATTEMPTS: usize = 8;

#[derive(Default)]
pub struct AddressFailures {
    view: RefCell<WorkerFailures>,
    /// The shared-data version of the set last read or written, to skip unchanged reads.
    seen_version: Cell<Option<u32>>,
}

impl AddressFailures {
    /// Creates the shared set when this is the Envoy's first VM, so that every later write is
    /// a compare-and-swap (a write to a missing key cannot be one).
    pub fn prepare(host: &impl Host) -> Self {
        if host.shared_data_get(SHARED_KEY).is_none() {
            let empty = FailingAddresses::default().to_bytes();
            if let Err(error) = host.shared_data_set(SHARED_KEY, &empty, None) {
                log::warn!("could not create the set of failing addresses: {error:?}");
            }
        }
        Self::default()
    }

    /// Whether no address may be refusing, so a request need not read its own.
    pub fn is_quiet(&self, now_us: i64, horizon_us: i64) -> bool {
        self.view
            .try_borrow()
            .is_ok_and(|view| view.known().is_quiet(now_us, horizon_us))
    }

    /// Whether `address`'s bucket may be refusing. Without the set at hand, it may.
    pub fn may_refuse(&self, address: IpAddr, now_us: i64, horizon_us: i64) -> bool {
        self.view.try_borrow().map_or(true, |view| {
            view.known().may_refuse(address, now_us, horizon_us)
        })
    }

    /// Whether `address` failed in its own bucket lately, as far as this worker knows.
    pub fn failed_in_own_bucket(&self, address: IpAddr, now_us: i64, horizon_us: i64) -> bool {
        self.view.try_borrow().is_ok_and(|view| {
            view.known()
                .failed_in_own_bucket(address, now_us, horizon_us)
        })
    }

    /// Records a failure counted now in `bucket`, for this worker at once and, at most once a
    /// second per bucket, for the others by their next tick.
    pub fn counted(&self, host: &impl Host, bucket: FailureBucket, now_us: i64, horizon_us: i64) {
        let Ok(mut view) = self.view.try_borrow_mut() else {
            return;
        };
        if !view.counted(bucket, now_us, horizon_us) {
            return;
        }
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, version) = host.shared_data_get(SHARED_KEY).unzip();
            let mut shared = bytes
                .as_deref()
                .and_then(FailingAddresses::from_bytes)
                .unwrap_or_default();
            shared.record(bucket, now_us, horizon_us);
            match host.shared_data_set(SHARED_KEY, &shared.to_bytes(), version.flatten()) {
                Ok(()) => {
                    view.saw_shared(shared, now_us, horizon_us);
                    return;
                }
                Err(WriteError::CasMismatch) => {}
                Err(WriteError::Failed(error)) => {
                    log::warn!("could not share a failed authentication: {error}");
                    return;
                }
            }
        }
        log::warn!("could not share a failed authentication: the shared set kept changing");
    }

    /// Takes in the failures other workers shared, when the set changed since the last look.
    pub fn refresh(&self, host: &impl Host, now_us: i64, horizon_us: i64) {
        let Some((bytes, version)) = host.shared_data_get(SHARED_KEY) else {
            return;
        };
        if version.is_some() && version == self.seen_version.get() {
            return;
        }
        let (Some(shared), Ok(mut view)) = (
            FailingAddresses::from_bytes(&bytes),
            self.view.try_borrow_mut(),
        ) else {
            return;
        };
        view.saw_shared(shared, now_us, horizon_us);
        self.seen_version.set(version);
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::host::memory::MemoryHost;

    const NOW_US: i64 = 1_767_225_600_000_000;
    const HORIZON_US: i64 = 60_000_000;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn a_failure_counted_by_one_worker_reaches_the_others_on_their_refresh() {
        let host = MemoryHost::at(NOW_US);
        let other_host = host.another_worker();
        let here = AddressFailures::prepare(&host);
        let there = AddressFailures::prepare(&other_host);
        assert!(there.is_quiet(NOW_US, HORIZON_US));

        here.counted(
            &host,
            FailureBucket::Own(ip("192.0.2.1")),
            NOW_US,
            HORIZON_US,
        );

        assert!(
            here.may_refuse(ip("192.0.2.1"), NOW_US, HORIZON_US),
            "at once here"
        );
        assert!(
            there.is_quiet(NOW_US, HORIZON_US),
            "there by the next refresh"
        );
        there.refresh(&other_host, NOW_US, HORIZON_US);
        assert!(there.may_refuse(ip("192.0.2.1"), NOW_US, HORIZON_US));
        assert!(!there.may_refuse(ip("192.0.2.2"), NOW_US, HORIZON_US));
        let later = NOW_US + 2 * HORIZON_US;
        assert!(there.is_quiet(later, HORIZON_US), "beyond the horizon");
    }

    #[test]
    fn failures_shared_at_the_same_time_by_two_workers_are_both_kept() {
        let host = MemoryHost::at(NOW_US);
        let other_host = Rc::new(host.another_worker());
        let here = AddressFailures::prepare(&host);
        let there = Rc::new(AddressFailures::prepare(&*other_host));
        {
            let (other_host, there) = (Rc::clone(&other_host), Rc::clone(&there));
            let mut first = true;
            host.before_each_write(move |_key| {
                if std::mem::take(&mut first) {
                    there.counted(
                        &*other_host,
                        FailureBucket::Own(ip("192.0.2.2")),
                        NOW_US,
                        HORIZON_US,
                    );
                }
            });
        }

        let writes = host.writes();
        here.counted(
            &host,
            FailureBucket::Own(ip("192.0.2.1")),
            NOW_US,
            HORIZON_US,
        );

        assert_eq!(
            host.writes() - writes,
            2,
            "lost once to the other worker, then merged"
        );
        let third = AddressFailures::default();
        third.refresh(&host, NOW_US, HORIZON_US);
        for address in ["192.0.2.1", "192.0.2.2"] {
            assert!(
                third.may_refuse(ip(address), NOW_US, HORIZON_US),
                "{address}"
            );
        }
    }
}
