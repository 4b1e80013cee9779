//! Refusals the data plane reports with its usage: counted in metrics by kind, and written to
//! the audit log at most once per user and kind per interval, so a flood cannot fill the disk.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::changes::audit::AuditEntry;
use crate::limits::usage_reports::Refusals;
use crate::store::Store;

/// At most one audit entry per user and kind in this long (per control-plane replica).
pub const AUDIT_SAMPLE_INTERVAL: Duration = Duration::from_secs(60);
/// Users remembered for sampling; the oldest are forgotten beyond this.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Default)]
pub struct RefusalLog {
    last_written: Mutex<HashMap<(String, &'static str), Instant>>,
}

impl RefusalLog {
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
    /// one interval.
    fn due(&self, user_id: &str, kind: &'static str) -> bool {
        let Ok(mut last_written) = self.last_written.lock() else {
            return false;
        };
        let now = Instant::now();
        let key = (user_id.to_string(), kind);
        if last_written
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < AUDIT_SAMPLE_INTERVAL)
        {
            return false;
        }
        if last_written.len() >= MAX_REMEMBERED {
            last_written.retain(|_, at| now.duration_since(*at) < AUDIT_SAMPLE_INTERVAL);
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
        let log = RefusalLog::default();
        assert!(log.due("u_a", "rate_limit.exceeded"));
        assert!(!log.due("u_a", "rate_limit.exceeded"));
        assert!(log.due("u_a", "quota.refused"));
        assert!(log.due("u_b", "rate_limit.exceeded"));
    }
}
