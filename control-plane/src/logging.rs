//! The process's log: text or JSON lines on stderr, filtered by directives that can change
//! while the process runs (see [`LogLevel::set`]).

use std::sync::OnceLock;

use crate::reload::{LogFilter, DEFAULT_LOG_FILTER};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

/// The environment variable whose filter directives win over `log.level`.
pub const LOG_ENV: &str = "TOLLGATE_LOG";

static RELOAD: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Why the log's filter could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    #[error("invalid log filter: {0}")]
    Invalid(#[from] tracing_subscriber::filter::ParseError),
    #[error("the log is not set up in this process")]
    NotInstalled,
    #[error("cannot change the log filter: {0}")]
    Reload(#[from] reload::Error),
}

/// The filter every log line passes.
pub struct LogLevel;

impl LogLevel {
    /// Replaces the filter with `directives` (`info`, `tollgate=debug,info`) from now on.
    pub fn set(directives: &str) -> Result<(), LogLevelError> {
        let filter = EnvFilter::try_new(directives)?;
        let handle = RELOAD.get().ok_or(LogLevelError::NotInstalled)?;
        handle.reload(filter)?;
        Ok(())
    }
}

/// Installs the process's log as `config` says, filtered by `TOLLGATE_LOG` when set and by
/// `log.level` otherwise.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_env(LOG_ENV)
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let lines = match config.format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init()
        .is_ok()
    {
        let _ = RELOAD.set(handle);
    }
}

impl LogFilter for LogLevel {
    fn set(&self, filter: Option<&str>) -> Result<(), String> {
        let started_with = std::env::var(LOG_ENV).unwrap_or_else(|_| DEFAULT_LOG_FILTER.into());
        Self::set(filter.unwrap_or(&started_with)).map_err(|error| error.to_string())
    }
}
