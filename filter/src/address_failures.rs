//! This worker's view of the addresses whose failed authentications the Envoy counted lately
//! ([`WorkerFailures`]), and the shared set behind it.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use tollgate_filter_core::limits::failing_addresses::{FailingAddresses, WorkerFailures};

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
    pub fn prepare() -> Self {
        if matches!(hostcalls::get_shared_data(SHARED_KEY), Ok((None, _))) {
            let empty = FailingAddresses::default().to_bytes();
            if let Err(status) = hostcalls::set_shared_data(SHARED_KEY, Some(&empty), None) {
                log::warn!("could not create the set of failing addresses: {status:?}");
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

    /// Records a failure counted now, for this worker at once and, at most once a second per
    /// address, for the others by their next tick.
    pub fn counted(&self, address: IpAddr, now_us: i64, horizon_us: i64) {
        let Ok(mut view) = self.view.try_borrow_mut() else {
            return;
        };
        if !view.counted(address, now_us, horizon_us) {
            return;
        }
        for _ in 0..MAX_ATTEMPTS {
            let (bytes, version) = match hostcalls::get_shared_data(SHARED_KEY) {
                Ok(read) => read,
                Err(status) => {
                    log::warn!("could not read the set of failing addresses: {status:?}");
                    return;
                }
            };
            let mut shared = bytes
                .as_deref()
                .and_then(FailingAddresses::from_bytes)
                .unwrap_or_default();
            shared.record(address, now_us, horizon_us);
            match hostcalls::set_shared_data(SHARED_KEY, Some(&shared.to_bytes()), version) {
                Ok(()) => {
                    view.saw_shared(shared, now_us, horizon_us);
                    return;
                }
                Err(Status::CasMismatch) => {}
                Err(status) => {
                    log::warn!("could not share a failed authentication: {status:?}");
                    return;
                }
            }
        }
        log::warn!("could not share a failed authentication: the shared set kept changing");
    }

    /// Takes in the failures other workers shared, when the set changed since the last look.
    pub fn refresh(&self, now_us: i64, horizon_us: i64) {
        let Ok((Some(bytes), version)) = hostcalls::get_shared_data(SHARED_KEY) else {
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
