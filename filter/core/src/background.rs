//! A worker's background calls to the control plane: `fast` rate-limit syncs and usage
//! reports. Both run from the worker's tick, one call of each kind in flight at a time.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use prost::Message;

use crate::callout::{REPORT_USAGE_METHOD, SYNC_LIMITS_METHOD};
use crate::config::PluginConfig;
use crate::host::{GrpcCall, Host};
use crate::limits::limiter;
use crate::metrics::Metrics;
use crate::proto::{BucketRef, LimitMode, RateLimit, SyncLimitsRequest, SyncLimitsResponse};
use crate::usage::UsageBuffer;

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

    /// One tick of the worker (every 100 ms): a sync every [`SYNC_EVERY_TICKS`], a usage
    /// report every [`REPORT_EVERY_TICKS`].
    pub fn tick(&self, host: &impl Host, config: &PluginConfig, metrics: &Metrics) {
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks.is_multiple_of(SYNC_EVERY_TICKS) {
            self.sync_limits(host, config, metrics);
        }
        if ticks.is_multiple_of(REPORT_EVERY_TICKS) {
            self.report_usage(host, config, metrics);
        }
    }

    fn sync_limits(&self, host: &impl Host, config: &PluginConfig, metrics: &Metrics) {
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
            if !limiter::update(host, &subject, |state| taken = state.take_unreported()) {
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
        let message = request.encode_to_vec();
        match host.dispatch_grpc_call(GrpcCall::new(config, SYNC_LIMITS_METHOD, &message)) {
            Ok(token) => *in_flight = Some((token, request.buckets)),
            Err(error) => {
                log::warn!("could not sync rate limits: {error}");
                metrics.limit_sync_failed();
                self.give_back(host, &request.buckets);
            }
        }
    }

    fn report_usage(&self, host: &impl Host, config: &PluginConfig, metrics: &Metrics) {
        let Ok(mut in_flight) = self.report_in_flight.try_borrow_mut() else {
            return;
        };
        if in_flight.is_some() {
            return;
        }
        let Ok(mut usage) = self.usage.try_borrow_mut() else {
            return;
        };
        let Some(batch) = usage.next_batch() else {
            return;
        };
        let message = batch.encode_to_vec();
        match host.dispatch_grpc_call(GrpcCall::new(config, REPORT_USAGE_METHOD, &message)) {
            Ok(token) => *in_flight = Some((token, batch.batch_id.clone())),
            Err(error) => {
                log::warn!("could not report usage: {error}");
                metrics.usage_report_failed();
            }
        }
    }

    /// Handles the answer to one of this worker's calls; `false` when the token is not ours.
    pub fn on_answer(
        &self,
        host: &impl Host,
        token: u32,
        grpc_status: u32,
        body: Option<&[u8]>,
        metrics: &Metrics,
    ) -> bool {
        if let Some(buckets) = answered(&self.sync_in_flight, token) {
            let answer = (grpc_status == GRPC_STATUS_OK)
                .then(|| SyncLimitsResponse::decode(body.unwrap_or_default()).ok())
                .flatten()
                .filter(|answer| answer.buckets.len() == buckets.len());
            match answer {
                Some(answer) => {
                    let envoys = answer.envoys.max(1);
                    self.envoys.set(envoys);
                    metrics.limits_degraded(false);
                    let now_us = host.now_us();
                    for (bucket, state) in buckets.iter().zip(&answer.buckets) {
                        if let Some(limit) = &bucket.limit {
                            limiter::update(host, &bucket.subject, |subject| {
                                subject.rebase(limit, state.backlog_ms, envoys, now_us);
                            });
                        }
                    }
                }
                None => {
                    log::warn!("rate-limit sync failed (gRPC status {grpc_status})");
                    metrics.limit_sync_failed();
                    metrics.limits_degraded(true);
                    self.give_back(host, &buckets);
                }
            }
            return true;
        }
        if let Some(batch_id) = answered(&self.report_in_flight, token) {
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
    fn give_back(&self, host: &impl Host, buckets: &[BucketRef]) {
        let mut limits_of: HashMap<&str, Vec<RateLimit>> = HashMap::new();
        for bucket in buckets {
            if let Some(limit) = &bucket.limit {
                limiter::update(host, &bucket.subject, |state| {
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

/// What the call in flight was about, taken out, when `token` is its answer's.
fn answered<T>(in_flight: &RefCell<Option<(u32, T)>>, token: u32) -> Option<T> {
    let mut in_flight = in_flight.try_borrow_mut().ok()?;
    in_flight
        .take_if(|(in_flight_token, _)| *in_flight_token == token)
        .map(|(_, about)| about)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::{Call, MemoryHost};
    use crate::limits::limiter::Limiter;
    use crate::limits::plan::Draw;
    use crate::proto::{BucketState, LimitLevel, ReportUsageRequest};

    const NOW_US: i64 = 1_767_225_600_000_000;
    const UNAVAILABLE: u32 = 14;

    fn fast_per_minute(burst: u64) -> RateLimit {
        RateLimit {
            level: LimitLevel::User.into(),
            window_seconds: 60,
            requests: 600,
            burst,
            mode: LimitMode::Fast.into(),
        }
    }

    fn ticks(background: &Background, host: &MemoryHost, count: u32) -> Vec<Call> {
        let config = PluginConfig::default();
        let metrics = Metrics::default();
        for _ in 0..count {
            background.tick(host, &config, &metrics);
        }
        host.take_calls()
    }

    fn synced(call: &Call) -> Vec<(String, u32)> {
        assert_eq!(call.method, SYNC_LIMITS_METHOD);
        let request = SyncLimitsRequest::decode(call.message.as_slice()).expect("decodes");
        request
            .buckets
            .into_iter()
            .map(|bucket| (bucket.subject, bucket.count))
            .collect()
    }

    /// Two requests of `user:u` admitted one by one (the bucket is too small for a lease).
    fn two_admitted(host: &MemoryHost, background: &Background) {
        let draws = [Draw {
            subject: "user:u".to_owned(),
            limits: vec![fast_per_minute(5)],
        }];
        let limiter = Limiter::default();
        for _ in 0..2 {
            assert!(limiter.admit(host, &draws, NOW_US, 1).wrote_shared);
        }
        background.touched("user:u", &draws[0].limits);
    }

    #[test]
    fn fast_counts_are_synced_and_the_answer_sets_the_envoys() {
        let host = MemoryHost::at(NOW_US);
        let background = Background::new("node".to_owned(), "vm".to_owned());
        two_admitted(&host, &background);
        assert!(ticks(&background, &host, 1).is_empty(), "every second tick");

        let calls = ticks(&background, &host, 1);
        assert_eq!(synced(&calls[0]), vec![("user:u".to_owned(), 2)]);
        let answer = SyncLimitsResponse {
            buckets: vec![BucketState { backlog_ms: 0 }],
            envoys: 3,
        };
        let body = answer.encode_to_vec();
        let metrics = Metrics::default();
        assert!(background.on_answer(&host, calls[0].token, 0, Some(&body), &metrics));
        assert_eq!(background.envoys(), 3);
        assert_eq!(metrics.take_limits_degraded(), Some(false));
        assert!(
            ticks(&background, &host, 2).is_empty(),
            "nothing new to sync"
        );
    }

    #[test]
    fn counts_of_a_failed_sync_go_in_the_next() {
        let host = MemoryHost::at(NOW_US);
        let background = Background::new("node".to_owned(), "vm".to_owned());
        two_admitted(&host, &background);
        let calls = ticks(&background, &host, 2);
        let metrics = Metrics::default();

        assert!(background.on_answer(&host, calls[0].token, UNAVAILABLE, None, &metrics));

        assert_eq!(metrics.take_limits_degraded(), Some(true));
        let again = ticks(&background, &host, 2);
        assert_eq!(synced(&again[0]), vec![("user:u".to_owned(), 2)]);
        assert!(
            !background.on_answer(&host, calls[0].token, 0, None, &metrics),
            "answered"
        );
    }

    #[test]
    fn a_usage_report_is_sent_again_with_its_id_until_acknowledged() {
        let host = MemoryHost::at(NOW_US);
        let background = Background::new("node".to_owned(), "vm".to_owned());
        background
            .usage
            .borrow_mut()
            .record("u_alice", |delta| delta.requests += 1);
        let metrics = Metrics::default();
        let report = |host: &MemoryHost| {
            let calls = ticks(&background, host, REPORT_EVERY_TICKS);
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].method, REPORT_USAGE_METHOD);
            let batch = ReportUsageRequest::decode(calls[0].message.as_slice()).expect("decodes");
            (calls[0].token, batch)
        };

        let (token, first) = report(&host);
        assert_eq!(first.usage[0].requests, 1);
        assert!(background.on_answer(&host, token, UNAVAILABLE, None, &metrics));
        let (token, retried) = report(&host);
        assert_eq!(retried, first);
        assert!(background.on_answer(&host, token, 0, None, &metrics));
        assert!(
            ticks(&background, &host, REPORT_EVERY_TICKS).is_empty(),
            "acknowledged"
        );
    }

    #[test]
    fn a_sync_that_cannot_start_keeps_its_counts() {
        let host = MemoryHost::at(NOW_US);
        host.set_unreachable(true);
        let background = Background::new("node".to_owned(), "vm".to_owned());
        two_admitted(&host, &background);
        assert!(ticks(&background, &host, 2).is_empty());

        host.set_unreachable(false);
        let calls = ticks(&background, &host, 2);
        assert_eq!(synced(&calls[0]), vec![("user:u".to_owned(), 2)]);
    }
}
