//! The filter's metrics in Envoy's stats: defined once per VM, then fed on every tick with
//! what the core counted since.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use tollgate_filter_core::metrics::{Metrics, LIMITS_DEGRADED_GAUGE, LOOKUP_LATENCY_HISTOGRAM};

/// Envoy's ids of the metrics; one the host refused to define is skipped.
pub struct MetricIds {
    counters: Vec<Option<u32>>,
    lookup_latency_ms: Option<u32>,
    limits_degraded: Option<u32>,
}

impl MetricIds {
    pub fn define(metrics: &Metrics) -> Self {
        Self {
            counters: metrics
                .counter_names()
                .map(|name| hostcalls::define_metric(MetricType::Counter, name).ok())
                .collect(),
            lookup_latency_ms: hostcalls::define_metric(
                MetricType::Histogram,
                LOOKUP_LATENCY_HISTOGRAM,
            )
            .ok(),
            limits_degraded: hostcalls::define_metric(MetricType::Gauge, LIMITS_DEGRADED_GAUGE)
                .ok(),
        }
    }

    /// Hands what `metrics` gained since the last flush to Envoy.
    pub fn flush(&self, metrics: &Metrics) {
        for (id, pending) in self.counters.iter().zip(metrics.take_counts()) {
            let Some(id) = *id else {
                continue;
            };
            if pending > 0 {
                let by = i64::try_from(pending).unwrap_or(i64::MAX);
                if let Err(status) = hostcalls::increment_metric(id, by) {
                    log::warn!("could not update a metric: {status:?}");
                }
            }
        }
        let latencies = metrics.take_lookup_latencies_ms();
        if let Some(id) = self.lookup_latency_ms {
            for millis in latencies {
                let _ = hostcalls::record_metric(id, millis);
            }
        }
        if let (Some(id), Some(degraded)) = (self.limits_degraded, metrics.take_limits_degraded()) {
            let _ = hostcalls::record_metric(id, u64::from(degraded));
        }
    }
}
