//! A worker's background calls to the control plane: `fast` rate-limit syncs and usage
//! reports. Both run from the worker's tick, one call of each kind in flight at a time, and
//! both send a batch again, unchanged and with its id, until it is answered: the control
//! plane applies a batch id once.

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

/// The most buckets one sync carries (the control plane refuses more); the rest wait for the
/// next batch.
pub const MAX_BUCKETS_PER_SYNC: usize = 64;

pub struct Background {
    node_id: String,
    ticks: Cell<u32>,
    /// `fast` subjects admitted here since their last sync batch, with their limits.
    touched: RefCell<HashMap<String, Vec<RateLimit>>>,
    /// The sync batch sent and not answered yet: sent again, unchanged, until it is.
    unanswered_sync: RefCell<Option<UnansweredSync>>,
    batch_prefix: String,
    next_sync_sequence: Cell<u64>,
    /// How many Envoys share `fast` buckets, as the control plane last said.
    envoys: Cell<u32>,
    pub usage: RefCell<UsageBuffer>,
    report_in_flight: RefCell<Option<(u32, String)>>,
}

struct UnansweredSync {
    request: SyncLimitsRequest,
    /// The call carrying it, while one is in flight.
    token: Option<u32>,
}

impl Background {
    /// `batch_prefix` must be unique to this worker VM's lifetime.
    pub fn new(node_id: String, batch_prefix: String) -> Self {
        Self {
            node_id,
            ticks: Cell::new(0),
            touched: RefCell::new(HashMap::new()),
            unanswered_sync: RefCell::new(None),
            batch_prefix: batch_prefix.clone(),
            next_sync_sequence: Cell::new(0),
            envoys: Cell::new(1),
            usage: RefCell::new(UsageBuffer::new(batch_prefix)),
            report_in_flight: RefCell::new(None),
        }
    }

    pub fn envoys(&self) -> u32 {
        self.envoys.get()
    }

