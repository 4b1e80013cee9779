//! What every request on one worker VM shares (configuration, caches, the worker's view of
//! the change feed, verified session tokens, leases, usage), and the worker's tick.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use prost::Message;

use crate::allowances::{Allowances, Refill};
use crate::background::Background;
use crate::callout::ACQUIRE_ALLOWANCES_METHOD;
use crate::config::PluginConfig;
use crate::freshness::Freshness;
use crate::gate::FailurePolicy;
use crate::host::{GrpcCall, Host};
use crate::limits::limiter::Limiter;
use crate::limits::plan::address_failure_horizon_us;
use crate::limits::shared_failures::AddressFailures;
use crate::local_digest::LocalDigester;
use crate::metrics::Metrics;
use crate::principal_caches::PrincipalCaches;
use crate::proto::{AcquireAllowancesRequest, AcquireAllowancesResponse};
use crate::session::VerifiedTokens;
use crate::sync::elected::ElectedSyncer;
use crate::sync::follower::CallAnswer;
use crate::sync::{SyncState, SYNC_STATE_KEY};

/// Bounds the memory one VM spends on verified session tokens.
const VERIFIED_TOKENS_CAPACITY: usize = 10_000;
const MILLIS_PER_SECOND: i64 = 1000;
const GRPC_STATUS_OK: u32 = 0;

pub struct Worker {
    pub config: PluginConfig,
    pub policy: FailurePolicy,
    pub caches: PrincipalCaches,
    pub freshness: RefCell<Freshness>,
    pub tokens: RefCell<VerifiedTokens>,
    /// Names credentials in this VM's caches under a secret of its own.
    pub digester: LocalDigester,
    pub metrics: Metrics,
    pub background: Background,
    pub limiter: Limiter,
    pub address_failures: AddressFailures,
    /// The quota allowances this worker holds.
    pub allowances: RefCell<Allowances>,
    /// Allowances asked for ahead of need, by the token of their call.
    refills: RefCell<HashMap<u32, Refill>>,
    /// The shared-data version of the sync state last read, to skip unchanged reads.
    seen_sync_version: Cell<Option<u32>>,
    /// Follows the change feed while this worker is its Envoy's syncer.
    syncer: RefCell<ElectedSyncer>,
}

impl Worker {
    /// `node_id` names this Envoy to the control plane; `vm_id` makes usage and sync batch
    /// ids unique; `secret` keys the VM's [`LocalDigester`].
    pub fn new(
        host: &impl Host,
        config: PluginConfig,
        node_id: String,
        vm_id: String,
        secret: [u8; 16],
    ) -> Self {
        let max_stale_ms = i64::from(config.max_stale_secs) * MILLIS_PER_SECOND;
        Self {
            policy: FailurePolicy {
                max_stale_ms,
                fail_open: config.fail_open_scopes(),
            },
            caches: PrincipalCaches::new(max_stale_ms),
            freshness: RefCell::new(Freshness::default()),
            tokens: RefCell::new(VerifiedTokens::new(VERIFIED_TOKENS_CAPACITY)),
            digester: LocalDigester::new(secret),
            metrics: Metrics::default(),
            syncer: RefCell::new(ElectedSyncer::new(vm_id.clone(), node_id.clone())),
            background: Background::new(node_id, vm_id),
            limiter: Limiter::default(),
            address_failures: AddressFailures::prepare(host),
            allowances: RefCell::new(Allowances::new(config.allowance_idle_ms)),
            refills: RefCell::new(HashMap::new()),
            seen_sync_version: Cell::new(None),
            config,
        }
    }

    /// The worker's tick (every 100 ms): the change feed followed if this worker is the
    /// syncer, the feed and the failing addresses other workers shared taken in, expired
    /// leases settled, allowances settled and refilled, syncs and reports sent.
    pub fn tick(&self, host: &impl Host) {
        let now_us = host.now_us();
        if let Ok(mut syncer) = self.syncer.try_borrow_mut() {
            syncer.tick(host, &self.config, &self.metrics);
        }
        self.refresh_freshness(host);
        self.refresh_address_failures(host, now_us);
        for (subject, limits) in self.limiter.settle_expired(host, now_us) {
            self.background.touched(&subject, &limits);
        }
        self.tend_allowances(host, now_us);
        self.background.tick(host, &self.config, &self.metrics);
    }

