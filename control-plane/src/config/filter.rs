//! `filter.*`: how long Envoy's filter may reuse what the control plane told it.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// How long Envoy may reuse a key it resolved.
    pub positive_cache_ttl_secs: u32,
    /// How long Envoy may remember that a key is unknown.
    pub negative_cache_ttl_secs: u32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            positive_cache_ttl_secs: 30,
            negative_cache_ttl_secs: 5,
        }
    }
}

impl FilterConfig {
    /// Both lifetimes are at least a second.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let lifetimes = [
            (
                "filter.positive_cache_ttl_secs",
                self.positive_cache_ttl_secs,
            ),
            (
                "filter.negative_cache_ttl_secs",
                self.negative_cache_ttl_secs,
            ),
        ];
        match lifetimes.into_iter().find(|(_, secs)| *secs == 0) {
            Some((key, _)) => Err(ConfigError::invalid(key, "must be at least 1")),
            None => Ok(()),
        }
    }
}
