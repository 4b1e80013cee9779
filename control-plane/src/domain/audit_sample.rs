//! Bounding audit entries about events a client can repeat at will: at most one entry per
//! subject per interval, and at most a fixed number per interval in all. Only the subjects
//! written within the last interval are remembered, so memory is bounded as well.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct AuditSample {
    interval: Duration,
    /// The most entries written per interval.
    per_interval: usize,
    /// When each subject was last written, for the entries of the last interval.
    last_written: Mutex<HashMap<String, Instant>>,
    /// The counter of entries left out.
    skipped_metric: &'static str,
}

impl AuditSample {
    /// At most `per_interval` entries per `interval`; those left out count in `skipped_metric`.
    pub fn new(interval: Duration, per_interval: u32, skipped_metric: &'static str) -> Self {
        Self {
            interval,
            per_interval: usize::try_from(per_interval).unwrap_or(usize::MAX),
            last_written: Mutex::default(),
            skipped_metric,
        }
    }

    /// Whether `subject` may be audited now; if so, from now on it is not, for one interval.
    /// Refused as well once the interval's entries are all written.
    pub fn due(&self, subject: String) -> bool {
        let Ok(mut last_written) = self.last_written.lock() else {
            return false;
        };
        let now = Instant::now();
        let recent = |at: &Instant| now.duration_since(*at) < self.interval;
        if last_written.get(&subject).is_some_and(recent) {
            return false;
        }
        if last_written.len() >= self.per_interval {
            last_written.retain(|_, at| recent(at));
        }
        if last_written.len() >= self.per_interval {
            metrics::counter!(self.skipped_metric).increment(1);
            return false;
        }
        last_written.insert(subject, now);
        true
    }

    /// Subjects remembered now.
    pub fn remembered(&self) -> usize {
        self.last_written.lock().map_or(0, |written| written.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_subject_per_interval_and_a_bounded_number_in_all() {
        let sample = AuditSample::new(Duration::from_secs(60), 3, "skipped");
        assert!(sample.due("a".into()));
        assert!(!sample.due("a".into()));
        let written = (0..100).filter(|n| sample.due(format!("s{n}"))).count();
        assert_eq!(written, 2);
        assert_eq!(sample.remembered(), 3);
    }
}
