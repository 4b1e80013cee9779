//! [`AllowanceStore`] on SQL: the `quota_allowances` table.

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};

use super::columns::{format_time, to_i64, to_u64};
use super::periods::{lock_period, Counted};
use super::{SqlStore, StoreError};
use crate::domain::ids::{AllowanceId, UserId};
use crate::domain::Timestamp;
use crate::limits::allowances::AllowanceSizing;
use crate::limits::quota::{QuotaName, Usage};

/// Ids settled per statement.
const SETTLED_PER_STATEMENT: usize = 100;

/// Who is granted allowances of which user's quota period, and for how long.
#[derive(Debug, Clone)]
pub struct AllowanceLease<'a> {
    pub user: &'a UserId,
    pub period_start: Timestamp,
    pub holder: &'a str,
    pub node_id: &'a str,
    pub granted_at: Timestamp,
    /// When an unsettled allowance stops holding its part of the quota.
    pub expires_at: Timestamp,
    /// The tenant pool the allowances count in, when the user has a tenant.
    pub pool: Option<PoolPeriod<'a>>,
}

/// One tenant's pool in one of its periods.
#[derive(Debug, Clone, Copy)]
pub struct PoolPeriod<'a> {
    pub tenant: &'a str,
    pub period_start: Timestamp,
}

/// One quota to grant an allowance of, under the id it gets if anything is granted.
#[derive(Debug, Clone)]
pub struct AllowanceGrant {
    pub id: AllowanceId,
    pub quota: QuotaName,
    pub sizing: AllowanceSizing,
    /// How the tenant pool limits the grant; `None` when the pool does not limit the quota.
    pub pool_sizing: Option<AllowanceSizing>,
}

/// Allowances granted out of users' quotas, held until settled or expired.
#[async_trait]
pub trait AllowanceStore: Send + Sync {
    /// Sizes each grant against what the period used and what unsettled, unexpired
    /// allowances hold, for the user and for the tenant pool alike, and records those of
    /// more than 0, in one transaction that serialises with every other acquire and usage
    /// report of the user's period and the pool's. Answers the amounts granted, in the
    /// order of `grants`.
    async fn acquire_allowances(
        &self,
        lease: &AllowanceLease<'_>,
        grants: &[AllowanceGrant],
    ) -> Result<Vec<u64>, StoreError>;
    /// What unsettled allowances of the period hold at `at` (requests, bytes).
    async fn reserved(
        &self,
        user: &UserId,
        period_start: Timestamp,
        at: Timestamp,
    ) -> Result<Usage, StoreError>;
    /// Forgets allowances that expired before `before`, settled or not; returns how many.
    async fn prune_allowances(&self, before: Timestamp) -> Result<u64, StoreError>;
}

#[async_trait]
impl AllowanceStore for SqlStore {
    async fn acquire_allowances(
        &self,
        lease: &AllowanceLease<'_>,
        grants: &[AllowanceGrant],
    ) -> Result<Vec<u64>, StoreError> {
        self.write(None, async |write| {
            let used = lock_period(
                write.rows(),
                Counted::User,
                lease.user.as_str(),
                lease.period_start,
            )
            .await?;
            let pool_limits = grants.iter().any(|grant| grant.pool_sizing.is_some());
            let pool_used = match lease.pool {
                Some(pool) if pool_limits => Some(
                    lock_period(
                        write.rows(),
                        Counted::Tenant,
                        pool.tenant,
                        pool.period_start,
                    )
                    .await?,
                ),
                _ => None,
            };
            let mut granted = Vec::with_capacity(grants.len());
            for grant in grants {
                let held = reserved_of(write.rows(), lease, grant.quota).await?;
                let mut amount = grant.sizing.grant(used.amount(grant.quota), held);
                if let (Some(pool), Some(pool_used), Some(sizing)) =
                    (lease.pool, pool_used, grant.pool_sizing)
                {
                    let pool_held =
                        pool_reserved_of(write.rows(), pool, lease.granted_at, grant.quota).await?;
                    amount = amount.min(sizing.grant(pool_used.amount(grant.quota), pool_held));
                }
                if amount > 0 {
                    insert(write.rows(), lease, grant, amount).await?;
                }
                granted.push(amount);
            }
            Ok(granted)
        })
        .await
    }

