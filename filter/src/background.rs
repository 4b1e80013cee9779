//! A worker's background calls to the control plane: `fast` rate-limit syncs and usage
//! reports. Both run from the worker's tick, one call of each kind in flight at a time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use prost::Message;
use proxy_wasm::hostcalls;
use tollgate_filter_core::callout::{FILTER_SERVICE, REPORT_USAGE_METHOD, SYNC_LIMITS_METHOD};
use tollgate_filter_core::config::PluginConfig;
use tollgate_filter_core::proto::{
    BucketRef, LimitMode, RateLimit, SyncLimitsRequest, SyncLimitsResponse,
};
use tollgate_filter_core::usage::UsageBuffer;

use crate::limiter;
use crate::metrics::Metrics;

/// Ticks (of 100 ms) between two `fast` syncs and between two usage reports.
const SYNC_EVERY_TICKS: u32 = 2;
const REPORT_EVERY_TICKS: u32 = 10;
const GRPC_STATUS_OK: u32 = 0;
/// The control plane refused the call's content: sending it again cannot help.
const GRPC_STATUS_INVALID_ARGUMENT: u32 = 3;

pub struct Background {
    node_id: String,
    ticks: Cell<u32>,
    /// `fast` subjects admitted here since their last sync, with their limits.
    touched: RefCell<HashMap<String, Vec<RateLimit>>>,
    sync_in_flight: RefCell<Option<(u32, Vec<BucketRef>)>>,
    /// How many Envoys share `fast` buckets, as the control plane last said.
    envoys: Cell<u32>,
    pub usage: RefCell<UsageBuffer>,
    report_in_flight: RefCell<Option<(u32, String)>>,
}

impl Background {
    pub fn new(node_id: String, batch_prefix: String) -> Self {
        Self {
            node_id,
            ticks: Cell::new(0),
            touched: RefCell::new(HashMap::new()),
            sync_in_flight: RefCell::new(None),
            envoys: Cell::new(1),
            usage: RefCell::new(UsageBuffer::new(batch_prefix)),
            report_in_flight: RefCell::new(None),
        }
    }

    pub fn envoys(&self) -> u32 {
        self.envoys.get()
    }

    /// Remembers a subject to report at the next sync, if any of its limits is `fast` (only
    /// those are reported).
    pub fn touched(&self, subject: &str, limits: &[RateLimit]) {
        if !limits.iter().any(|limit| limit.mode() == LimitMode::Fast) {
            return;
        }
        if let Ok(mut touched) = self.touched.try_borrow_mut() {
            if !touched.contains_key(subject) {
                touched.insert(subject.to_owned(), limits.to_vec());
            }
        }
    }

    pub fn tick(&self, config: &PluginConfig, metrics: &Metrics) {
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks.is_multiple_of(SYNC_EVERY_TICKS) {
            self.sync_limits(config, metrics);
        }
        if ticks.is_multiple_of(REPORT_EVERY_TICKS) {
            self.report_usage(config, metrics);
        }
    }

    fn sync_limits(&self, config: &PluginConfig, metrics: &Metrics) {
        let (Ok(mut in_flight), Ok(mut touched)) = (
            self.sync_in_flight.try_borrow_mut(),
            self.touched.try_borrow_mut(),
        ) else {
            return;
        };
        if in_flight.is_some() || touched.is_empty() {
            return;
        }
        let mut buckets = Vec::new();
        let mut lost = Vec::new();
        for (subject, limits) in touched.drain() {
            let mut taken = Vec::new();
            if !limiter::update(&subject, |state| taken = state.take_unreported()) {
                // Nothing was taken: the counts stay for the next sync.
                lost.push((subject, limits));
                continue;
            }
            for (window_seconds, count) in taken {
                if let Some(limit) = limits.iter().find(|l| l.window_seconds == window_seconds) {
                    buckets.push(BucketRef {
                        subject: subject.clone(),
                        limit: Some(*limit),
                        count,
                    });
                }
            }
        }
        touched.extend(lost);
        drop(touched);
        if buckets.is_empty() {
            return;
        }
        let request = SyncLimitsRequest {
            node_id: self.node_id.clone(),
            buckets,
        };
        match hostcalls::dispatch_grpc_call(
            &config.control_plane_cluster,
            FILTER_SERVICE,
            SYNC_LIMITS_METHOD,
            Vec::new(),
            Some(&request.encode_to_vec()),
            config.callout_timeout(),
        ) {
            Ok(token) => *in_flight = Some((token, request.buckets)),
            Err(status) => {
                log::warn!("could not sync rate limits: {status:?}");
                metrics.limit_sync_failed();
                self.give_back(&request.buckets);
            }
        }
    }

