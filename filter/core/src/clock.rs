//! Wall-clock time in the unit the cache and the decisions use.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; 0 for a time before it, `i64::MAX` far beyond it.
pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since_epoch| {
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    })
}

/// Microseconds since the Unix epoch, saturating like [`unix_millis`].
pub fn unix_micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since_epoch| {
        i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn counts_milliseconds_since_the_epoch() {
        let time = UNIX_EPOCH + Duration::from_millis(1_767_225_600_123);

        assert_eq!(unix_millis(time), 1_767_225_600_123);
    }

    #[test]
    fn a_time_before_the_epoch_is_zero() {
        let time = UNIX_EPOCH - Duration::from_secs(1);

        assert_eq!(unix_millis(time), 0);
    }
}
