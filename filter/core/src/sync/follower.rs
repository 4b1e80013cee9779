//! Following the control plane's change feed: one watch (`WatchChanges`, a long poll) in
//! flight at a time, the next sent as soon as one answers, each answer folded into the
//! Envoy's [`SyncState`] and published in shared data for every worker.

use prost::Message;

use crate::callout::WATCH_CHANGES_METHOD;
use crate::config::PluginConfig;
use crate::host::{GrpcCall, Host};
use crate::metrics::Metrics;
use crate::proto::{WatchChangesRequest, WatchChangesResponse};
use crate::sync::{SyncState, SYNC_STATE_KEY};

/// After a failed watch, wait this long before the next.
const RETRY_AFTER_MS: i64 = 1000;
const MICROS_PER_MILLI: i64 = 1000;
const MICROS_PER_SECOND: i64 = 1_000_000;
const GRPC_STATUS_OK: u32 = 0;

/// A call's answer as Envoy delivers it.
#[derive(Debug, Clone, Copy)]
pub struct CallAnswer<'a> {
    pub token: u32,
    pub grpc_status: u32,
    pub body: Option<&'a [u8]>,
}

/// The watch loop of the one syncer of an Envoy.
pub struct FeedFollower {
    /// This Envoy's node id, which the control plane counts watches by.
    node_id: String,
    state: SyncState,
    /// Whether `state` holds a first answer.
    has_state: bool,
    in_flight: Option<u32>,
    retry_at_ms: i64,
}

impl FeedFollower {
    pub fn new(node_id: String) -> Self {
        Self {
            node_id,
            state: SyncState::default(),
            has_state: false,
            in_flight: None,
            retry_at_ms: 0,
        }
    }

    /// Takes the feed up where the state published in shared data left it (a previous
    /// syncer's), or from the start when there is none.
    pub fn resume(&mut self, host: &impl Host) {
        let published = host
            .shared_data_get(SYNC_STATE_KEY)
            .and_then(|(bytes, _)| SyncState::from_bytes(&bytes));
        self.has_state = published.is_some();
        self.state = published.unwrap_or_default();
        self.retry_at_ms = 0;
    }

    /// Starts a watch unless one is running or a retry is not due.
    pub fn tick(&mut self, host: &impl Host, config: &PluginConfig, metrics: &Metrics) {
        if self.in_flight.is_none() && now_ms(host) >= self.retry_at_ms {
            self.watch(host, config, metrics);
        }
    }

    /// Whether `token` is the watch in flight.
    pub fn awaits(&self, token: u32) -> bool {
        self.in_flight == Some(token)
    }

    /// Forgets the watch whose answer is being delivered, without publishing it: the call has
    /// ended, so there is nothing to cancel.
    pub fn drop_answer(&mut self) {
        self.in_flight = None;
    }

    /// Stops following: the watch in flight is abandoned.
    pub fn stop(&mut self, host: &impl Host) {
        if let Some(token) = self.in_flight.take() {
            host.cancel_grpc_call(token);
        }
    }

    /// Publishes a watch's answer and watches again at once; a failure waits for a retry.
    /// Answers to anything but the watch in flight are ignored.
    pub fn on_answer(
        &mut self,
        host: &impl Host,
        config: &PluginConfig,
        metrics: &Metrics,
        answer: CallAnswer<'_>,
    ) {
        if !self.awaits(answer.token) {
            return;
        }
        self.in_flight = None;
        let grpc_status = answer.grpc_status;
        let answer = (grpc_status == GRPC_STATUS_OK)
            .then(|| WatchChangesResponse::decode(answer.body.unwrap_or_default()).ok())
            .flatten();
        let Some(answer) = answer else {
            log::warn!("watching the control plane failed (gRPC status {grpc_status})");
            self.failed(host, metrics);
            return;
        };
        self.state
            .apply(!self.has_state, answer, host.now_us() / MICROS_PER_SECOND);
        self.has_state = true;
        if let Err(error) = host.shared_data_set(SYNC_STATE_KEY, &self.state.to_bytes(), None) {
            log::warn!("could not publish the sync state: {error:?}");
        }
        metrics.sync_answered();
        self.watch(host, config, metrics);
    }

    fn watch(&mut self, host: &impl Host, config: &PluginConfig, metrics: &Metrics) {
        let request = WatchChangesRequest {
            since: self.state.cursor,
            wait_ms: config.watch_wait_ms,
            node_id: self.node_id.clone(),
            signing_keys_version: self.state.signing_keys_version.clone(),
            initial: !self.has_state,
        };
        let message = request.encode_to_vec();
        let call = GrpcCall {
            timeout: config.watch_timeout(),
            ..GrpcCall::new(config, WATCH_CHANGES_METHOD, &message)
        };
        match host.dispatch_grpc_call(call) {
            Ok(token) => self.in_flight = Some(token),
            Err(error) => {
                log::warn!("could not start watching the control plane: {error}");
                self.failed(host, metrics);
            }
        }
    }

