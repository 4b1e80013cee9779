//! Upkeep that runs at most once per interval, whichever of the tasks sharing it asks first.

use std::sync::atomic::{AtomicI64, Ordering};

use super::Timestamp;

/// Hands out one turn per interval.
#[derive(Debug)]
pub struct AtMostEvery {
    interval_secs: i64,
    /// When the last turn was taken (Unix seconds).
    last_secs: AtomicI64,
}

impl AtMostEvery {
    pub const fn new(interval_secs: i64) -> Self {
        Self {
            interval_secs,
            last_secs: AtomicI64::new(0),
        }
    }

    /// Whether the caller takes the turn at `now`: true for one caller once the interval
    /// since the last turn has passed.
    pub fn take_turn(&self, now: Timestamp) -> bool {
        let last = self.last_secs.load(Ordering::Relaxed);
        now.timestamp() - last >= self.interval_secs
            && self
                .last_secs
                .compare_exchange(last, now.timestamp(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_turn_per_interval() {
        let every = AtMostEvery::new(60);
        let at = |secs| chrono::DateTime::from_timestamp(secs, 0).expect("time");
        assert!(every.take_turn(at(1_000)));
        assert!(!every.take_turn(at(1_059)));
        assert!(every.take_turn(at(1_060)));
    }
}
