//! `log.*`: the format of the process's log lines and the level they are filtered at.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use super::ConfigError;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object a line: time, level, target, fields, the current span and its parents.
    Json,
}

/// The process's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directives (`info`, `tollgate=debug,info`), used unless the
    /// `TOLLGATE_LOG` environment variable gives its own.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|error| ConfigError::invalid("log.level", error.to_string()))
    }
}
