//! A tenant's monthly quotas as one pool its users share: every request and byte of every
//! user of the tenant counts against it, whatever their own quotas, in the tenant's own
//! period. (Users also inherit the same figures as their own quotas below theirs; the pool
//! is what makes them a total.) Storage is held per user and is not pooled.

use crate::accounts::tenant::Tenant;
use crate::domain::Timestamp;
use crate::limits::quota::{EffectiveQuotas, Period, QuotaPolicy};

/// One tenant's pool in the period that contains a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPool {
    pub tenant: String,
    /// The tenant's own request and bandwidth quotas; `None` is no pool limit.
    pub quotas: EffectiveQuotas,
    pub period: Period,
}

impl TenantPool {
    /// The pool `tenant`'s users count against at `now`; a tenant with no quota of its own
    /// still counts its usage, for its statistics and for a quota set later in the period.
    pub fn of(tenant: &Tenant, policy: &QuotaPolicy, now: Timestamp) -> Self {
        let own = &tenant.quotas;
        let reset_day = own.reset_day.unwrap_or(policy.defaults.reset_day);
        Self {
            tenant: tenant.id.clone(),
            quotas: EffectiveQuotas {
                monthly_requests: own.monthly_requests,
                monthly_bandwidth_mb: own.monthly_bandwidth_mb,
                storage_quota_mb: None,
                reset_day,
            },
            period: Period::containing(now, reset_day, policy.time_zone),
        }
    }

    /// Whether any request or byte is limited by the pool.
    pub fn is_limited(&self) -> bool {
        self.quotas.monthly_requests.is_some() || self.quotas.monthly_bandwidth_mb.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::allowances::AllowancePolicy;
    use crate::limits::quota::{QuotaName, Quotas, Usage};
    use chrono::{TimeZone, Utc};

    fn tenant(quotas: Quotas) -> Tenant {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        Tenant {
            id: "acme".into(),
            name: "Acme".into(),
            default_role: crate::accounts::user::Role::User,
            default_group_id: None,
            mfa_required: false,
            login_methods: Vec::new(),
            rate_limits: Default::default(),
            quotas,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn the_pool_takes_the_tenants_own_quotas_and_reset_day_and_never_storage() {
        let policy = QuotaPolicy {
            defaults: EffectiveQuotas {
                monthly_requests: Some(1000),
                monthly_bandwidth_mb: None,
                storage_quota_mb: None,
                reset_day: 1,
            },
            time_zone: chrono_tz::UTC,
            allowances: AllowancePolicy::default(),
        };
        let now = Utc
            .with_ymd_and_hms(2026, 3, 10, 12, 0, 0)
            .single()
            .expect("valid");
        let pool = TenantPool::of(
            &tenant(Quotas {
                monthly_requests: Some(3),
                monthly_bandwidth_mb: None,
                storage_quota_mb: Some(5),
                reset_day: Some(15),
            }),
            &policy,
            now,
        );
        assert!(pool.is_limited());
        assert_eq!(pool.quotas.monthly_requests, Some(3));
        assert_eq!(pool.quotas.storage_quota_mb, None);
        assert_eq!(
            pool.period.start,
            Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0)
                .single()
                .expect("valid")
        );
        let used = Usage {
            requests: 3,
            ..Usage::default()
        };
        assert_eq!(pool.quotas.exhausted(&used), [QuotaName::MonthlyRequests]);
        assert!(pool.quotas.exhausted(&Usage::default()).is_empty());

        let unlimited = TenantPool::of(&tenant(Quotas::default()), &policy, now);
        assert!(!unlimited.is_limited());
    }
}