    fn report_usage(&self, config: &PluginConfig, metrics: &Metrics) {
        let (Ok(mut in_flight), Ok(mut usage)) = (
            self.report_in_flight.try_borrow_mut(),
            self.usage.try_borrow_mut(),
        ) else {
            return;
        };
        if in_flight.is_some() {
            return;
        }
        let Some(batch) = usage.next_batch() else {
            return;
        };
        match hostcalls::dispatch_grpc_call(
            &config.control_plane_cluster,
            FILTER_SERVICE,
            REPORT_USAGE_METHOD,
            Vec::new(),
            Some(&batch.encode_to_vec()),
            config.callout_timeout(),
        ) {
            Ok(token) => *in_flight = Some((token, batch.batch_id.clone())),
            Err(status) => {
                log::warn!("could not report usage: {status:?}");
                metrics.usage_report_failed();
            }
        }
    }

    /// Handles the answer to one of this worker's calls; `false` when the token is not ours.
    pub fn on_answer(
        &self,
        token: u32,
        grpc_status: u32,
        body: Option<Vec<u8>>,
        now_us: i64,
        metrics: &Metrics,
    ) -> bool {
        let sync = self
            .sync_in_flight
            .try_borrow_mut()
            .ok()
            .and_then(|mut in_flight| in_flight.take_if(|(t, _)| *t == token));
        if let Some((_, buckets)) = sync {
            let answer = (grpc_status == GRPC_STATUS_OK)
                .then(|| SyncLimitsResponse::decode(body.unwrap_or_default().as_slice()).ok())
                .flatten()
                .filter(|answer| answer.buckets.len() == buckets.len());
            match answer {
                Some(answer) => {
                    let envoys = answer.envoys.max(1);
                    self.envoys.set(envoys);
                    metrics.limits_degraded(false);
                    for (bucket, state) in buckets.iter().zip(&answer.buckets) {
                        if let Some(limit) = &bucket.limit {
                            limiter::update(&bucket.subject, |subject| {
                                subject.rebase(limit, state.backlog_ms, envoys, now_us);
                            });
                        }
                    }
                }
                None => {
                    log::warn!("rate-limit sync failed (gRPC status {grpc_status})");
                    metrics.limit_sync_failed();
                    metrics.limits_degraded(true);
                    self.give_back(&buckets);
                }
            }
            return true;
        }
        let report = self
            .report_in_flight
            .try_borrow_mut()
            .ok()
            .and_then(|mut in_flight| in_flight.take_if(|(t, _)| *t == token));
        if let Some((_, batch_id)) = report {
            if grpc_status == GRPC_STATUS_OK || grpc_status == GRPC_STATUS_INVALID_ARGUMENT {
                if grpc_status == GRPC_STATUS_INVALID_ARGUMENT {
                    log::error!("the control plane refused usage batch {batch_id}; dropped");
                    metrics.usage_report_failed();
                }
                if let Ok(mut usage) = self.usage.try_borrow_mut() {
                    usage.acknowledged(&batch_id);
                }
            } else {
                log::warn!("usage report failed (gRPC status {grpc_status}); it is retried");
                metrics.usage_report_failed();
            }
            return true;
        }
        false
    }

    /// Puts counts whose sync failed back, so the next sync charges them.
    fn give_back(&self, buckets: &[BucketRef]) {
        let mut limits_of: HashMap<&str, Vec<RateLimit>> = HashMap::new();
        for bucket in buckets {
            if let Some(limit) = &bucket.limit {
                limiter::update(&bucket.subject, |state| {
                    state.restore_unreported(limit.window_seconds, bucket.count);
                });
                limits_of.entry(&bucket.subject).or_default().push(*limit);
            }
        }
        for (subject, limits) in limits_of {
            self.touched(subject, &limits);
        }
    }
}
