//! The root context of every VM. Its `root_id` picks its role: the HTTP filter on each
//! worker, or the change-feed service (`tollgate_sync`, a singleton per Envoy).

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use tollgate_filter_core::config::PluginConfig;

use crate::request::TollgateRequest;
use crate::sync_service::{SyncService, TICK};
use crate::worker::Worker;

/// The `root_id` of the change-feed service in Envoy's `bootstrap_extensions`.
const SYNC_ROOT_ID: &str = "tollgate_sync";
/// How often a worker looks for a newer sync state in shared data.
const FRESHNESS_TICK: std::time::Duration = std::time::Duration::from_millis(100);

enum Role {
    Unconfigured,
    Filter(Rc<Worker>),
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
        // A VM going away settles what its worker leased, rather than leave it taken.
        if let Role::Filter(worker) = &self.role {
            worker.limiter.settle_expired(i64::MAX);
        }
        true
    }

    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let body = match response_size {
            0 => None,
            size => self.get_grpc_call_response_body(0, size),
        };
        match &mut self.role {
            Role::Sync(service) => service.on_answer(token_id, status_code, body),
            Role::Filter(worker) => {
                let now_us = crate::clock::now_us();
                worker
                    .background
                    .on_answer(token_id, status_code, body, now_us, &worker.metrics);
            }
            Role::Unconfigured => {}
        }
    }
}

impl RootContext for TollgateRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let config = match PluginConfig::from_json(&configuration) {
            Ok(config) => config,
            Err(error) => {
                log::error!("{error}");
                return false;
            }
        };
        let root_id = self
            .get_property(vec!["plugin_root_id"])
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_default();
        let (role, tick) = if root_id == SYNC_ROOT_ID {
            (Role::Sync(Box::new(SyncService::new(config))), TICK)
        } else {
            let text = |path: Vec<&str>| {
                self.get_property(path)
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .unwrap_or_default()
            };
            let mut secret = [0; 16];
            if let Err(error) = getrandom::fill(&mut secret) {
                log::error!("no random source for the credential cache's secret: {error}");
                return false;
            }
            let node_id = text(vec!["node", "id"]);
            let vm_id = format!("{node_id}-{:x}", crate::clock::now_us());
            (
                Role::Filter(Rc::new(Worker::new(config, node_id, vm_id, secret))),
                FRESHNESS_TICK,
            )
        };
        self.role = role;
        self.set_tick_period(tick);
        true
    }

    fn on_tick(&mut self) {
        match &mut self.role {
            Role::Filter(worker) => {
                let now_us = crate::clock::now_us();
                worker.refresh_freshness();
                worker.refresh_address_failures(now_us);
                let settled = worker.limiter.settle_expired(now_us);
                for (subject, limits) in settled {
                    worker.background.touched(&subject, &limits);
                }
                worker.background.tick(&worker.config, &worker.metrics);
                worker.metrics.flush();
            }
            Role::Sync(service) => service.tick(),
            Role::Unconfigured => {}
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.role {
            Role::Filter(worker) => Some(Box::new(TollgateRequest::new(Rc::clone(worker)))),
            _ => None,
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
