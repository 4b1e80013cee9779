//! Upstream pools: a named set of backends and how their health is checked.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::validation::{deserialize_checked, InvalidField};

/// The name of the pool backends join when none is named.
pub const DEFAULT_POOL: &str = "default";

/// A pool's name: 1-63 lowercase letters, digits and `-`, as it becomes an Envoy cluster name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct PoolName(String);

impl PoolName {
    /// A name from outside, checked.
    pub fn parse(name: &str) -> Result<Self, InvalidField> {
        Self::try_from(name.to_string())
    }

    /// The pool backends join when none is named.
    pub fn default_pool() -> Self {
        Self(DEFAULT_POOL.to_string())
    }

    /// The name as written, e.g. for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PoolName {
    type Error = InvalidField;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if name.is_empty() || name.len() > 63 || !name.chars().all(allowed) {
            return Err(InvalidField {
                field: "pool",
                problem: "must be 1 to 63 lowercase letters, digits or -",
            });
        }
        Ok(Self(name))
    }
}

impl<'de> Deserialize<'de> for PoolName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked::<D, String, Self>(deserializer)
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a pool's backends are health-checked. Fields left out take the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckSettings {
    pub interval_secs: u32,
    pub timeout_secs: u32,
    /// Consecutive failures that make a backend unhealthy.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that make it healthy again.
    pub healthy_threshold: u32,
}

impl Default for HealthCheckSettings {
    fn default() -> Self {
        Self {
            interval_secs: 30,
            timeout_secs: 5,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
        }
    }
}

impl HealthCheckSettings {
    /// How long one check may take before it counts as a failure.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.into())
    }

    /// Every value at least 1, and the timeout shorter than the interval.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let positive = self.interval_secs >= 1
            && self.timeout_secs >= 1
            && self.unhealthy_threshold >= 1
            && self.healthy_threshold >= 1
            && self.interval_secs <= 3600
            && self.unhealthy_threshold <= 100
            && self.healthy_threshold <= 100;
        if !positive {
            return Err(InvalidField {
                field: "health_check",
                problem: "interval 1-3600 s, timeout and thresholds at least 1 (at most 100)",
            });
        }
        if self.timeout_secs >= self.interval_secs {
            return Err(InvalidField {
                field: "health_check",
                problem: "timeout_secs must be shorter than interval_secs",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_defaults_are_valid() {
        let defaults = HealthCheckSettings::default();
        assert_eq!(defaults.timeout(), Duration::from_secs(5));
        assert!(defaults.validate().is_ok());
        let slow = HealthCheckSettings {
            timeout_secs: 30,
            ..defaults
        };
        assert!(slow.validate().is_err());
    }

    #[test]
    fn pool_names_fit_envoy_cluster_names() {
        assert!(PoolName::parse("default").is_ok());
        assert!(PoolName::parse("eu-west-2").is_ok());
        assert!(PoolName::parse("EU").is_err());
        assert!(PoolName::parse("a_b").is_err());
        let error = serde_json::from_str::<PoolName>(r#""a_b""#).expect_err("refused");
        assert!(error.to_string().contains("`pool` must be"), "{error}");
    }
}