    fn failed(&mut self, host: &impl Host, metrics: &Metrics) {
        metrics.sync_failed();
        self.retry_at_ms = now_ms(host) + RETRY_AFTER_MS;
    }
}

fn now_ms(host: &impl Host) -> i64 {
    host.now_us() / MICROS_PER_MILLI
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::memory::MemoryHost;
    use crate::proto::{invalidation, Invalidation};

    const START_US: i64 = 1_767_225_600_000_000;

    fn watch_request(host: &MemoryHost) -> (u32, WatchChangesRequest) {
        let calls = host.take_calls();
        assert_eq!(calls.len(), 1, "one watch at a time: {calls:?}");
        let call = &calls[0];
        assert_eq!(call.method, WATCH_CHANGES_METHOD);
        let request = WatchChangesRequest::decode(call.message.as_slice()).expect("a request");
        (call.token, request)
    }

    fn revoked_key(cursor: u64) -> Vec<u8> {
        WatchChangesResponse {
            cursor,
            invalidations: vec![Invalidation {
                cursor,
                subject: Some(invalidation::Subject::KeyId("k_1".to_owned())),
                session_expires_at: 0,
            }],
            ..WatchChangesResponse::default()
        }
        .encode_to_vec()
    }

    fn ok(token: u32, body: &[u8]) -> CallAnswer<'_> {
        CallAnswer {
            token,
            grpc_status: 0,
            body: Some(body),
        }
    }

    fn published(host: &MemoryHost) -> SyncState {
        SyncState::from_bytes(&host.shared(SYNC_STATE_KEY).expect("published")).expect("state")
    }

    #[test]
    fn answers_are_published_and_the_next_watch_goes_out_at_once() {
        let host = MemoryHost::at(START_US);
        let (config, metrics) = (PluginConfig::default(), Metrics::default());
        let mut follower = FeedFollower::new("envoy-1".to_owned());
        follower.resume(&host);
        follower.tick(&host, &config, &metrics);
        let (token, first) = watch_request(&host);
        assert!(first.initial);
        assert_eq!(first.node_id, "envoy-1");
        follower.tick(&host, &config, &metrics);
        assert!(host.take_calls().is_empty(), "a watch is in flight");

        follower.on_answer(&host, &config, &metrics, ok(token, &revoked_key(7)));
        assert_eq!(published(&host).cursor, 7);
        let (_, next) = watch_request(&host);
        assert!(!next.initial);
        assert_eq!(next.since, 7);
    }

    #[test]
    fn a_new_syncer_takes_up_the_published_state() {
        let host = MemoryHost::at(START_US);
        let (config, metrics) = (PluginConfig::default(), Metrics::default());
        let mut previous = FeedFollower::new("envoy-1".to_owned());
        previous.tick(&host, &config, &metrics);
        let (token, _) = watch_request(&host);
        previous.on_answer(&host, &config, &metrics, ok(token, &revoked_key(9)));
        let (abandoned, _) = watch_request(&host);
        previous.stop(&host);
        assert_eq!(host.take_cancelled(), vec![abandoned]);

        let other_worker = host.another_worker();
        let mut next = FeedFollower::new("envoy-1".to_owned());
        next.resume(&other_worker);
        next.tick(&other_worker, &config, &metrics);
        let (_, request) = watch_request(&other_worker);
        assert!(!request.initial, "the published state is kept");
        assert_eq!(request.since, 9);
    }

    #[test]
    fn a_failed_watch_is_retried_after_a_pause() {
        let host = MemoryHost::at(START_US);
        let (config, metrics) = (PluginConfig::default(), Metrics::default());
        let mut follower = FeedFollower::new(String::new());
        follower.tick(&host, &config, &metrics);
        let (token, _) = watch_request(&host);
        follower.on_answer(
            &host,
            &config,
            &metrics,
            CallAnswer {
                token,
                grpc_status: 14,
                body: None,
            },
        );
        assert!(host.shared(SYNC_STATE_KEY).is_none());
        follower.tick(&host, &config, &metrics);
        assert!(host.take_calls().is_empty(), "the retry is not due");
        host.set_now_us(START_US + RETRY_AFTER_MS * MICROS_PER_MILLI);
        follower.tick(&host, &config, &metrics);
        assert!(watch_request(&host).1.initial);
    }
}
