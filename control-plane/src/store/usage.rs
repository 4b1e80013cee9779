//! [`UsageStore`] on SQL: the `usage_periods`, `usage_storage` and `usage_batches` tables,
//! and the settling of the allowances a batch names.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};

use super::columns::{format_time, to_i64, to_u64};
use super::{allowances, SqlStore, StoreError};
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Stale;
use crate::domain::ids::UserId;
use crate::domain::Timestamp;
use crate::limits::quota::Usage;
use crate::limits::quota::{EffectiveQuotas, Period, QuotaName};

/// Usage of one user to add, with the quotas that apply to it in its period.
#[derive(Debug, Clone)]
pub struct UsageEntry {
    pub user: UserId,
    pub period: Period,
    pub quotas: EffectiveQuotas,
    pub requests: u64,
    pub bytes: u64,
    /// Storage added (positive) or freed (negative); the total never drops below 0.
    pub storage_bytes: i64,
}

/// What applying a usage batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageOutcome {
    /// The batch had been applied before; nothing changed.
    AlreadyApplied,
    /// The batch was applied; these quotas were reached by it.
    Applied(Vec<(UserId, QuotaName)>),
}

/// What users consumed against their quotas.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Applies a usage batch once, all of it or nothing, and settles the allowances it
    /// names with it. A user whose usage reaches a quota (or falls back below one) becomes
    /// stale, and each quota reached is audited.
    async fn apply_usage(
        &self,
        batch_id: &str,
        entries: &[UsageEntry],
        settled_allowances: &[String],
        at: Timestamp,
    ) -> Result<UsageOutcome, StoreError>;
    /// Forgets applied batch ids older than `before`; returns how many.
    async fn prune_usage_batches(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// The user's requests and bytes in the period starting at `period_start`, and the
    /// storage they hold now.
    async fn usage(&self, user: &UserId, period_start: Timestamp) -> Result<Usage, StoreError>;
}

#[async_trait]
impl UsageStore for SqlStore {
    async fn apply_usage(
        &self,
        batch_id: &str,
        entries: &[UsageEntry],
        settled_allowances: &[String],
        at: Timestamp,
    ) -> Result<UsageOutcome, StoreError> {
        self.write(None, async |write| {
            let first_time = sqlx::query(
                "INSERT INTO usage_batches (batch_id, applied_at) VALUES ($1, $2) \
                 ON CONFLICT (batch_id) DO NOTHING",
            )
            .bind(batch_id)
            .bind(format_time(at))
            .execute(write.rows())
            .await?;
            if first_time.rows_affected() == 0 {
                return Ok(UsageOutcome::AlreadyApplied);
            }
            allowances::settle(write.rows(), settled_allowances, at).await?;
            let mut reached = Vec::new();
            for entry in entries {
                let after = add(write.rows(), entry).await?;
                let before = before(entry, &after);
                let crossed = entry.quotas.crossed(&before, &after);
                // Freed storage can end an exhaustion: Envoys must learn that too.
                let released =
                    entry.quotas.exhausted(&after).len() < entry.quotas.exhausted(&before).len();
                if crossed.is_empty() && !released {
                    continue;
                }
                write.stale(&Stale::User(entry.user.clone()), at).await?;
                for quota in crossed {
                    let audit = AuditEntry::new(
                        None,
                        "quota.exhausted",
                        entry.user.as_str(),
                        serde_json::json!({
                            "quota": quota.as_str(),
                            "period_start": format_time(entry.period.start),
                            "period_end": format_time(entry.period.end),
                        }),
                    );
                    write.audit(&audit).await?;
                    reached.push((entry.user.clone(), quota));
                }
            }
            Ok(UsageOutcome::Applied(reached))
        })
        .await
    }

    async fn prune_usage_batches(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.delete_before("DELETE FROM usage_batches WHERE applied_at < $1", before)
            .await
    }

    async fn usage(&self, user: &UserId, period_start: Timestamp) -> Result<Usage, StoreError> {
        let period = sqlx::query(
            "SELECT requests, bytes FROM usage_periods WHERE user_id = $1 AND period_start = $2",
        )
        .bind(user.as_str())
        .bind(format_time(period_start))
        .fetch_optional(&self.reads)
        .await?;
        let storage: Option<i64> =
            sqlx::query_scalar("SELECT bytes FROM usage_storage WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(&self.reads)
                .await?;
        let (requests, bytes) = match period {
            Some(row) => (
                to_u64(row.try_get("requests")?),
                to_u64(row.try_get("bytes")?),
            ),
            None => (0, 0),
        };
        Ok(Usage {
            requests,
            bytes,
            storage_bytes: storage.map_or(0, to_u64),
        })
    }
}

/// Adds one entry's usage; returns the user's usage after it.
async fn add(tx: &mut AnyConnection, entry: &UsageEntry) -> Result<Usage, StoreError> {
    let period = sqlx::query(
        "INSERT INTO usage_periods (user_id, period_start, requests, bytes) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, period_start) DO UPDATE \
         SET requests = usage_periods.requests + excluded.requests, \
         bytes = usage_periods.bytes + excluded.bytes \
         RETURNING requests, bytes",
    )
    .bind(entry.user.as_str())
    .bind(format_time(entry.period.start))
    .bind(to_i64(entry.requests))
    .bind(to_i64(entry.bytes))
    .fetch_one(&mut *tx)
    .await?;
    let storage: i64 = sqlx::query_scalar(
        "INSERT INTO usage_storage (user_id, bytes) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET bytes = CASE \
         WHEN usage_storage.bytes + $3 < 0 THEN 0 ELSE usage_storage.bytes + $3 END \
         RETURNING bytes",
    )
    .bind(entry.user.as_str())
    .bind(entry.storage_bytes.max(0))
    .bind(entry.storage_bytes)
    .fetch_one(tx)
    .await?;
    Ok(Usage {
        requests: to_u64(period.try_get("requests")?),
        bytes: to_u64(period.try_get("bytes")?),
        storage_bytes: to_u64(storage),
    })
}

/// The user's usage before `entry` was added, from what it is after.
fn before(entry: &UsageEntry, after: &Usage) -> Usage {
    // Only growth can reach a quota, and growth is never cut by the floor at 0.
    let storage_change = entry.storage_bytes.unsigned_abs();
    Usage {
        requests: after.requests.saturating_sub(entry.requests),
        bytes: after.bytes.saturating_sub(entry.bytes),
        storage_bytes: if entry.storage_bytes < 0 {
            after.storage_bytes.saturating_add(storage_change)
        } else {
            after.storage_bytes.saturating_sub(storage_change)
        },
    }
}
