//! This worker's copy of the addresses whose failed authentications the Envoy counted lately
//! ([`FailingAddresses`]), and the shared set behind it.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use tollgate_filter_core::limits::failing_addresses::FailingAddresses;

const SHARED_KEY: &str = "tollgate:rl:failing_addresses";
/// Compare-and-swap attempts before a failure is kept for this worker only.
const MAX_ATTEMPTS: usize = 8;

#[derive(Default)]
pub struct AddressFailures {
    known: RefCell<FailingAddresses>,
    /// The shared-data version of the set last read, to skip unchanged reads.
    seen_version: Cell<Option<u32>>,
}

impl AddressFailures {
    /// Whether no address may be refusing, so a request need not read its own.
    pub fn is_quiet(&self, now_us: i64, horizon_us: i64) -> bool {
        self.known
            .try_borrow()
            .is_ok_and(|known| known.is_quiet(now_us, horizon_us))
    }

    /// Whether `address`'s bucket may be refusing. Without the set at hand, it may.
    pub fn may_refuse(&self, address: IpAddr, now_us: i64, horizon_us: i64) -> bool {
        self.known
            .try_borrow()
            .map_or(true, |known| known.may_refuse(address, now_us, horizon_us))
    }

    /// Records a failure counted now, for this worker at once and, at most once a second per
    /// address, for the others by their next tick.
    pub fn counted(&self, address: IpAddr, now_us: i64, horizon_us: i64) {
        let Ok(mut known) = self.known.try_borrow_mut() else {
            return;
        };
        let shared_lately = known.knows_recent(address, now_us);
        known.record(address, now_us, horizon_us);
        if shared_lately {
            return;
        }
        for _ in 0..MAX_ATTEMPTS {
            let Ok((bytes, version)) = hostcalls::get_shared_data(SHARED_KEY) else {
                break;
            };
            let mut shared = bytes
                .as_deref()
                .and_then(FailingAddresses::from_bytes)
                .unwrap_or_default();
            shared.record(address, now_us, horizon_us);
            match hostcalls::set_shared_data(SHARED_KEY, Some(&shared.to_bytes()), version) {
                Ok(()) => {
                    *known = shared;
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
    pub fn refresh(&self) {
        let Ok((Some(bytes), version)) = hostcalls::get_shared_data(SHARED_KEY) else {
            return;
        };
        if version.is_some() && version == self.seen_version.get() {
            return;
        }
        let (Some(shared), Ok(mut known)) = (
            FailingAddresses::from_bytes(&bytes),
            self.known.try_borrow_mut(),
        ) else {
            return;
        };
        *known = shared;
        self.seen_version.set(version);
    }
}
