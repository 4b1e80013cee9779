//! The filter's counters and histograms, in Envoy's stats (`/stats/prometheus`).

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
    allowed_api_key: Option<u32>,
    allowed_session: Option<u32>,
    allowed_unverified: Option<u32>,
    denied: Vec<(&'static str, Option<u32>)>,
    local_hits: Option<u32>,
    shared_hits: Option<u32>,
    misses: Option<u32>,
    lookup_failures: Option<u32>,
    lookup_latency_ms: Option<u32>,
    dual_credentials: Option<u32>,
    rate_limited: Vec<(&'static str, Option<u32>)>,
    limit_sync_failures: Option<u32>,
    limits_degraded: Option<u32>,
    usage_report_failures: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

fn add(metric: Option<u32>) {
    if let Some(id) = metric {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    pub fn define() -> Self {
        Self {
            allowed_api_key: counter("tollgate.requests.allowed.api_key"),
            allowed_session: counter("tollgate.requests.allowed.session"),
            allowed_unverified: counter("tollgate.requests.allowed.unverified"),
            denied: DENIAL_CODES
                .iter()
                .map(|code| (*code, counter(&format!("tollgate.requests.denied.{code}"))))
                .collect(),
            local_hits: counter("tollgate.cache.local_hits"),
            shared_hits: counter("tollgate.cache.shared_hits"),
            misses: counter("tollgate.cache.misses"),
            lookup_failures: counter("tollgate.lookups.failed"),
            lookup_latency_ms: hostcalls::define_metric(
                MetricType::Histogram,
                "tollgate.lookups.latency_ms",
            )
            .ok(),
            dual_credentials: counter("tollgate.requests.dual_credentials"),
            rate_limited: LIMIT_LEVELS
                .iter()
                .map(|level| (*level, counter(&format!("tollgate.rate_limited.{level}"))))
                .collect(),
            limit_sync_failures: counter("tollgate.limits.sync_failures"),
            limits_degraded: hostcalls::define_metric(
                MetricType::Gauge,
                "tollgate.limits.degraded",
            )
            .ok(),
            usage_report_failures: counter("tollgate.usage.report_failures"),
        }
    }

    pub fn allowed(&self, method: tollgate_filter_core::decision::AuthMethod) {
        use tollgate_filter_core::decision::AuthMethod;
        add(match method {
            AuthMethod::ApiKey => self.allowed_api_key,
            AuthMethod::Session => self.allowed_session,
            AuthMethod::Unverified => self.allowed_unverified,
        });
    }

    pub fn denied(&self, code: &str) {
        if let Some((_, id)) = self.denied.iter().find(|(known, _)| *known == code) {
            add(*id);
        }
    }

    pub fn local_hit(&self) {
        add(self.local_hits);
    }

    pub fn shared_hit(&self) {
        add(self.shared_hits);
    }

    pub fn miss(&self) {
        add(self.misses);
    }

    pub fn lookup_failed(&self) {
        add(self.lookup_failures);
    }

    pub fn lookup_took(&self, millis: u64) {
        if let Some(id) = self.lookup_latency_ms {
            let _ = hostcalls::record_metric(id, millis);
        }
    }

    pub fn dual_credentials(&self) {
        add(self.dual_credentials);
    }

    pub fn rate_limited(&self, level: &str) {
        if let Some((_, id)) = self.rate_limited.iter().find(|(known, _)| *known == level) {
            add(*id);
        }
    }

    pub fn limit_sync_failed(&self) {
        add(self.limit_sync_failures);
    }

    /// 1 while `fast` limits run on local shares because the control plane cannot be synced.
    pub fn limits_degraded(&self, degraded: bool) {
        if let Some(id) = self.limits_degraded {
            let _ = hostcalls::record_metric(id, u64::from(degraded));
        }
    }

    pub fn usage_report_failed(&self) {
        add(self.usage_report_failures);
    }
}