    async fn reserved(
        &self,
        user: &UserId,
        period_start: Timestamp,
        at: Timestamp,
    ) -> Result<Usage, StoreError> {
        let rows = sqlx::query(
            "SELECT quota, CAST(SUM(granted) AS BIGINT) AS held FROM quota_allowances \
             WHERE user_id = $1 AND period_start = $2 AND settled_at IS NULL \
             AND expires_at > $3 GROUP BY quota",
        )
        .bind(user.as_str())
        .bind(format_time(period_start))
        .bind(format_time(at))
        .fetch_all(&self.reads)
        .await?;
        let mut reserved = Usage::default();
        for row in rows {
            let held = to_u64(row.try_get("held")?);
            match QuotaName::metered(&row.try_get::<String, _>("quota")?) {
                Some(QuotaName::MonthlyRequests) => reserved.requests = held,
                Some(QuotaName::MonthlyBandwidth) => reserved.bytes = held,
                _ => {}
            }
        }
        Ok(reserved)
    }

    async fn prune_allowances(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.delete_before("DELETE FROM quota_allowances WHERE expires_at < $1", before)
            .await
    }
}

async fn reserved_of(
    tx: &mut AnyConnection,
    lease: &AllowanceLease<'_>,
    quota: QuotaName,
) -> Result<u64, StoreError> {
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(granted), 0) AS BIGINT) FROM quota_allowances \
         WHERE user_id = $1 AND quota = $2 AND period_start = $3 AND settled_at IS NULL \
         AND expires_at > $4",
    )
    .bind(lease.user.as_str())
    .bind(quota.as_str())
    .bind(format_time(lease.period_start))
    .bind(format_time(lease.granted_at))
    .fetch_one(tx)
    .await?;
    Ok(to_u64(held))
}

async fn pool_reserved_of(
    tx: &mut AnyConnection,
    pool: PoolPeriod<'_>,
    at: Timestamp,
    quota: QuotaName,
) -> Result<u64, StoreError> {
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(granted), 0) AS BIGINT) FROM quota_allowances \
         WHERE tenant_id = $1 AND quota = $2 AND tenant_period_start = $3 \
         AND settled_at IS NULL AND expires_at > $4",
    )
    .bind(pool.tenant)
    .bind(quota.as_str())
    .bind(format_time(pool.period_start))
    .bind(format_time(at))
    .fetch_one(tx)
    .await?;
    Ok(to_u64(held))
}

async fn insert(
    tx: &mut AnyConnection,
    lease: &AllowanceLease<'_>,
    grant: &AllowanceGrant,
    amount: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO quota_allowances (id, user_id, quota, period_start, holder, node_id, \
         granted, granted_at, expires_at, tenant_id, tenant_period_start) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(grant.id.as_str())
    .bind(lease.user.as_str())
    .bind(grant.quota.as_str())
    .bind(format_time(lease.period_start))
    .bind(lease.holder)
    .bind(lease.node_id)
    .bind(to_i64(amount))
    .bind(format_time(lease.granted_at))
    .bind(format_time(lease.expires_at))
    .bind(lease.pool.map(|pool| pool.tenant))
    .bind(lease.pool.map(|pool| format_time(pool.period_start)))
    .execute(tx)
    .await?;
    Ok(())
}

/// Marks the allowances settled at `at`; unknown and already settled ids change nothing.
pub(super) async fn settle(
    tx: &mut AnyConnection,
    ids: &[String],
    at: Timestamp,
) -> Result<(), StoreError> {
    for chunk in ids.chunks(SETTLED_PER_STATEMENT) {
        let placeholders: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!(
            "UPDATE quota_allowances SET settled_at = $1 \
             WHERE settled_at IS NULL AND id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(format_time(at));
        for id in chunk {
            query = query.bind(id.as_str());
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}
