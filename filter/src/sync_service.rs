//! The `tollgate_sync` service: where Envoy's bootstrap runs it (a singleton VM), it claims the
//! sync lease on every tick, so that no worker follows the change feed, and follows the feed
//! itself.

use std::time::Duration;

use tollgate_filter_core::config::PluginConfig;
use tollgate_filter_core::host::Host;
use tollgate_filter_core::metrics::Metrics;
use tollgate_filter_core::sync::follower::{CallAnswer, FeedFollower};
use tollgate_filter_core::sync::lease::claim_for_service;

use crate::host::ProxyHost;
use crate::metric_ids::MetricIds;

/// How often the service renews its claim and checks that a watch is running.
pub const TICK: Duration = Duration::from_millis(500);
const MICROS_PER_MILLI: i64 = 1000;

pub struct SyncService {
    config: PluginConfig,
    follower: FeedFollower,
    metrics: Metrics,
    metric_ids: MetricIds,
}

impl SyncService {
    /// Claims the lease at once, before any worker's tick could take it.
    pub fn new(config: PluginConfig, node_id: String) -> Self {
        claim_for_service(&ProxyHost, now_ms());
        let mut follower = FeedFollower::new(node_id);
        follower.resume(&ProxyHost);
        let metrics = Metrics::default();
        Self {
            config,
            follower,
            metric_ids: MetricIds::define(&metrics),
            metrics,
        }
    }

    pub fn tick(&mut self) {
        claim_for_service(&ProxyHost, now_ms());
        self.follower.tick(&ProxyHost, &self.config, &self.metrics);
        self.metric_ids.flush(&self.metrics);
    }

    pub fn on_answer(&mut self, token: u32, grpc_status: u32, body: Option<&[u8]>) {
        let answer = CallAnswer {
            token,
            grpc_status,
            body,
        };
        self.follower
            .on_answer(&ProxyHost, &self.config, &self.metrics, answer);
        self.metric_ids.flush(&self.metrics);
    }
}

fn now_ms() -> i64 {
    ProxyHost.now_us() / MICROS_PER_MILLI
}