    /// Hands allowances whose requests all ended to the next usage report, and asks for the
    /// next allowance of those running low.
    fn tend_allowances(&self, host: &impl Host, now_us: i64) {
        let Ok(mut allowances) = self.allowances.try_borrow_mut() else {
            return;
        };
        let (settled, refills) = allowances.tick(now_us);
        if let Ok(mut usage) = self.background.usage.try_borrow_mut() {
            for allowance_id in &settled {
                usage.settle(allowance_id);
            }
        }
        let Ok(mut in_flight) = self.refills.try_borrow_mut() else {
            return;
        };
        for refill in refills {
            let request = AcquireAllowancesRequest {
                node_id: self.background.node_id().to_owned(),
                holder: self.background.holder().to_owned(),
                user_id: refill.user_id.to_string(),
                quotas: refill.quotas.names(),
            }
            .encode_to_vec();
            let call = GrpcCall::new(&self.config, ACQUIRE_ALLOWANCES_METHOD, &request);
            match host.dispatch_grpc_call(call) {
                Ok(token) => {
                    in_flight.insert(token, refill);
                }
                Err(error) => {
                    log::warn!("could not ask for a quota allowance: {error}");
                    self.metrics.allowance_failed();
                    allowances.refill_answered(&refill.user_id, refill.quotas, now_us);
                }
            }
        }
    }

    /// Settles what this worker leased, rather than leave it taken, and hands the change
    /// feed on, when its VM goes away.
    pub fn shut_down(&self, host: &impl Host) {
        self.limiter.settle_expired(host, i64::MAX);
        if let Ok(mut syncer) = self.syncer.try_borrow_mut() {
            syncer.shut_down(host);
        }
    }

    /// Handles the answer to one of the worker's background calls.
    pub fn on_answer(&self, host: &impl Host, token: u32, grpc_status: u32, body: Option<&[u8]>) {
        let watched = self.syncer.try_borrow_mut().is_ok_and(|mut syncer| {
            let answer = CallAnswer {
                token,
                grpc_status,
                body,
            };
            syncer.on_answer(host, &self.config, &self.metrics, answer)
        });
        if watched {
            self.refresh_freshness(host);
            return;
        }
        let refill = self
            .refills
            .try_borrow_mut()
            .ok()
            .and_then(|mut in_flight| in_flight.remove(&token));
        match refill {
            Some(refill) => self.refilled(host, &refill, grpc_status, body),
            None => {
                self.background
                    .on_answer(host, token, grpc_status, body, &self.metrics);
            }
        }
    }

    fn refilled(&self, host: &impl Host, refill: &Refill, grpc_status: u32, body: Option<&[u8]>) {
        let Ok(mut allowances) = self.allowances.try_borrow_mut() else {
            return;
        };
        let now_us = host.now_us();
        let answer = (grpc_status == GRPC_STATUS_OK)
            .then(|| AcquireAllowancesResponse::decode(body.unwrap_or_default()).ok())
            .flatten();
        match answer {
            Some(answer) => {
                for grant in &answer.allowances {
                    allowances.granted(&refill.user_id, grant, now_us);
                }
            }
            None => {
                log::warn!("a quota allowance refill failed (gRPC status {grpc_status})");
                self.metrics.allowance_failed();
            }
        }
        allowances.refill_answered(&refill.user_id, refill.quotas, now_us);
    }

    /// Takes in the failing addresses other workers shared.
    fn refresh_address_failures(&self, host: &impl Host, now_us: i64) {
        let Ok(freshness) = self.freshness.try_borrow() else {
            return;
        };
        let horizon_us = address_failure_horizon_us(freshness.limits(), self.background.envoys());
        self.address_failures.refresh(host, now_us, horizon_us);
    }

    /// Reads the sync state now if this worker cannot verify sessions yet.
    pub fn load_session_keys_if_missing(&self, host: &impl Host) {
        let missing = self
            .freshness
            .try_borrow()
            .is_ok_and(|freshness| freshness.sessions().is_none());
        if missing {
            self.refresh_freshness(host);
        }
    }

    /// Re-reads the Envoy-wide sync state if it changed since the last look.
    fn refresh_freshness(&self, host: &impl Host) {
        let Some((bytes, version)) = host.shared_data_get(SYNC_STATE_KEY) else {
            return;
        };
        if version.is_some() && version == self.seen_sync_version.get() {
            return;
        }
        let Some(state) = SyncState::from_bytes(&bytes) else {
            log::warn!("the sync state in shared data is unreadable");
            return;
        };
        let (Ok(mut freshness), Ok(mut tokens)) = (
            self.freshness.try_borrow_mut(),
            self.tokens.try_borrow_mut(),
        ) else {
            return;
        };
        let kept = freshness.take_sessions();
        let keys_before = kept.as_ref().map(|s| s.keys_version.clone());
        *freshness = Freshness::from_state(&state, kept);
        let keys_after = freshness.sessions().map(|s| s.keys_version.clone());
        if keys_before != keys_after {
            // Tokens verified with withdrawn keys must be verified again.
            tokens.clear();
        }
        self.seen_sync_version.set(version);
    }
}
