//! Envoy's clock, for code that runs outside a request's own context.

use proxy_wasm::hostcalls;
use tollgate_filter_core::clock::{unix_micros, unix_millis};

/// Unix milliseconds; 0 if the host cannot tell.
pub fn now_ms() -> i64 {
    hostcalls::get_current_time().map_or(0, unix_millis)
}

/// Unix microseconds; 0 if the host cannot tell.
pub fn now_us() -> i64 {
    hostcalls::get_current_time().map_or(0, unix_micros)
}
