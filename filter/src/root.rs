//! The root context of every VM. Its `root_id` picks its role: the HTTP filter on each
//! worker (one of which follows the change feed when Envoy runs no service for it), or the
//! change-feed service (`tollgate_sync`, a singleton per Envoy).

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use tollgate_filter_core::config::PluginConfig;
use tollgate_filter_core::node;
use tollgate_filter_core::worker::Worker;

use crate::host::ProxyHost;
use crate::metric_ids::MetricIds;
use crate::request::TollgateRequest;
use crate::sync_service::{SyncService, TICK};

/// The `root_id` of the change-feed service in Envoy's `bootstrap_extensions`.
const SYNC_ROOT_ID: &str = "tollgate_sync";
/// How often a worker looks for a newer sync state in shared data.
const FRESHNESS_TICK: std::time::Duration = std::time::Duration::from_millis(100);

enum Role {
    Unconfigured,
    Filter(Rc<Worker>, MetricIds),
    Sync(Box<SyncService>),
}

pub struct TollgateRoot {
    role: Role,
}

impl TollgateRoot {
    pub fn new() -> Self {
        Self {
            role: Role::Unconfigured,
        }
    }
}

impl Context for TollgateRoot {
    fn on_done(&mut self) -> bool {
        if let Role::Filter(worker, _) = &self.role {
            worker.shut_down(&ProxyHost);
        }
        true
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let body = ProxyHost::grpc_answer_body(response_size);
        match &mut self.role {
            Role::Sync(service) => service.on_answer(token_id, status_code, body.as_deref()),
            Role::Filter(worker, _) => {
                worker.on_answer(&ProxyHost, token_id, status_code, body.as_deref());
            }
            Role::Unconfigured => {}
        }
    }
}

impl RootContext for TollgateRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let config = PluginConfig::from_json(&configuration)
            .and_then(|config| config.with_credential_from_env(|name| std::env::var(name).ok()));
        let config = match config {
            Ok(config) => config,
            Err(error) => {
                log::error!("{error}");
                return false;
            }
        };
        if config.control_plane_credential.authorization().is_none() {
            log::warn!(
                "control_plane_credential is not set; the control plane refuses calls without it"
            );
        }
        let text = |path: Vec<&str>| {
            self.get_property(path)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .unwrap_or_default()
        };
        let root_id = text(vec!["plugin_root_id"]);
        let node_id = node::node_id(&ProxyHost);
        let (role, tick) = if root_id == SYNC_ROOT_ID {
            (
                Role::Sync(Box::new(SyncService::new(config, node_id))),
                TICK,
            )
        } else {
            let mut secret = [0; 16];
            let mut vm_nonce = [0; 16];
            if let Err(error) = getrandom::fill(&mut secret).and(getrandom::fill(&mut vm_nonce)) {
                log::error!("no random source for the credential cache's secret: {error}");
                return false;
            }
            // Usage and sync batch ids start with it, and it names the worker in the sync
            // lease: unique to this VM whatever the node id's
            // length, and unlike a clock reading, not shared by workers configured at the same
            // moment.
            let vm_id = format!("{:032x}", u128::from_le_bytes(vm_nonce));
            let worker = Worker::new(&ProxyHost, config, node_id, vm_id, secret);
            let ids = MetricIds::define(&worker.metrics);
            (Role::Filter(Rc::new(worker), ids), FRESHNESS_TICK)
        };
        self.role = role;
        self.set_tick_period(tick);
        true
    }

    fn on_tick(&mut self) {
        match &mut self.role {
            Role::Filter(worker, ids) => {
                worker.tick(&ProxyHost);
                ids.flush(&worker.metrics);
            }
            Role::Sync(service) => service.tick(),
            Role::Unconfigured => {}
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.role {
            Role::Filter(worker, _) => Some(Box::new(TollgateRequest::new(Rc::clone(worker)))),
            _ => None,
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
