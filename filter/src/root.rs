//! The per-VM root context: reads the plugin configuration and creates one context per request.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use tollgate_filter_core::config::PluginConfig;

use crate::key_cache::KeyCache;
use crate::request::TollgateRequest;

/// Bounds the memory one VM spends on cached keys; shared data still holds every entry.
const LOCAL_CACHE_CAPACITY_ENTRIES: usize = 10_000;

/// What every request of this VM shares: the configuration and the key cache.
pub struct TollgateRoot {
    config: Rc<PluginConfig>,
    key_cache: Rc<KeyCache>,
}

impl TollgateRoot {
    /// A root with the default configuration, until `on_configure` reads the real one.
    pub fn new() -> Self {
        Self {
            config: Rc::new(PluginConfig::default()),
            key_cache: Rc::new(KeyCache::new(LOCAL_CACHE_CAPACITY_ENTRIES)),
        }
    }
}

impl Context for TollgateRoot {}

impl RootContext for TollgateRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        match PluginConfig::from_json(&configuration) {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(error) => {
                log::error!("{error}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TollgateRequest::new(
            Rc::clone(&self.config),
            Rc::clone(&self.key_cache),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
