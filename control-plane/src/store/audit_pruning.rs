//! Pruning the audit log: the oldest entries go, and a sealed checkpoint (see
//! `changes::audit_chain`) records the place and hash of the last one pruned, from which the
//! kept chain still verifies.

use serde_json::json;

use super::columns::format_time;
use super::{SqlStore, StoreError};
use crate::changes::audit::AuditEntry;
use crate::domain::Timestamp;

/// What a pruning removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub entries: u64,
    /// The place of the last entry pruned, where the kept chain now starts after.
    pub through_seq: i64,
}

/// Removes every entry older than `before` in one write, with the checkpoint and an
/// `audit.pruned` entry; `None` when there is none. Replicas pruning at once take turns on the
/// chain's end, and the later finds nothing left.
pub(super) async fn prune(
    store: &SqlStore,
    before: Timestamp,
    retention_days: u32,
) -> Result<Option<Pruned>, StoreError> {
    store
        .write(None, async |write| {
            // Locks the chain's end until commit: no entry joins it, nor another pruning runs,
            // while the checkpoint is taken.
            sqlx::query("UPDATE audit_chain SET seq = seq WHERE id = 1")
                .execute(write.rows())
                .await?;
            let last: Option<(i64, String)> = sqlx::query_as(
                "SELECT seq, hash FROM audit_log \
                 WHERE seq = (SELECT MAX(seq) FROM audit_log WHERE at < $1)",
            )
            .bind(format_time(before))
            .fetch_optional(write.rows())
            .await?;
            let Some((through_seq, hash)) = last else {
                return Ok(None);
            };
            let entries = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
                .bind(through_seq)
                .execute(write.rows())
                .await?
                .rows_affected();
            let seal = write.audit_chain().seal_checkpoint(through_seq, &hash);
            sqlx::query(
                "UPDATE audit_chain SET checkpoint_seq = $1, checkpoint_hash = $2, \
                 checkpoint_seal = $3, checkpoint_at = $4 WHERE id = 1",
            )
            .bind(through_seq)
            .bind(&hash)
            .bind(&seal)
            .bind(format_time(crate::domain::now()))
            .execute(write.rows())
            .await?;
            let audit = AuditEntry::new(
                None,
                "audit.pruned",
                "audit_log",
                json!({
                    "entries": entries,
                    "through_seq": through_seq,
                    "before": before,
                    "retention_days": retention_days,
                }),
            );
            write.audit(&audit).await?;
            Ok(Some(Pruned {
                entries,
                through_seq,
            }))
        })
        .await
}
