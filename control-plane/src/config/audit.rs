//! `audit.*`: how long the audit log keeps its entries.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The longest retention that may be set: 100 years.
const MAX_RETENTION_DAYS: u32 = 36_500;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Entries older than this many days are pruned, leaving a sealed checkpoint the kept
    /// chain verifies from; 0 keeps every entry.
    pub retention_days: u32,
}

impl AuditConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.retention_days > MAX_RETENTION_DAYS {
            return Err(ConfigError::invalid(
                "audit.retention_days",
                format!("must be 0 (keep forever) to {MAX_RETENTION_DAYS}"),
            ));
        }
        Ok(())
    }
}
