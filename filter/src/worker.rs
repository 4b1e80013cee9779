//! What every request on one worker VM shares: configuration, caches, the worker's view of
//! the change feed, and verified session tokens.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use proxy_wasm::hostcalls;
use tollgate_filter_core::config::PluginConfig;
use tollgate_filter_core::freshness::Freshness;
use tollgate_filter_core::gate::FailurePolicy;
use tollgate_filter_core::limits::plan::address_failure_horizon_us;
use tollgate_filter_core::local_digest::LocalDigester;
use tollgate_filter_core::session::VerifiedTokens;
use tollgate_filter_core::sync::{SyncState, SYNC_STATE_KEY};

use crate::address_failures::AddressFailures;
use crate::background::Background;
use crate::caches::PrincipalCaches;
use crate::limiter::Limiter;
use crate::metrics::Metrics;

/// Bounds the memory one VM spends on verified session tokens.
const VERIFIED_TOKENS_CAPACITY: usize = 10_000;
const MILLIS_PER_SECOND: i64 = 1000;

pub struct Worker {
    pub config: PluginConfig,
    pub policy: FailurePolicy,
    pub caches: PrincipalCaches,
    pub freshness: RefCell<Freshness>,
    pub tokens: RefCell<VerifiedTokens>,
    /// Names credentials in this VM's caches under a secret of its own.
    pub digester: LocalDigester,
    pub metrics: Rc<Metrics>,
    pub background: Background,
    pub limiter: Limiter,
    pub address_failures: AddressFailures,
    /// The shared-data version of the sync state last read, to skip unchanged reads.
    seen_sync_version: Cell<Option<u32>>,
}

impl Worker {
    /// `node_id` names this Envoy to the control plane; `vm_id` makes usage batch ids unique;
    /// `secret` keys the VM's [`LocalDigester`].
    pub fn new(config: PluginConfig, node_id: String, vm_id: String, secret: [u8; 16]) -> Self {
        let metrics = Rc::new(Metrics::define());
        let max_stale_ms = i64::from(config.max_stale_secs) * MILLIS_PER_SECOND;
        Self {
            policy: FailurePolicy {
                max_stale_ms,
                fail_open: config.fail_open_scopes(),
            },
            caches: PrincipalCaches::new(max_stale_ms, Rc::clone(&metrics)),
            freshness: RefCell::new(Freshness::default()),
            tokens: RefCell::new(VerifiedTokens::new(VERIFIED_TOKENS_CAPACITY)),
            digester: LocalDigester::new(secret),
            metrics,
            background: Background::new(node_id, vm_id),
            limiter: Limiter::default(),
            address_failures: AddressFailures::prepare(),
            seen_sync_version: Cell::new(None),
            config,
        }
    }

    /// Takes in the failing addresses other workers shared.
    pub fn refresh_address_failures(&self, now_us: i64) {
        let Ok(freshness) = self.freshness.try_borrow() else {
            return;
        };
        let horizon_us = address_failure_horizon_us(freshness.limits(), self.background.envoys());
        self.address_failures.refresh(now_us, horizon_us);
    }

    /// Reads the sync state now if this worker cannot verify sessions yet.
    pub fn load_session_keys_if_missing(&self) {
        let missing = self
            .freshness
            .try_borrow()
            .is_ok_and(|freshness| freshness.sessions().is_none());
        if missing {
            self.refresh_freshness();
        }
    }

    /// Re-reads the Envoy-wide sync state if it changed since the last look.
    pub fn refresh_freshness(&self) {
        let (bytes, version) = match hostcalls::get_shared_data(SYNC_STATE_KEY) {
            Ok((Some(bytes), version)) => (bytes, version),
            Ok((None, _)) => return,
            Err(status) => {
                log::warn!("could not read the sync state: {status:?}");
                return;
            }
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
