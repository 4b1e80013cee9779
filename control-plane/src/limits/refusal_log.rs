//! Refusals the data plane reports with its usage: counted in metrics by kind, and written to
//! the audit log at most once per user and kind per interval, and at most a configured number
//! of times per interval in all, so neither a flood nor many users can fill the disk.

use std::time::Duration;

use serde_json::json;

use crate::changes::audit::AuditEntry;
use crate::domain::audit_sample::AuditSample;
use crate::limits::usage_reports::Refusals;
use crate::store::Store;

/// At most one audit entry per user and kind in this long (per control-plane replica).
pub const AUDIT_SAMPLE_INTERVAL: Duration = Duration::from_secs(60);

pub struct RefusalLog {
    sample: AuditSample,
}

impl RefusalLog {
    /// Writes at most `per_interval` entries per [`AUDIT_SAMPLE_INTERVAL`].
    pub fn new(per_interval: u32) -> Self {
        Self {
            sample: AuditSample::new(
                AUDIT_SAMPLE_INTERVAL,
                per_interval,
                "tollgate_refusal_audits_skipped_total",
            ),
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

    /// Whether `kind` may be audited for `user_id` now (see [`AuditSample::due`]).
    fn due(&self, user_id: &str, kind: &'static str) -> bool {
        self.sample.due(format!("{user_id} {kind}"))
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
        assert_eq!(log.sample.remembered(), 3);
    }
}
