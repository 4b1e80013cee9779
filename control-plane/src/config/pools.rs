//! `pools.*` and `routing.*`: the size of upstream pools, their default health checks,
//! where requests go when a group's pools are down, and whom `https` backends are trusted by.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::routing::pool::HealthCheckSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolsConfig {
    /// Pools with fewer enabled backends are reported as below minimum.
    pub min_backends: usize,
    /// Adding a backend to a pool this full is refused.
    pub max_backends: usize,
    /// Health checks of pools without settings of their own.
    pub health_check: HealthCheckSettings,
}

impl Default for PoolsConfig {
    fn default() -> Self {
        Self {
            min_backends: 2,
            max_backends: 10,
            health_check: HealthCheckSettings::default(),
        }
    }
}

impl PoolsConfig {
    /// The maximum is at least 1 and at least the minimum; the health checks are valid.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_backends > self.max_backends || self.max_backends == 0 {
            return Err(ConfigError::invalid(
                "pools.max_backends",
                "must be at least 1 and at least pools.min_backends",
            ));
        }
        self.health_check
            .validate()
            .map_err(|error| ConfigError::invalid("pools.health_check", error.problem))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// When none of a group's pools has a healthy backend, send its users to the default
    /// pool instead of answering 503 `no_upstream_available`.
    pub fallback_to_default_pool: bool,
    /// The PEM bundle, on each Envoy's host, of the CAs that `https` backends' certificates
    /// must chain to unless a backend names its own (`tls_ca`).
    pub upstream_ca_file: String,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            fallback_to_default_pool: false,
            upstream_ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

impl RoutingConfig {
    /// The CA bundle is an absolute path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.upstream_ca_file.starts_with('/') {
            return Err(ConfigError::invalid(
                "routing.upstream_ca_file",
                "must be an absolute path on the Envoys' hosts",
            ));
        }
        Ok(())
    }
}
