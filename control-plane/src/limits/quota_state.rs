//! A user's quotas as they stand now: the settings that apply, the current period and
//! what was used in it.

use std::iter;

use crate::accounts::user::User;
use crate::domain::Timestamp;
use crate::limits::inherited::Inherited;
use crate::limits::quota::{EffectiveQuotas, Period, QuotaName, QuotaPolicy, Quotas, Usage};
use crate::limits::tenant_pool::TenantPool;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct QuotaState {
    pub quotas: EffectiveQuotas,
    pub period: Period,
    pub usage: Usage,
    /// The user's tenant pool and what its users used, when the tenant limits one.
    pub pool: Option<(TenantPool, Usage)>,
}

impl QuotaState {
    pub async fn load(
        store: &dyn Store,
        policy: &QuotaPolicy,
        user: &User,
        inherited: &Inherited,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let quotas = effective_quotas(policy, user, inherited);
        let period = Period::containing(now, quotas.reset_day, policy.time_zone);
        let usage = store.usage(&user.id, period.start).await?;
        let pool = match &inherited.tenant {
            Some(tenant) => {
                let pool = TenantPool::of(tenant, policy, now);
                if pool.is_limited() {
                    let used = store.pool_usage(&pool.tenant, pool.period.start).await?;
                    Some((pool, used))
                } else {
                    None
                }
            }
            None => None,
        };
        Ok(Self {
            quotas,
            period,
            usage,
            pool,
        })
    }

    /// Each used-up quota, the user's own or the tenant pool's, with the time it resets
    /// (the later of the two when both are used up); `None` for one that does not reset.
    pub fn exhausted(&self) -> Vec<(QuotaName, Option<Timestamp>)> {
        let mut exhausted: Vec<(QuotaName, Option<Timestamp>)> = self
            .quotas
            .exhausted(&self.usage)
            .into_iter()
            .map(|quota| (quota, quota.resets().then_some(self.period.end)))
            .collect();
        if let Some((pool, used)) = &self.pool {
            for quota in pool.quotas.exhausted(used) {
                match exhausted.iter_mut().find(|(name, _)| *name == quota) {
                    Some((_, resets)) => *resets = (*resets).max(Some(pool.period.end)),
                    None => exhausted.push((quota, Some(pool.period.end))),
                }
            }
        }
        exhausted
    }
}

/// The user's own settings, then their groups' in priority order, then their tenant's, then
/// the defaults.
pub fn effective_quotas(
    policy: &QuotaPolicy,
    user: &User,
    inherited: &Inherited,
) -> EffectiveQuotas {
    let layers: Vec<&Quotas> = iter::once(&user.quotas).chain(inherited.quotas()).collect();
    EffectiveQuotas::resolve(&layers, &policy.defaults)
}
