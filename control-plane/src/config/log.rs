//! `log.*`: what the process logs.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The log filter (`info`, `warn,tollgate=debug`); unset, `TOLLGATE_LOG` or `info`.
    pub level: Option<String>,
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(level) = &self.level {
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|error| ConfigError::invalid("log.level", error.to_string()))?;
        }
        Ok(())
    }
}
