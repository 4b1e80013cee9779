//! [`HealthCheckStore`] on SQL: what the health checker writes of the backends' health (a
//! status change at once, everything else in one batch now and then), and the
//! `health_checkers` table of the replicas that share the checks.

use async_trait::async_trait;
use sqlx::Row;

use super::backends::bind_health;
use super::columns::{format_time, AnyQuery};
use super::{SqlStore, StoreError, Written};
use crate::changes::audit::AuditEntry;
use crate::changes::routing::Rerouted;
use crate::routing::backend::CheckedHealth;

/// Backends per statement of a batch, well under both databases' limits on parameters.
const BACKENDS_PER_STATEMENT: usize = 500;

/// A replica that checks backends, and until when (Unix ms) it counts as alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerLease {
    pub checker: String,
    pub expires_at_ms: i64,
}

/// The health checker's writes, and the replicas sharing the checks.
#[async_trait]
pub trait HealthCheckStore: Send + Sync {
    /// Records backends' changed health statuses, each with its audit entry, in one write,
    /// and reroutes; answers which were recorded: not those changed or removed since they
    /// were checked.
    async fn record_health_changes(
        &self,
        changes: &[(CheckedHealth, AuditEntry)],
    ) -> Result<Vec<bool>, StoreError>;
    /// Records the latest checks of many backends in one write, leaving out backends changed
    /// or removed since they were checked; answers how many were recorded.
    async fn record_health_summary(&self, checked: &[CheckedHealth]) -> Result<u64, StoreError>;
    /// Announces that `checker` is alive until `expires_at_ms`.
    async fn renew_checker_lease(&self, checker: &str, expires_at_ms: i64) -> Written;
    /// Every replica that has announced itself, expired or not.
    async fn checker_leases(&self) -> Result<Vec<CheckerLease>, StoreError>;
    /// Forgets the replicas whose leases expired before `now_ms`.
    async fn remove_expired_checkers(&self, now_ms: i64) -> Written;
}

#[async_trait]
impl HealthCheckStore for SqlStore {
    async fn record_health_changes(
        &self,
        changes: &[(CheckedHealth, AuditEntry)],
    ) -> Result<Vec<bool>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        self.write(None, async |write| {
            let mut recorded = Vec::with_capacity(changes.len());
            for (checked, audit) in changes {
                let update = sqlx::query(
                    "UPDATE backends SET health_status = $2, consecutive_failures = $3, \
                     consecutive_successes = $4, last_checked_at = $5, last_latency_ms = $6, \
                     last_error = $7 WHERE id = $1 AND updated_at = $8",
                );
                let updated = bind_checked(update, checked).execute(write.rows()).await?;
                let touched = updated.rows_affected() > 0;
                if touched {
                    write.audit(audit).await?;
                    write
                        .reroutes(&Rerouted::Backend(checked.id.clone()), audit.at)
                        .await?;
                }
                recorded.push(touched);
            }
            Ok(recorded)
        })
        .await
    }

    async fn record_health_summary(&self, checked: &[CheckedHealth]) -> Result<u64, StoreError> {
        if checked.is_empty() {
            return Ok(0);
        }
        self.write(None, async |write| {
            let mut recorded = 0;
            for chunk in checked.chunks(BACKENDS_PER_STATEMENT) {
                let sql = summary_statement(chunk.len());
                let update = chunk
                    .iter()
                    .fold(sqlx::query(&sql), |query, one| bind_checked(query, one));
                recorded += update.execute(write.rows()).await?.rows_affected();
            }
            Ok(recorded)
        })
        .await
    }

    async fn renew_checker_lease(&self, checker: &str, expires_at_ms: i64) -> Written {
        self.write(None, async |write| {
            sqlx::query(
                "INSERT INTO health_checkers (id, expires_at_ms) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
            )
            .bind(checker)
            .bind(expires_at_ms)
            .execute(write.rows())
            .await?;
            Ok(())
        })
        .await
    }

    async fn checker_leases(&self) -> Result<Vec<CheckerLease>, StoreError> {
        self.select_all(
            "SELECT id, expires_at_ms FROM health_checkers ORDER BY id",
            None,
            |row| {
                Ok(CheckerLease {
                    checker: row.try_get("id")?,
                    expires_at_ms: row.try_get("expires_at_ms")?,
                })
            },
        )
        .await
    }

    async fn remove_expired_checkers(&self, now_ms: i64) -> Written {
        self.write(None, async |write| {
            sqlx::query("DELETE FROM health_checkers WHERE expires_at_ms < $1")
                .bind(now_ms)
                .execute(write.rows())
                .await?;
            Ok(())
        })
        .await
    }
}

/// One UPDATE of `rows` backends from a VALUES list, whose columns both databases name
/// `column1`, `column2`, ... in the order [`bind_checked`] binds them.
fn summary_statement(rows: usize) -> String {
    const COLUMNS: usize = 8;
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let first = row * COLUMNS + 1;
            let params: Vec<String> = (first..first + COLUMNS).map(|n| format!("${n}")).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "UPDATE backends SET health_status = v.column2, consecutive_failures = v.column3, \
         consecutive_successes = v.column4, last_checked_at = v.column5, \
         last_latency_ms = v.column6, last_error = v.column7 \
         FROM (VALUES {}) AS v WHERE backends.id = v.column1 AND backends.updated_at = v.column8",
        values.join(", ")
    )
}

/// Binds a checked backend: id, status to last error, then the settings' time.
fn bind_checked<'q>(query: AnyQuery<'q>, checked: &'q CheckedHealth) -> AnyQuery<'q> {
    bind_health(query.bind(checked.id.as_str()), &checked.health)
        .bind(format_time(checked.settings_updated_at))
}
