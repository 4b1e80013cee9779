//! A user's quotas as they stand now: the settings that apply, the current period and
//! what was used in it.

use std::iter;

use crate::accounts::user::User;
use crate::domain::Timestamp;
use crate::limits::inherited::Inherited;
use crate::limits::quota::{EffectiveQuotas, Period, QuotaName, QuotaPolicy, Quotas, Usage};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct QuotaState {
    pub quotas: EffectiveQuotas,
    pub period: Period,
    pub usage: Usage,
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
        Ok(Self {
            quotas,
            period,
            usage,
        })
    }

    /// Each used-up quota with the time it resets; `None` for one that does not reset.
    pub fn exhausted(&self) -> Vec<(QuotaName, Option<Timestamp>)> {
        self.quotas
            .exhausted(&self.usage)
            .into_iter()
            .map(|quota| (quota, quota.resets().then_some(self.period.end)))
            .collect()
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
