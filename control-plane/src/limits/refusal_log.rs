//! Refusals the data plane reports with its usage: counted in metrics by kind, and written to
//! the audit log at most once per user and kind per interval, and at most a configured number
//! of times per interval in all, so neither a flood nor many users can fill the disk. Only the
//! entries written within the last interval are remembered, so memory is bounded as well.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::changes::audit::AuditEntry;
use crate::limits::usage_reports::Refusals;
use crate::store::Store;

/// At most one audit entry per user and kind in this long (per control-plane replica).
pub const AUDIT_SAMPLE_INTERVAL: Duration = Duration::from_secs(60);

pub struct RefusalLog {
    /// The most entries written per [`AUDIT_SAMPLE_INTERVAL`].
    per_interval: usize,
    /// When each user and kind was last written, for the entries of the last interval.
    last_written: Mutex<HashMap<(String, &'static str), Instant>>,
}

impl RefusalLog {
    /// Writes at most `per_interval` entries per [`AUDIT_SAMPLE_INTERVAL`].
    pub fn new(per_interval: u32) -> Self {
        Self {
            per_interval: usize::try_from(per_interval).unwrap_or(usize::MAX),
            last_written: Mutex::default(),
        }
    }

    /// Counts `refused` and, when the sample interval allows, audits it.
    pub async fn record(&self, store: &dyn Store, user_id: &str, refused: &Refusals) {
        let limited: u64 = refused.rate_limited.values().sum();
        for (level, count) in &refused.rate_limited {
            metrics::counter!("tollgate_rate_limited_total", "level" => *level).increment(*count);
        }
        metrics::counter!("tollgate_quota_refused_total").increment(refused.quota);
        let entries = [
            (limited > 0 && self.due(user_id, "rate_limit.exceeded")).then(|| {
                AuditEntry::new(
                    None,
                    "rate_limit.exceeded",
                    user_id,
                    json!({ "refused": limited, "by_level": refused.rate_limited }),
                )
            }),
            (refused.quota > 0 && self.due(user_id, "quota.refused")).then(|| {
                AuditEntry::new(
                    None,
                    "quota.refused",
                    user_id,
                    json!({ "refused": refused.quota }),
                )
            }),
        ];
        for entry in entries.iter().flatten() {
            if let Err(error) = store.record_audit(entry).await {
                tracing::warn!(%error, action = %entry.action, "could not audit a refusal");
            }
        }
    }

    /// Whether `kind` may be audited for `user_id` now; if so, from now on it is not, for
    /// one interval. Refused as well once the interval's entries are all written.
    fn due(&self, user_id: &str, kind: &'static str) -> bool {
        let Ok(mut last_written) = self.last_written.lock() else {
            return false;
        };
        let now = Instant::now();
        let recent = |at: &Instant| now.duration_since(*at) < AUDIT_SAMPLE_INTERVAL;
        let key = (user_id.to_string(), kind);
        if last_written.get(&key).is_some_and(recent) {
            return false;
        }
        if last_written.len() >= self.per_interval {
            last_written.retain(|_, at| recent(at));
        }
        if last_written.len() >= self.per_interval {
            metrics::counter!("tollgate_refusal_audits_skipped_total").increment(1);
            return false;
        }
        last_written.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_user_and_kind_per_interval() {
        let log = RefusalLog::new(10);
        assert!(log.due("u_a", "rate_limit.exceeded"));
        assert!(!log.due("u_a", "rate_limit.exceeded"));
        assert!(log.due("u_a", "quota.refused"));
        assert!(log.due("u_b", "rate_limit.exceeded"));
    }

    #[test]
    fn entries_per_interval_and_memory_are_bounded() {
        let log = RefusalLog::new(3);
        let written = (0..100)
            .filter(|n| log.due(&format!("u_{n}"), "quota.refused"))
            .count();
        assert_eq!(written, 3);
        assert_eq!(log.last_written.lock().expect("lock").len(), 3);
    }
}
