//! The filter's counters, histogram and gauge, added up in the VM; the proxy-wasm crate hands
//! them to Envoy's stats (`/stats/prometheus`) on the worker's tick, one host call per
//! counter that moved instead of one per request and counter.

use std::cell::{Cell, RefCell};

use crate::decision::AuthMethod;

/// Every refusal code the filter can answer with, each counted under `tollgate.denied.<code>`.
const DENIAL_CODES: [&str; 14] = [
    "missing_credentials",
    "invalid_api_key",
    "api_key_expired",
    "invalid_session",
    "session_expired",
    "session_revoked",
    "user_suspended",
    "ip_not_allowed",
    "scope_denied",
    "invalid_forwarded_for",
    "control_plane_unavailable",
    "rate_limited",
    "quota_exceeded",
    "rate_limiter_unavailable",
];

/// Limit levels, each counted under `tollgate.rate_limited.<level>` when it refuses.
const LIMIT_LEVELS: [&str; 4] = ["ip", "user", "key", "route"];

/// The counters without a label, in the order of their index constants.
const COUNTERS: [&str; 13] = [
    "tollgate.requests.allowed.api_key",
    "tollgate.requests.allowed.session",
    "tollgate.requests.allowed.unverified",
    "tollgate.cache.local_hits",
    "tollgate.cache.shared_hits",
    "tollgate.cache.misses",
    "tollgate.lookups.failed",
    "tollgate.requests.dual_credentials",
    "tollgate.limits.sync_failures",
    "tollgate.usage.report_failures",
    "tollgate.allowances.failures",
    "tollgate.sync.answers",
    "tollgate.sync.failures",
];
const ALLOWED_API_KEY: usize = 0;
const ALLOWED_SESSION: usize = 1;
const ALLOWED_UNVERIFIED: usize = 2;
const LOCAL_HITS: usize = 3;
const SHARED_HITS: usize = 4;
const MISSES: usize = 5;
const LOOKUP_FAILURES: usize = 6;
const DUAL_CREDENTIALS: usize = 7;
const LIMIT_SYNC_FAILURES: usize = 8;
const USAGE_REPORT_FAILURES: usize = 9;
const ALLOWANCE_FAILURES: usize = 10;
const SYNC_ANSWERS: usize = 11;
const SYNC_FAILURES: usize = 12;
const FIRST_DENIAL: usize = COUNTERS.len();
const FIRST_LEVEL: usize = FIRST_DENIAL + DENIAL_CODES.len();

/// The histogram of the control plane's answer times to lookups.
pub const LOOKUP_LATENCY_HISTOGRAM: &str = "tollgate.lookups.latency_ms";
/// The gauge that is 1 while `fast` limits run on local shares because the control plane
/// cannot be synced.
pub const LIMITS_DEGRADED_GAUGE: &str = "tollgate.limits.degraded";

/// What the filter counted since the last flush.
pub struct Metrics {
    counters: Vec<(String, Cell<u64>)>,
    lookup_latencies_ms: RefCell<Vec<u64>>,
    limits_degraded: Cell<Option<bool>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let denials = DENIAL_CODES
            .iter()
            .map(|code| format!("tollgate.requests.denied.{code}"));
        let levels = LIMIT_LEVELS
            .iter()
            .map(|level| format!("tollgate.rate_limited.{level}"));
        let counters = COUNTERS
            .iter()
            .map(|name| (*name).to_owned())
            .chain(denials)
            .chain(levels)
            .map(|name| (name, Cell::new(0)))
            .collect();
        Self {
            counters,
            lookup_latencies_ms: RefCell::new(Vec::new()),
            limits_degraded: Cell::new(None),
        }
    }
}

impl Metrics {
    /// Every counter's name, in the order [`Metrics::take_counts`] gives their counts.
    pub fn counter_names(&self) -> impl Iterator<Item = &str> {
        self.counters.iter().map(|(name, _)| name.as_str())
    }

    /// What each counter gained since the last call.
    pub fn take_counts(&self) -> impl Iterator<Item = u64> + '_ {
        self.counters.iter().map(|(_, count)| count.take())
    }

    /// The lookup latencies recorded since the last call.
    pub fn take_lookup_latencies_ms(&self) -> Vec<u64> {
        self.lookup_latencies_ms.take()
    }

    /// The limits-degraded gauge's value, if it was set since the last call.
    pub fn take_limits_degraded(&self) -> Option<bool> {
        self.limits_degraded.take()
    }

    fn add(&self, index: usize) {
        if let Some((_, count)) = self.counters.get(index) {
            count.set(count.get().saturating_add(1));
        }
    }

    pub fn allowed(&self, method: AuthMethod) {
        self.add(match method {
            AuthMethod::ApiKey => ALLOWED_API_KEY,
            AuthMethod::Session => ALLOWED_SESSION,
            AuthMethod::Unverified => ALLOWED_UNVERIFIED,
        });
    }

    pub fn denied(&self, code: &str) {
        if let Some(index) = DENIAL_CODES.iter().position(|known| *known == code) {
            self.add(FIRST_DENIAL + index);
        }
    }

    pub fn rate_limited(&self, level: &str) {
        if let Some(index) = LIMIT_LEVELS.iter().position(|known| *known == level) {
            self.add(FIRST_LEVEL + index);
        }
    }

    pub fn local_hit(&self) {
        self.add(LOCAL_HITS);
    }

    pub fn shared_hit(&self) {
        self.add(SHARED_HITS);
    }

    pub fn miss(&self) {
        self.add(MISSES);
    }

    pub fn lookup_failed(&self) {
        self.add(LOOKUP_FAILURES);
    }

    pub fn lookup_took(&self, millis: u64) {
        if let Ok(mut latencies) = self.lookup_latencies_ms.try_borrow_mut() {
            latencies.push(millis);
        }
    }

    pub fn dual_credentials(&self) {
        self.add(DUAL_CREDENTIALS);
    }

    pub fn limit_sync_failed(&self) {
        self.add(LIMIT_SYNC_FAILURES);
    }

    pub fn limits_degraded(&self, degraded: bool) {
        self.limits_degraded.set(Some(degraded));
    }

    pub fn usage_report_failed(&self) {
        self.add(USAGE_REPORT_FAILURES);
    }

    /// An `AcquireAllowances` call failed, for a waiting request or ahead of need.
    pub fn allowance_failed(&self) {
        self.add(ALLOWANCE_FAILURES);
    }

    /// A change-feed watch answered and its answer was published.
    pub fn sync_answered(&self) {
        self.add(SYNC_ANSWERS);
    }

    /// A change-feed watch could not start or failed.
    pub fn sync_failed(&self) {
        self.add(SYNC_FAILURES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(metrics: &Metrics) -> Vec<(String, u64)> {
        let names: Vec<String> = metrics.counter_names().map(str::to_owned).collect();
        names
            .into_iter()
            .zip(metrics.take_counts())
            .filter(|(_, count)| *count > 0)
            .collect()
    }

    #[test]
    fn counts_under_their_names_until_taken() {
        let metrics = Metrics::default();
        metrics.allowed(AuthMethod::Session);
        metrics.denied("quota_exceeded");
        metrics.denied("no_such_code");
        metrics.rate_limited("route");
        metrics.rate_limited("route");
        assert_eq!(
            counted(&metrics),
            vec![
                ("tollgate.requests.allowed.session".to_owned(), 1),
                ("tollgate.requests.denied.quota_exceeded".to_owned(), 1),
                ("tollgate.rate_limited.route".to_owned(), 2),
            ]
        );
        assert!(counted(&metrics).is_empty(), "taken");
    }
}
