//! The log filter changes while the process runs, and refuses directives it cannot read; in a
//! process of its own, since the log is process-wide.

use tollgate::config::LogConfig;
use tollgate::logging::{LogLevel, LogLevelError};
use tracing::Level;

#[test]
fn the_log_filter_can_be_changed_at_run_time() {
    assert!(matches!(
        LogLevel::set("debug"),
        Err(LogLevelError::NotInstalled)
    ));
    std::env::remove_var(tollgate::logging::LOG_ENV);
    tollgate::logging::init(&LogConfig::default());
    assert!(tracing::enabled!(Level::INFO));
    assert!(!tracing::enabled!(Level::DEBUG));

    LogLevel::set("debug").expect("a valid filter");
    assert!(tracing::enabled!(Level::DEBUG));

    assert!(matches!(
        LogLevel::set("tollgate=[[broken"),
        Err(LogLevelError::Invalid(_))
    ));
    assert!(tracing::enabled!(Level::DEBUG), "the filter is kept");

    LogLevel::set("warn").expect("a valid filter");
    assert!(!tracing::enabled!(Level::INFO));
}
