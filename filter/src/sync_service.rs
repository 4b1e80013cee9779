//! The one place per Envoy that follows the control plane's change feed (a singleton wasm
//! service) and publishes it in shared data for every worker.

use std::time::Duration;

use prost::Message;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use tollgate_filter_core::callout::WATCH_CHANGES_METHOD;
use tollgate_filter_core::clock::unix_millis;
use tollgate_filter_core::config::PluginConfig;
use tollgate_filter_core::host::{GrpcCall, Host};
use tollgate_filter_core::proto::{WatchChangesRequest, WatchChangesResponse};
use tollgate_filter_core::sync::{SyncState, SYNC_STATE_KEY};

use crate::host::ProxyHost;

/// After a failed watch, wait this long before the next.
const RETRY_AFTER_MS: i64 = 1000;
const MILLIS_PER_SECOND: i64 = 1000;
const GRPC_STATUS_OK: u32 = 0;

/// The watch loop: one call in flight at a time, the next sent as soon as one answers.
pub struct SyncService {
    config: PluginConfig,
    state: SyncState,
    /// Whether a first answer has been applied.
    has_state: bool,
    in_flight: Option<u32>,
    retry_at_ms: i64,
    answers: Option<u32>,
    failures: Option<u32>,
}

impl SyncService {
    pub fn new(config: PluginConfig) -> Self {
        Self {
            config,
            state: SyncState::default(),
            has_state: false,
            in_flight: None,
            retry_at_ms: 0,
            answers: hostcalls::define_metric(MetricType::Counter, "tollgate.sync.answers").ok(),
            failures: hostcalls::define_metric(MetricType::Counter, "tollgate.sync.failures").ok(),
        }
    }

    /// Starts a watch unless one is running or a retry is not due.
    pub fn tick(&mut self) {
        if self.in_flight.is_none() && now_ms() >= self.retry_at_ms {
            self.watch();
        }
    }

    fn watch(&mut self) {
        let request = WatchChangesRequest {
            since: self.state.cursor,
            wait_ms: self.config.watch_wait_ms,
            node_id: String::new(),
            signing_keys_version: self.state.signing_keys_version.clone(),
            initial: !self.has_state,
        };
        let message = request.encode_to_vec();
        let call = GrpcCall {
            timeout: self.config.watch_timeout(),
            ..GrpcCall::new(&self.config, WATCH_CHANGES_METHOD, &message)
        };
        match ProxyHost.dispatch_grpc_call(call) {
            Ok(token) => self.in_flight = Some(token),
            Err(error) => {
                log::warn!("could not start watching the control plane: {error}");
                self.failed();
            }
        }
    }

    /// Applies a watch answer and watches again at once; a failure waits for a retry.
    pub fn on_answer(&mut self, token: u32, grpc_status: u32, body: Option<Vec<u8>>) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let answer = (grpc_status == GRPC_STATUS_OK)
            .then(|| WatchChangesResponse::decode(body.unwrap_or_default().as_slice()).ok())
            .flatten();
        let Some(answer) = answer else {
            log::warn!("watching the control plane failed (gRPC status {grpc_status})");
            self.failed();
            return;
        };
        self.state
            .apply(!self.has_state, answer, now_ms() / MILLIS_PER_SECOND);
        self.has_state = true;
        if let Err(error) = ProxyHost.shared_data_set(SYNC_STATE_KEY, &self.state.to_bytes(), None)
        {
            log::warn!("could not publish the sync state: {error:?}");
        }
        count(self.answers);
        self.watch();
    }

    fn failed(&mut self) {
        count(self.failures);
        self.retry_at_ms = now_ms() + RETRY_AFTER_MS;
    }
}

fn now_ms() -> i64 {
    hostcalls::get_current_time().map_or(0, unix_millis)
}

/// How often the service checks that a watch is running.
pub const TICK: Duration = Duration::from_millis(500);

fn count(metric: Option<u32>) {
    if let Some(id) = metric {
        let _ = hostcalls::increment_metric(id, 1);
    }
}
