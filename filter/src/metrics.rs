//! The filter's counters and histograms, in Envoy's stats (`/stats/prometheus`).
//!
//! Counters add up in the VM and reach Envoy on the worker's tick, in one host call per
//! counter that moved, instead of one host call per request and counter.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

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
pub const LIMIT_LEVELS: [&str; 4] = ["ip", "user", "key", "route"];

/// Metric ids, defined once per VM. A metric the host refused to define is skipped.
pub struct Metrics {
    allowed_api_key: Counter,
    allowed_session: Counter,
    allowed_unverified: Counter,
    denied: Vec<(&'static str, Counter)>,
    local_hits: Counter,
    shared_hits: Counter,
    misses: Counter,
    lookup_failures: Counter,
    lookup_latency_ms: Option<u32>,
    dual_credentials: Counter,
    rate_limited: Vec<(&'static str, Counter)>,
    limit_sync_failures: Counter,
    limits_degraded: Option<u32>,
    usage_report_failures: Counter,
}

/// A counter's id in Envoy and what it gained since the last flush.
struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    fn define(name: &str) -> Self {
        Self {
            id: hostcalls::define_metric(MetricType::Counter, name).ok(),
            pending: Cell::new(0),
        }
    }

    fn add(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    fn flush(&self) {
        let (Some(id), pending) = (self.id, self.pending.take()) else {
            return;
        };
        if pending > 0 {
            if let Err(status) =
                hostcalls::increment_metric(id, i64::try_from(pending).unwrap_or(i64::MAX))
            {
                log::warn!("could not update a metric: {status:?}");
            }
        }
    }
}

impl Metrics {
    pub fn define() -> Self {
        Self {
            allowed_api_key: Counter::define("tollgate.requests.allowed.api_key"),
            allowed_session: Counter::define("tollgate.requests.allowed.session"),
            allowed_unverified: Counter::define("tollgate.requests.allowed.unverified"),
            denied: DENIAL_CODES
                .iter()
                .map(|code| {
                    let name = format!("tollgate.requests.denied.{code}");
                    (*code, Counter::define(&name))
                })
                .collect(),
            local_hits: Counter::define("tollgate.cache.local_hits"),
            shared_hits: Counter::define("tollgate.cache.shared_hits"),
            misses: Counter::define("tollgate.cache.misses"),
            lookup_failures: Counter::define("tollgate.lookups.failed"),
            lookup_latency_ms: hostcalls::define_metric(
                MetricType::Histogram,
                "tollgate.lookups.latency_ms",
            )
            .ok(),
            dual_credentials: Counter::define("tollgate.requests.dual_credentials"),
            rate_limited: LIMIT_LEVELS
                .iter()
                .map(|level| {
                    let name = format!("tollgate.rate_limited.{level}");
                    (*level, Counter::define(&name))
                })
                .collect(),
            limit_sync_failures: Counter::define("tollgate.limits.sync_failures"),
            limits_degraded: hostcalls::define_metric(
                MetricType::Gauge,
                "tollgate.limits.degraded",
            )
            .ok(),
            usage_report_failures: Counter::define("tollgate.usage.report_failures"),
        }
    }

    /// Hands what the counters gained since the last flush to Envoy.
    pub fn flush(&self) {
        let singles = [
            &self.allowed_api_key,
            &self.allowed_session,
            &self.allowed_unverified,
            &self.local_hits,
            &self.shared_hits,
            &self.misses,
            &self.lookup_failures,
            &self.dual_credentials,
            &self.limit_sync_failures,
            &self.usage_report_failures,
        ];
        let labelled = self.denied.iter().chain(&self.rate_limited);
        singles
            .into_iter()
            .chain(labelled.map(|(_, counter)| counter))
            .for_each(Counter::flush);
    }

    pub fn allowed(&self, method: tollgate_filter_core::decision::AuthMethod) {
        use tollgate_filter_core::decision::AuthMethod;
        match method {
            AuthMethod::ApiKey => &self.allowed_api_key,
            AuthMethod::Session => &self.allowed_session,
            AuthMethod::Unverified => &self.allowed_unverified,
        }
        .add();
    }

    pub fn denied(&self, code: &str) {
        if let Some((_, counter)) = self.denied.iter().find(|(known, _)| *known == code) {
            counter.add();
        }
    }

    pub fn local_hit(&self) {
        self.local_hits.add();
    }

    pub fn shared_hit(&self) {
        self.shared_hits.add();
    }

    pub fn miss(&self) {
        self.misses.add();
    }

    pub fn lookup_failed(&self) {
        self.lookup_failures.add();
    }

    pub fn lookup_took(&self, millis: u64) {
        if let Some(id) = self.lookup_latency_ms {
            let _ = hostcalls::record_metric(id, millis);
        }
    }

    pub fn dual_credentials(&self) {
        self.dual_credentials.add();
    }

    pub fn rate_limited(&self, level: &str) {
        if let Some((_, counter)) = self.rate_limited.iter().find(|(known, _)| *known == level) {
            counter.add();
        }
    }

    pub fn limit_sync_failed(&self) {
        self.limit_sync_failures.add();
    }

    /// 1 while `fast` limits run on local shares because the control plane cannot be synced.
    pub fn limits_degraded(&self, degraded: bool) {
        if let Some(id) = self.limits_degraded {
            let _ = hostcalls::record_metric(id, u64::from(degraded));
        }
    }

    pub fn usage_report_failed(&self) {
        self.usage_report_failures.add();
    }
}
