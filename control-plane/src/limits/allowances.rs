//! Quota allowances: how much of what remains of a quota one Envoy worker is granted, and
//! which asks for allowances are well formed.

use crate::domain::ids::UserId;
use crate::limits::quota::{EffectiveQuotas, QuotaName, BYTES_PER_MB};
use crate::proto::v1::AcquireAllowancesRequest;

pub const MAX_HOLDER_BYTES: usize = 128;
/// The longest node id an Envoy may name itself by, in allowance asks and limit syncs alike
/// (Istio names a sidecar by pod, namespace and service: well over 128 bytes).
pub const MAX_NODE_ID_BYTES: usize = 512;

/// The deployment's allowance settings, in the units quotas are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowancePolicy {
    /// How far above its limit a quota may be granted, in requests.
    pub overshoot_requests: u64,
    /// The same in bytes.
    pub overshoot_bytes: u64,
    /// An allowance takes at most this fraction (1/divisor) of what remains.
    pub divisor: u64,
    pub max_requests: u64,
    pub max_bytes: u64,
    /// After this an unsettled allowance stops holding its part of the quota.
    pub timeout_secs: u32,
    /// How long the worker may admit from an allowance.
    pub admit_secs: u32,
}

impl Default for AllowancePolicy {
    fn default() -> Self {
        Self {
            overshoot_requests: 0,
            overshoot_bytes: 0,
            divisor: 8,
            max_requests: 1000,
            max_bytes: 64 * BYTES_PER_MB,
            timeout_secs: 300,
            admit_secs: 30,
        }
    }
}

impl AllowancePolicy {
    /// How allowances of `quota` are sized for a user with `quotas`; `None` when the quota
    /// has no limit.
    pub fn sizing(&self, quota: QuotaName, quotas: &EffectiveQuotas) -> Option<AllowanceSizing> {
        let (overshoot, max) = match quota {
            QuotaName::MonthlyBandwidth => (self.overshoot_bytes, self.max_bytes),
            _ => (self.overshoot_requests, self.max_requests),
        };
        quotas.limit(quota).map(|limit| AllowanceSizing {
            ceiling: limit + u128::from(overshoot),
            divisor: self.divisor,
            max,
        })
    }
}

/// The rule one allowance of one quota is sized by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowanceSizing {
    /// The limit plus the overshoot: what all usage and allowances together never pass.
    pub ceiling: u128,
    pub divisor: u64,
    pub max: u64,
}

impl AllowanceSizing {
    /// A part of the remainder (the ceiling less what was used and what other allowances
    /// hold): 1/divisor of it, rounded up, from 1 to `max`, never more than the remainder;
    /// 0 when nothing remains.
    pub fn grant(&self, used: u64, reserved: u64) -> u64 {
        let remainder = self
            .ceiling
            .saturating_sub(u128::from(used) + u128::from(reserved));
        let share = remainder
            .div_ceil(u128::from(self.divisor.max(1)))
            .clamp(1, u128::from(self.max.max(1)));
        u64::try_from(share.min(remainder)).unwrap_or(0)
    }
}

/// Why an ask for allowances was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAllowanceRequest {
    #[error("holder must be 1 to 128 bytes")]
    Holder,
    #[error("node_id must be at most 128 bytes")]
    NodeId,
    #[error("user_id {0:?} is not a user id")]
    UserId(String),
    #[error("quotas must name monthly_requests and/or monthly_bandwidth")]
    NoQuota,
    #[error("quotas names {0:?}, not monthly_requests or monthly_bandwidth")]
    UnknownQuota(String),
    #[error("quotas names {0} twice")]
    RepeatedQuota(&'static str),
}

/// A checked ask: whose quotas, in the order asked, for which worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowanceAsk {
    pub holder: String,
    pub node_id: String,
    pub user: UserId,
    pub quotas: Vec<QuotaName>,
}

