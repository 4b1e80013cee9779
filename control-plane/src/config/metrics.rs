//! `metrics.*`: which users' figures carry their own label.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::ids::UserId;

/// The most users whose figures may carry their own label; every other user is counted under
/// `user="other"`, so the number of series stays bounded.
pub const MAX_LABELLED_USERS: usize = 100;

/// Prometheus metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Users (ids) whose quota usage and rate-limit refusals are labelled with their id.
    pub labelled_users: Vec<String>,
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.labelled_users.len() > MAX_LABELLED_USERS {
            return Err(ConfigError::invalid(
                "metrics.labelled_users",
                format!("may name at most {MAX_LABELLED_USERS} users"),
            ));
        }
        for (index, id) in self.labelled_users.iter().enumerate() {
            if UserId::parse(id).is_none() {
                return Err(ConfigError::invalid(
                    format!("metrics.labelled_users[{index}]"),
                    format!("must be a user id like u_abc123, not {id:?}"),
                ));
            }
        }
        Ok(())
    }
}
