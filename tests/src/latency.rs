//! Latency figures the benchmark tools print.

use std::time::Duration;

/// The value at `share` (0.5 for the median) of `sorted`, which must not be empty.
pub fn percentile(sorted: &[Duration], share: f64) -> Duration {
    let rank = ((sorted.len() as f64) * share).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with one decimal.
pub fn millis(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}