    /// This Envoy's node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Names this worker VM to the control plane: its batch ids start with it, and it holds
    /// allowances under it.
    pub fn holder(&self) -> &str {
        &self.batch_prefix
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

    /// Sends the unanswered sync batch again, else a new one, unless a call is in flight.
    fn sync_limits(&self, host: &impl Host, config: &PluginConfig, metrics: &Metrics) {
        let Ok(mut unanswered) = self.unanswered_sync.try_borrow_mut() else {
            return;
        };
        if unanswered.is_none() {
            *unanswered = self.next_sync_batch(host).map(|request| UnansweredSync {
                request,
                token: None,
            });
        }
        let Some(sync) = unanswered.as_mut().filter(|sync| sync.token.is_none()) else {
            return;
        };
        let message = sync.request.encode_to_vec();
        match host.dispatch_grpc_call(GrpcCall::new(config, SYNC_LIMITS_METHOD, &message)) {
            Ok(token) => sync.token = Some(token),
            Err(error) => {
                log::warn!("could not sync rate limits: {error}; it is retried");
                metrics.limit_sync_failed();
            }
        }
    }

    /// A new batch of the `fast` counts admitted since the last one. Counts admitted while it
    /// is unanswered stay in the limiter's state for the batch after.
    fn next_sync_batch(&self, host: &impl Host) -> Option<SyncLimitsRequest> {
        let mut touched = self.touched.try_borrow_mut().ok()?;
        let mut room = MAX_BUCKETS_PER_SYNC;
        let chosen: Vec<_> = touched
            .extract_if(|_, limits| {
                let fast = limits
                    .iter()
                    .filter(|limit| limit.mode() == LimitMode::Fast)
                    .count();
                let fits = fast <= room;
                if fits {
                    room -= fast;
                }
                fits
            })
            .collect();
        let mut buckets = Vec::new();
        for (subject, limits) in chosen {
            let mut taken = Vec::new();
            if !limiter::update(host, &subject, |state| taken = state.take_unreported()) {
                // Nothing was taken: the counts stay for the next batch.
                touched.insert(subject, limits);
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
        if buckets.is_empty() {
            return None;
        }
        let sequence = self.next_sync_sequence.get();
        self.next_sync_sequence.set(sequence + 1);
        Some(SyncLimitsRequest {
            node_id: self.node_id.clone(),
            buckets,
            batch_id: format!("{}-sync-{sequence}", self.batch_prefix),
        })
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
        if let Ok(mut unanswered) = self.unanswered_sync.try_borrow_mut() {
            if let Some(sync) = unanswered.as_mut().filter(|sync| sync.token == Some(token)) {
                sync.token = None;
                if self.sync_answered(host, &sync.request, grpc_status, body, metrics) {
                    *unanswered = None;
                }
                return true;
            }
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

    /// Re-bases the buckets of an answered sync; false when the batch must be sent again.
    fn sync_answered(
        &self,
        host: &impl Host,
        request: &SyncLimitsRequest,
        grpc_status: u32,
        body: Option<&[u8]>,
        metrics: &Metrics,
    ) -> bool {
        if grpc_status == GRPC_STATUS_INVALID_ARGUMENT {
            let batch_id = &request.batch_id;
            log::error!("the control plane refused rate-limit batch {batch_id}; dropped");
            metrics.limit_sync_failed();
            return true;
        }
        let answer = (grpc_status == GRPC_STATUS_OK)
            .then(|| SyncLimitsResponse::decode(body.unwrap_or_default()).ok())
            .flatten()
            .filter(|answer| answer.buckets.len() == request.buckets.len());
        let Some(answer) = answer else {
            log::warn!("rate-limit sync failed (gRPC status {grpc_status}); it is retried");
            metrics.limit_sync_failed();
            metrics.limits_degraded(true);
            return false;
        };
        let envoys = answer.envoys.max(1);
        self.envoys.set(envoys);
        metrics.limits_degraded(false);
        let now_us = host.now_us();
        for (bucket, state) in request.buckets.iter().zip(&answer.buckets) {
            if let Some(limit) = &bucket.limit {
                limiter::update(host, &bucket.subject, |subject| {
                    subject.rebase(limit, state.backlog_ms, envoys, now_us);
                });
            }
        }
        true
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
    const DEADLINE_EXCEEDED: u32 = 4;

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

    fn sent_sync(call: &Call) -> SyncLimitsRequest {
        assert_eq!(call.method, SYNC_LIMITS_METHOD);
        SyncLimitsRequest::decode(call.message.as_slice()).expect("decodes")
    }

    fn answer_with_one_bucket() -> Vec<u8> {
        SyncLimitsResponse {
            buckets: vec![BucketState { backlog_ms: 0 }],
            envoys: 1,
        }
        .encode_to_vec()
    }

    #[test]
    fn a_failed_or_timed_out_sync_is_resent_unchanged_and_new_counts_wait() {
        let host = MemoryHost::at(NOW_US);
        let background = Background::new("node".to_owned(), "vm".to_owned());
        two_admitted(&host, &background);
        let calls = ticks(&background, &host, 2);
        let first = sent_sync(&calls[0]);
        assert_eq!(synced(&calls[0]), vec![("user:u".to_owned(), 2)]);
        assert_eq!(first.batch_id, "vm-sync-0");
        let metrics = Metrics::default();
        two_admitted(&host, &background);
        assert!(
            ticks(&background, &host, 2).is_empty(),
            "one sync in flight"
        );

        let mut token = calls[0].token;
        for failure in [UNAVAILABLE, DEADLINE_EXCEEDED] {
            assert!(background.on_answer(&host, token, failure, None, &metrics));
            assert_eq!(metrics.take_limits_degraded(), Some(true));
            let again = ticks(&background, &host, 2);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].message, calls[0].message, "the same batch");
            token = again[0].token;
        }
        assert!(
            !background.on_answer(&host, calls[0].token, 0, None, &metrics),
            "answered"
        );

        let body = answer_with_one_bucket();
        assert!(background.on_answer(&host, token, 0, Some(&body), &metrics));
        let next = ticks(&background, &host, 2);
        assert_eq!(synced(&next[0]), vec![("user:u".to_owned(), 2)]);
        assert_eq!(sent_sync(&next[0]).batch_id, "vm-sync-1");
    }

    #[test]
    fn a_sync_the_control_plane_refuses_is_dropped() {
        let host = MemoryHost::at(NOW_US);
        let background = Background::new("node".to_owned(), "vm".to_owned());
        two_admitted(&host, &background);
        let calls = ticks(&background, &host, 2);
        let metrics = Metrics::default();

        assert!(background.on_answer(
            &host,
            calls[0].token,
            GRPC_STATUS_INVALID_ARGUMENT,
            None,
            &metrics
        ));

        assert!(ticks(&background, &host, 2).is_empty());
    }

    #[test]
    fn a_sync_carries_at_most_its_share_of_buckets() {
        let host = MemoryHost::at(NOW_US);
        let background = Background::new("node".to_owned(), "vm".to_owned());
        let limiter = Limiter::default();
        for user in 0..=MAX_BUCKETS_PER_SYNC {
            let draws = [Draw {
                subject: format!("user:u_{user}"),
                limits: vec![fast_per_minute(5)],
            }];
            assert!(limiter.admit(&host, &draws, NOW_US, 1).wrote_shared);
            background.touched(&draws[0].subject, &draws[0].limits);
        }
        let calls = ticks(&background, &host, 2);
        let first = sent_sync(&calls[0]);
        assert_eq!(first.buckets.len(), MAX_BUCKETS_PER_SYNC);
        let body = SyncLimitsResponse {
            buckets: vec![BucketState { backlog_ms: 0 }; MAX_BUCKETS_PER_SYNC],
            envoys: 1,
        }
        .encode_to_vec();
        let metrics = Metrics::default();
        assert!(background.on_answer(&host, calls[0].token, 0, Some(&body), &metrics));
        let rest = ticks(&background, &host, 2);
        assert_eq!(sent_sync(&rest[0]).buckets.len(), 1);
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
