//! `AcquireAllowances`: parts of users' quotas granted to Envoy workers, recorded in the
//! database before they are answered.

use chrono::Duration;
use tonic::Status;

use super::{unavailable, FilterApi};
use crate::accounts::user::{User, UserStatus};
use crate::domain::ids::AllowanceId;
use crate::domain::Timestamp;
use crate::limits::allowances::AllowanceAsk;
use crate::limits::inherited::Inherited;
use crate::limits::quota::{Period, QuotaName};
use crate::limits::quota_state::effective_quotas;
use crate::limits::tenant_pool::TenantPool;
use crate::proto::v1;
use crate::store::{AllowanceGrant, AllowanceLease, PoolPeriod, StoreError};

const MS_PER_SEC: u32 = 1000;

impl FilterApi {
    pub(super) async fn acquire_allowances(
        &self,
        request: v1::AcquireAllowancesRequest,
    ) -> Result<v1::AcquireAllowancesResponse, Status> {
        let ask = AllowanceAsk::from_request(request)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let now = crate::domain::now();
        let allowances = match self.grantee(&ask).await.map_err(unavailable)? {
            Some(user) => self.grant(&ask, &user, now).await.map_err(unavailable)?,
            None => nothing_for_anyone(&ask, self.default_period(now)),
        };
        for (&quota, allowance) in ask.quotas.iter().zip(&allowances) {
            count(quota, allowance);
        }
        Ok(v1::AcquireAllowancesResponse { allowances })
    }

    /// The user the ask is for; `None` for an unknown or deleted one.
    async fn grantee(&self, ask: &AllowanceAsk) -> Result<Option<User>, StoreError> {
        match self.store.user(&ask.user).await {
            Ok(user) if user.status != UserStatus::Deleted => Ok(Some(user)),
            Ok(_) | Err(StoreError::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One allowance per quota asked: unlimited, or what the store granted of it.
    async fn grant(
        &self,
        ask: &AllowanceAsk,
        user: &User,
        now: Timestamp,
    ) -> Result<Vec<v1::Allowance>, StoreError> {
        let inherited = Inherited::load(self.store.as_ref(), user).await?;
        let quota_policy = self.quotas.get();
        let quotas = effective_quotas(&quota_policy, user, &inherited);
        let period = Period::containing(now, quotas.reset_day, quota_policy.time_zone);
        // Allowances name the pool even while it is unlimited, so that they count against a
        // limit set during the period.
        let pool = inherited
            .tenant
            .as_ref()
            .map(|tenant| TenantPool::of(tenant, &quota_policy, now));
        let policy = &quota_policy.allowances;
        let grants: Vec<AllowanceGrant> = ask
            .quotas
            .iter()
            .filter_map(|&quota| {
                policy.sizing(quota, &quotas).map(|sizing| AllowanceGrant {
                    id: AllowanceId::generate(),
                    quota,
                    sizing,
                    pool_sizing: pool
                        .as_ref()
                        .and_then(|pool| policy.sizing(quota, &pool.quotas)),
                })
            })
            .collect();
        let amounts = if grants.is_empty() {
            Vec::new()
        } else {
            let lease = AllowanceLease {
                user: &user.id,
                period_start: period.start,
                holder: &ask.holder,
                node_id: &ask.node_id,
                granted_at: now,
                expires_at: now + Duration::seconds(policy.timeout_secs.into()),
                pool: pool.as_ref().map(|pool| PoolPeriod {
                    tenant: &pool.tenant,
                    period_start: pool.period.start,
                }),
            };
            self.store.acquire_allowances(&lease, &grants).await?
        };
        let mut granted = grants.iter().zip(amounts).peekable();
        // An allowance admits within the period it was granted in, the user's and the
        // pool's: the next one's usage holds no reservation for it. A refusal holds until
        // both have reset, as either may be the one used up.
        let (period_end, refused_until) = match pool.as_ref().filter(|pool| pool.is_limited()) {
            Some(pool) => (
                pool.period.end.min(period.end),
                pool.period.end.max(period.end),
            ),
            None => (period.end, period.end),
        };
        let until_period_end_ms =
            u32::try_from((period_end - now).num_milliseconds().max(0)).unwrap_or(u32::MAX);
        let admit_for_ms = policy
            .admit_secs
            .saturating_mul(MS_PER_SEC)
            .min(until_period_end_ms);
        Ok(ask
            .quotas
            .iter()
            .map(|&quota| {
                let base = answer(quota, refused_until);
                match granted.next_if(|(grant, _)| grant.quota == quota) {
                    Some((grant, amount)) if amount > 0 => v1::Allowance {
                        allowance_id: grant.id.to_string(),
                        granted: amount,
                        admit_for_ms,
                        resets_at: period_end.timestamp(),
                        ..base
                    },
                    Some(_) => base,
                    None => v1::Allowance {
                        unlimited: true,
                        ..base
                    },
                }
            })
            .collect())
    }

    /// The period of a user who sets no reset day of their own.
    fn default_period(&self, now: Timestamp) -> Period {
        let policy = self.quotas.get();
        Period::containing(now, policy.defaults.reset_day, policy.time_zone)
    }
}

/// Nothing granted of the quota, which resets at `resets_at`.
fn answer(quota: QuotaName, resets_at: Timestamp) -> v1::Allowance {
    v1::Allowance {
        quota: quota.as_str().to_string(),
        resets_at: resets_at.timestamp(),
        ..v1::Allowance::default()
    }
}

fn nothing_for_anyone(ask: &AllowanceAsk, period: Period) -> Vec<v1::Allowance> {
    ask.quotas
        .iter()
        .map(|&quota| answer(quota, period.end))
        .collect()
}

fn count(quota: QuotaName, allowance: &v1::Allowance) {
    let quota = quota.as_str();
    if allowance.unlimited {
        return;
    }
    if allowance.granted > 0 {
        metrics::counter!("tollgate_allowances_granted_total", "quota" => quota).increment(1);
    } else {
        metrics::counter!("tollgate_allowance_refusals_total", "quota" => quota).increment(1);
    }
}