impl AllowanceAsk {
    pub fn from_request(
        request: AcquireAllowancesRequest,
    ) -> Result<Self, InvalidAllowanceRequest> {
        if request.holder.is_empty() || request.holder.len() > MAX_HOLDER_BYTES {
            return Err(InvalidAllowanceRequest::Holder);
        }
        if request.node_id.len() > MAX_NODE_ID_BYTES {
            return Err(InvalidAllowanceRequest::NodeId);
        }
        let user = UserId::parse(&request.user_id)
            .ok_or_else(|| InvalidAllowanceRequest::UserId(request.user_id.clone()))?;
        if request.quotas.is_empty() {
            return Err(InvalidAllowanceRequest::NoQuota);
        }
        let mut quotas = Vec::with_capacity(request.quotas.len());
        for name in &request.quotas {
            let quota = QuotaName::metered(name)
                .ok_or_else(|| InvalidAllowanceRequest::UnknownQuota(name.clone()))?;
            if quotas.contains(&quota) {
                return Err(InvalidAllowanceRequest::RepeatedQuota(quota.as_str()));
            }
            quotas.push(quota);
        }
        Ok(Self {
            holder: request.holder,
            node_id: request.node_id,
            user,
            quotas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(ceiling: u128, divisor: u64, max: u64) -> AllowanceSizing {
        AllowanceSizing {
            ceiling,
            divisor,
            max,
        }
    }

    #[test]
    fn grants_shrink_with_the_remainder_and_end_one_at_a_time() {
        let rule = sizing(100, 8, 1000);
        let mut held = 0;
        let mut grants = Vec::new();
        loop {
            let grant = rule.grant(0, held);
            if grant == 0 {
                break;
            }
            grants.push(grant);
            held += grant;
        }
        assert_eq!(held, 100, "{grants:?}");
        assert_eq!(grants[0], 13, "100 / 8, rounded up");
        assert!(
            grants.windows(2).all(|pair| pair[0] >= pair[1]),
            "{grants:?}"
        );
        assert_eq!(grants[grants.len() - 8..], [1; 8]);
    }

    #[test]
    fn grants_stay_within_max_and_remainder() {
        assert_eq!(sizing(1_000_000, 8, 1000).grant(0, 0), 1000);
        assert_eq!(sizing(3, 8, 1000).grant(1, 1), 1);
        assert_eq!(sizing(3, 8, 1000).grant(2, 1), 0);
        assert_eq!(
            sizing(3, 8, 1000).grant(10, 0),
            0,
            "used beyond the ceiling"
        );
        assert_eq!(sizing(3, 1, 2).grant(0, 0), 2);
        assert_eq!(sizing(3, 1, 1000).grant(0, 0), 3);
        assert_eq!(
            sizing(u128::MAX, 8, u64::MAX).grant(u64::MAX, u64::MAX),
            u64::MAX
        );
    }

    #[test]
    fn overshoot_raises_the_ceiling_in_each_quotas_unit() {
        let policy = AllowancePolicy {
            overshoot_requests: 2,
            overshoot_bytes: 5,
            ..AllowancePolicy::default()
        };
        let quotas = EffectiveQuotas {
            monthly_requests: Some(3),
            monthly_bandwidth_mb: Some(1),
            storage_quota_mb: None,
            reset_day: 1,
        };
        let requests = policy.sizing(QuotaName::MonthlyRequests, &quotas);
        assert_eq!(requests.map(|s| (s.ceiling, s.max)), Some((5, 1000)));
        let bytes = policy.sizing(QuotaName::MonthlyBandwidth, &quotas);
        assert_eq!(
            bytes.map(|s| (s.ceiling, s.max)),
            Some((u128::from(BYTES_PER_MB) + 5, 64 * BYTES_PER_MB))
        );
        let unlimited = EffectiveQuotas {
            monthly_requests: None,
            ..quotas
        };
        assert_eq!(policy.sizing(QuotaName::MonthlyRequests, &unlimited), None);
    }

    fn ask(holder: &str, user_id: &str, quotas: &[&str]) -> AcquireAllowancesRequest {
        AcquireAllowancesRequest {
            node_id: "envoy-1".into(),
            holder: holder.into(),
            user_id: user_id.into(),
            quotas: quotas.iter().map(|q| (*q).to_string()).collect(),
        }
    }

    #[test]
    fn malformed_asks_are_refused() {
        let valid = AllowanceAsk::from_request(ask(
            "w1",
            "u_a",
            &["monthly_bandwidth", "monthly_requests"],
        ))
        .expect("valid");
        assert_eq!(
            valid.quotas,
            [QuotaName::MonthlyBandwidth, QuotaName::MonthlyRequests]
        );
        let refused = |request| AllowanceAsk::from_request(request).err();
        assert_eq!(
            refused(ask("", "u_a", &["monthly_requests"])),
            Some(InvalidAllowanceRequest::Holder)
        );
        assert_eq!(
            refused(ask(&"h".repeat(129), "u_a", &["monthly_requests"])),
            Some(InvalidAllowanceRequest::Holder)
        );
        let mut long_node = ask("w1", "u_a", &["monthly_requests"]);
        long_node.node_id = "n".repeat(MAX_NODE_ID_BYTES + 1);
        assert_eq!(refused(long_node), Some(InvalidAllowanceRequest::NodeId));
        assert_eq!(
            refused(ask("w1", "alice", &["monthly_requests"])),
            Some(InvalidAllowanceRequest::UserId("alice".into()))
        );
        assert_eq!(
            refused(ask("w1", "u_a", &[])),
            Some(InvalidAllowanceRequest::NoQuota)
        );
        assert_eq!(
            refused(ask("w1", "u_a", &["storage"])),
            Some(InvalidAllowanceRequest::UnknownQuota("storage".into()))
        );
        assert_eq!(
            refused(ask("w1", "u_a", &["monthly_requests", "monthly_requests"])),
            Some(InvalidAllowanceRequest::RepeatedQuota("monthly_requests"))
        );
    }
}
