//! When this Envoy last counted a failed authentication against an address limit: until the
//! longest address window has passed since, requests must look up their address's bucket;
//! after it (the usual case), none does.

use std::cell::Cell;

use proxy_wasm::hostcalls;

const SHARED_KEY: &str = "tollgate:rl:last_failure";
/// The shared time is rewritten at most this often; readers allow for it
/// ([`tollgate_filter_core::limits::plan::FAILURE_TIME_STALENESS_US`]).
const SHARE_EVERY_US: i64 = 1_000_000;

#[derive(Default)]
pub struct AddressFailures {
    last_us: Cell<Option<i64>>,
    shared_us: Cell<Option<i64>>,
}

impl AddressFailures {
    pub fn last_us(&self) -> Option<i64> {
        self.last_us.get()
    }

    /// Records a failure counted now, for this worker at once and for the others by their
    /// next tick.
    pub fn counted(&self, now_us: i64) {
        self.last_us.set(Some(now_us));
        if self
            .shared_us
            .get()
            .is_some_and(|shared| now_us - shared < SHARE_EVERY_US)
        {
            return;
        }
        self.shared_us.set(Some(now_us));
        if let Err(status) =
            hostcalls::set_shared_data(SHARED_KEY, Some(&now_us.to_le_bytes()), None)
        {
            log::warn!("could not share the time of a failed authentication: {status:?}");
        }
    }

    /// Takes in failures other workers counted.
    pub fn refresh(&self) {
        if let Ok((Some(bytes), _)) = hostcalls::get_shared_data(SHARED_KEY) {
            if let Ok(bytes) = <[u8; 8]>::try_from(bytes.as_slice()) {
                let shared = i64::from_le_bytes(bytes);
                if self.last_us.get().is_none_or(|known| shared > known) {
                    self.last_us.set(Some(shared));
                }
            }
        }
    }
}
