//! [`AuditLog`] on SQL: the `audit_log` table.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::columns::{format_time, from_json, required_time, to_i64, to_u64};
use super::{Page, SqlStore, StoreError, Written};
use crate::changes::audit::AuditEntry;
use crate::domain::ids::{AuditId, UserId};

/// The audit log. Every write adds its own entry; this adds entries about something that
/// changed nothing stored.
#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn audit_entries(&self, offset: u64, limit: u64) -> Result<Page<AuditEntry>, StoreError>;
    /// An entry about something that changed nothing stored (a refusal the data plane saw).
    async fn record_audit(&self, entry: &AuditEntry) -> Written;
}

#[async_trait]
impl AuditLog for SqlStore {
    async fn audit_entries(&self, offset: u64, limit: u64) -> Result<Page<AuditEntry>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.reads)
            .await?;
        let rows = sqlx::query(
            "SELECT id, at, actor_user_id, action, target, details FROM audit_log \
             ORDER BY at DESC, id DESC LIMIT $1 OFFSET $2",
        )
        .bind(to_i64(limit))
        .bind(to_i64(offset))
        .fetch_all(&self.reads)
        .await?;
        Ok(Page {
            items: rows.iter().map(entry_from_row).collect::<Result<_, _>>()?,
            total: to_u64(total),
        })
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Written {
        self.write(entry, async |_| Ok(())).await
    }
}

/// Adds `entry` in the transaction of the write it records.
pub(super) async fn insert(tx: &mut AnyConnection, entry: &AuditEntry) -> Written {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor_user_id, action, target, details) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.id.as_str())
    .bind(format_time(entry.at))
    .bind(entry.actor_user_id.as_ref().map(UserId::as_str))
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(entry.details.to_string())
    .execute(tx)
    .await?;
    Ok(())
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        id: AuditId::from_string(row.try_get("id")?),
        at: required_time(row, "at")?,
        actor_user_id: row
            .try_get::<Option<String>, _>("actor_user_id")?
            .map(UserId::from_string),
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        details: from_json(row, "details")?,
    })
}
