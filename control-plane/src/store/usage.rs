//! [`UsageStore`] on SQL: the `usage_periods`, `usage_storage` and `usage_batches` tables,
//! and the settling of the allowances a batch names.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};

use super::columns::{format_time, to_u64};
use std::collections::BTreeMap;

use super::periods::{add_to_period, period_usage, Counted};
use super::sql::Write;
use super::{allowances, tenants, SqlStore, StoreError};
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Stale;
use crate::domain::ids::UserId;
use crate::domain::Timestamp;
use crate::limits::quota::Usage;
use crate::limits::quota::{EffectiveQuotas, Period, QuotaName};
use crate::limits::tenant_pool::TenantPool;

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
    /// The user's tenant pool, which counts the requests and bytes too.
    pub pool: Option<TenantPool>,
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
    /// stale, and each quota reached is audited; a tenant pool reached makes every user of
    /// the tenant stale.
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
    /// The requests and bytes a tenant's users used in the pool's period starting at
    /// `period_start`.
    async fn pool_usage(&self, tenant: &str, period_start: Timestamp) -> Result<Usage, StoreError>;
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
            // The feed's and the audit log's rows are taken last, after every user's and then
            // every tenant's period row, so that no two writers wait on each other.
            let mut reached = Vec::new();
            let mut marks = Marks::default();
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
                marks.stale.push(entry.user.clone());
                for quota in crossed {
                    marks.audits.push(AuditEntry::new(
                        None,
                        "quota.exhausted",
                        entry.user.as_str(),
                        exhaustion(quota, entry.period),
                    ));
                    reached.push((entry.user.clone(), quota));
                }
            }
            for (pool, added) in pooled(entries) {
                add_to_pool(write, &pool, added, &mut marks).await?;
            }
            for user in marks.stale {
                write.stale(&Stale::User(user), at).await?;
            }
            for audit in &marks.audits {
                write.audit(audit).await?;
            }
            Ok(UsageOutcome::Applied(reached))
        })
        .await
    }

    async fn prune_usage_batches(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.delete_before("DELETE FROM usage_batches WHERE applied_at < $1", before)
            .await
    }

    async fn pool_usage(&self, tenant: &str, period_start: Timestamp) -> Result<Usage, StoreError> {
        let row = sqlx::query(
            "SELECT requests, bytes FROM tenant_usage_periods \
             WHERE tenant_id = $1 AND period_start = $2",
        )
        .bind(tenant)
        .bind(format_time(period_start))
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map_or(Ok(Usage::default()), period_usage)
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

/// The usage of `entries` summed per tenant pool, in tenant order.
fn pooled(entries: &[UsageEntry]) -> Vec<(TenantPool, Usage)> {
    let mut pools = BTreeMap::<(&str, Timestamp), (TenantPool, Usage)>::new();
    for entry in entries {
        let Some(pool) = &entry.pool else { continue };
        let (_, added) = pools
            .entry((pool.tenant.as_str(), pool.period.start))
            .or_insert_with(|| (pool.clone(), Usage::default()));
        added.requests = added.requests.saturating_add(entry.requests);
        added.bytes = added.bytes.saturating_add(entry.bytes);
    }
    pools.into_values().collect()
}

/// What a batch marks once its usage is counted: users whose cached state is stale, and
/// audit entries.
#[derive(Default)]
struct Marks {
    stale: Vec<UserId>,
    audits: Vec<AuditEntry>,
}

/// The details of a `*quota_exhausted` audit entry.
fn exhaustion(quota: QuotaName, period: Period) -> serde_json::Value {
    serde_json::json!({
        "quota": quota.as_str(),
        "period_start": format_time(period.start),
        "period_end": format_time(period.end),
    })
}

/// Adds a pool's share of a batch; a pool quota reached makes every user of the tenant
/// stale, so that Envoys learn it without asking, and is audited in the tenant.
async fn add_to_pool(
    write: &mut Write,
    pool: &TenantPool,
    added: Usage,
    marks: &mut Marks,
) -> Result<(), StoreError> {
    let after = add_to_period(
        write.rows(),
        Counted::Tenant,
        &pool.tenant,
        pool.period.start,
        added,
    )
    .await?;
    let before = Usage {
        requests: after.requests.saturating_sub(added.requests),
        bytes: after.bytes.saturating_sub(added.bytes),
        storage_bytes: 0,
    };
    let crossed = pool.quotas.crossed(&before, &after);
    if crossed.is_empty() {
        return Ok(());
    }
    let users = tenants::user_ids(write, &pool.tenant, "AND status <> 'deleted'").await?;
    marks.stale.extend(users);
    for quota in crossed {
        marks.audits.push(
            AuditEntry::new(
                None,
                "tenant.quota_exhausted",
                &pool.tenant,
                exhaustion(quota, pool.period),
            )
            .in_tenant(Some(&pool.tenant)),
        );
    }
    Ok(())
}

/// Adds one entry's usage; returns the user's usage after it.
async fn add(tx: &mut AnyConnection, entry: &UsageEntry) -> Result<Usage, StoreError> {
    let added = Usage {
        requests: entry.requests,
        bytes: entry.bytes,
        storage_bytes: 0,
    };
    let period = add_to_period(
        &mut *tx,
        Counted::User,
        entry.user.as_str(),
        entry.period.start,
        added,
    )
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
        storage_bytes: to_u64(storage),
        ..period
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
