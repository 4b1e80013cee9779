//! Usage reports from the data plane: checked, summed per user and priced against each
//! user's quotas for the period they fall in, with the allowances the batch settles. Counts
//! beyond what one batch of one Envoy worker could hold refuse the batch; users the control
//! plane does not know are left out.

use std::collections::BTreeMap;

use crate::accounts::user::UserStatus;
use crate::domain::ids::UserId;
use crate::domain::Timestamp;
use crate::limits::inherited::Inherited;
use crate::limits::quota::{Period, QuotaPolicy};
use crate::limits::quota_state::effective_quotas;
use crate::limits::tenant_pool::TenantPool;
use crate::proto::v1::{ReportUsageRequest, UsageDelta};
use crate::store::{Store, StoreError, UsageEntry};

pub const MAX_BATCH_ID_BYTES: usize = 128;
pub const MAX_DELTAS_PER_BATCH: usize = 10_000;
pub const MAX_SETTLED_PER_BATCH: usize = 10_000;
pub const MAX_ALLOWANCE_ID_BYTES: usize = 128;
/// The most requests (and refusals of each kind) one entry may report.
pub const MAX_REQUESTS_PER_DELTA: u64 = 1_000_000_000;
/// The most bytes one entry may report transferred, and stored or freed: 1 PiB.
pub const MAX_BYTES_PER_DELTA: u64 = 1 << 50;

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReport {
    #[error("batch_id must be 1 to 128 bytes")]
    BatchId,
    #[error("a batch holds at most 10000 usage entries")]
    TooManyDeltas,
    #[error("a batch settles at most 10000 allowances")]
    TooManySettled,
    #[error("settled_allowances[{0}] must be at most 128 bytes")]
    AllowanceId(usize),
    #[error("user_id {0:?} is not a user id")]
    UserId(String),
    #[error("rate_limited names {0:?}, not a limit level (ip, user, key, route)")]
    LimitLevel(String),
    #[error("usage[{index}].{field} must be {range}")]
    OutOfRange {
        index: usize,
        field: &'static str,
        range: String,
    },
}

/// The limit levels a refusal may name.
const LIMIT_LEVELS: [&str; 4] = ["ip", "user", "key", "route"];

/// A checked report: per-user totals, in user id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotals {
    pub batch_id: String,
    pub users: BTreeMap<String, Totals>,
    /// Requests the data plane refused, per user.
    pub refusals: BTreeMap<String, Refusals>,
    /// Allowances the worker is done with.
    pub settled_allowances: Vec<String>,
}

/// What one user was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// 429s by limit level.
    pub rate_limited: BTreeMap<&'static str, u64>,
    /// 402s.
    pub quota: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub bytes: u64,
    pub storage_bytes: i64,
}

impl UsageTotals {
    pub fn from_request(request: ReportUsageRequest) -> Result<Self, InvalidReport> {
        if request.batch_id.is_empty() || request.batch_id.len() > MAX_BATCH_ID_BYTES {
            return Err(InvalidReport::BatchId);
        }
        if request.usage.len() > MAX_DELTAS_PER_BATCH {
            return Err(InvalidReport::TooManyDeltas);
        }
        if request.settled_allowances.len() > MAX_SETTLED_PER_BATCH {
            return Err(InvalidReport::TooManySettled);
        }
        if let Some(index) = request
            .settled_allowances
            .iter()
            .position(|id| id.len() > MAX_ALLOWANCE_ID_BYTES)
        {
            return Err(InvalidReport::AllowanceId(index));
        }
        let mut users = BTreeMap::<String, Totals>::new();
        let mut refusals = BTreeMap::<String, Refusals>::new();
        for (index, delta) in request.usage.into_iter().enumerate() {
            if UserId::parse(&delta.user_id).is_none() {
                return Err(InvalidReport::UserId(delta.user_id));
            }
            check_counts(index, &delta)?;
            if delta.quota_refused > 0 || !delta.rate_limited.is_empty() {
                let refused = refusals.entry(delta.user_id.clone()).or_default();
                refused.quota = refused.quota.saturating_add(delta.quota_refused);
                for (level, count) in &delta.rate_limited {
                    let level = LIMIT_LEVELS
                        .into_iter()
                        .find(|known| known == level)
                        .ok_or_else(|| InvalidReport::LimitLevel(level.clone()))?;
                    let total = refused.rate_limited.entry(level).or_default();
                    *total = total.saturating_add(*count);
                }
            }
            let totals = users.entry(delta.user_id).or_default();
            totals.requests = totals.requests.saturating_add(delta.requests);
            totals.bytes = totals.bytes.saturating_add(delta.bytes);
            totals.storage_bytes = totals.storage_bytes.saturating_add(delta.storage_bytes);
        }
        Ok(Self {
            batch_id: request.batch_id,
            users,
            refusals,
            settled_allowances: request.settled_allowances,
        })
    }

    /// One entry per known user, with the quotas and period that apply at `now` and the
    /// tenant pool the usage also counts in; unknown and deleted users are left out.
    pub async fn entries(
        &self,
        store: &dyn Store,
        policy: &QuotaPolicy,
        now: Timestamp,
    ) -> Result<Vec<UsageEntry>, StoreError> {
        let mut entries = Vec::with_capacity(self.users.len());
        for (id, totals) in &self.users {
            let user = match store.user(&UserId::from_string(id.clone())).await {
                Ok(user) if user.status != UserStatus::Deleted => user,
                Ok(_) | Err(StoreError::NotFound) => continue,
                Err(error) => return Err(error),
            };
            let inherited = Inherited::load(store, &user).await?;
            let quotas = effective_quotas(policy, &user, &inherited);
            let pool = inherited
                .tenant
                .as_ref()
                .map(|tenant| TenantPool::of(tenant, policy, now));
            entries.push(UsageEntry {
                pool,
                period: Period::containing(now, quotas.reset_day, policy.time_zone),
                user: user.id,
                quotas,
                requests: totals.requests,
                bytes: totals.bytes,
                storage_bytes: totals.storage_bytes,
            });
        }
        Ok(entries)
    }
}

/// Refuses a count no worker could have gathered in one batch.
fn check_counts(index: usize, delta: &UsageDelta) -> Result<(), InvalidReport> {
    let out_of_range = |field, max: u64, signed: bool| InvalidReport::OutOfRange {
        index,
        field,
        range: if signed {
            format!("from -{max} to {max}")
        } else {
            format!("at most {max}")
        },
    };
    let counts = [
        ("requests", delta.requests, MAX_REQUESTS_PER_DELTA),
        ("bytes", delta.bytes, MAX_BYTES_PER_DELTA),
        ("quota_refused", delta.quota_refused, MAX_REQUESTS_PER_DELTA),
    ];
    for (field, count, max) in counts {
        if count > max {
            return Err(out_of_range(field, max, false));
        }
    }
    if delta.storage_bytes.unsigned_abs() > MAX_BYTES_PER_DELTA {
        return Err(out_of_range("storage_bytes", MAX_BYTES_PER_DELTA, true));
    }
    if delta
        .rate_limited
        .values()
        .any(|count| *count > MAX_REQUESTS_PER_DELTA)
    {
        return Err(out_of_range("rate_limited", MAX_REQUESTS_PER_DELTA, false));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(user_id: &str, requests: u64, storage_bytes: i64) -> UsageDelta {
        UsageDelta {
            user_id: user_id.into(),
            requests,
            bytes: requests * 100,
            storage_bytes,
            ..UsageDelta::default()
        }
    }

    fn request(batch_id: &str, usage: Vec<UsageDelta>) -> ReportUsageRequest {
        ReportUsageRequest {
            batch_id: batch_id.into(),
            usage,
            settled_allowances: Vec::new(),
        }
    }

    fn settling(ids: Vec<String>) -> ReportUsageRequest {
        ReportUsageRequest {
            settled_allowances: ids,
            ..request("b", vec![])
        }
    }

    #[test]
    fn deltas_are_summed_per_user() {
        let totals = UsageTotals::from_request(request(
            "b1",
            vec![delta("u_a", 1, 10), delta("u_b", 5, 0), delta("u_a", 2, -4)],
        ))
        .expect("valid");
        assert_eq!(
            totals.users["u_a"],
            Totals {
                requests: 3,
                bytes: 300,
                storage_bytes: 6
            }
        );
        assert_eq!(totals.users["u_b"].requests, 5);
    }

    #[test]
    fn refusals_are_summed_per_user_and_level() {
        let mut refused = delta("u_a", 0, 0);
        refused.rate_limited.insert("user".into(), 3);
        refused.quota_refused = 2;
        let mut again = delta("u_a", 1, 0);
        again.rate_limited.insert("user".into(), 4);
        let totals = UsageTotals::from_request(request("b1", vec![refused, again])).expect("valid");
        assert_eq!(totals.refusals["u_a"].rate_limited["user"], 7);
        assert_eq!(totals.refusals["u_a"].quota, 2);

        let mut unknown = delta("u_a", 0, 0);
        unknown.rate_limited.insert("planet".into(), 1);
        assert_eq!(
            UsageTotals::from_request(request("b2", vec![unknown])),
            Err(InvalidReport::LimitLevel("planet".into()))
        );
    }

    #[test]
    fn malformed_reports_are_refused() {
        assert_eq!(
            UsageTotals::from_request(request("", vec![])),
            Err(InvalidReport::BatchId)
        );
        assert_eq!(
            UsageTotals::from_request(request(&"x".repeat(129), vec![])),
            Err(InvalidReport::BatchId)
        );
        assert!(UsageTotals::from_request(request(&"x".repeat(128), vec![])).is_ok());
        assert_eq!(
            UsageTotals::from_request(request("b", vec![delta("u_a", 1, 0); 10_001])),
            Err(InvalidReport::TooManyDeltas)
        );
        assert_eq!(
            UsageTotals::from_request(request("b", vec![delta("admin", 1, 0)])),
            Err(InvalidReport::UserId("admin".into()))
        );
    }

    #[test]
    fn settled_allowances_are_bounded_in_count_and_length() {
        let settled = UsageTotals::from_request(settling(vec!["al_1".into(); 10_000]));
        assert_eq!(settled.map(|t| t.settled_allowances.len()), Ok(10_000));
        assert_eq!(
            UsageTotals::from_request(settling(vec!["al_1".into(); 10_001])),
            Err(InvalidReport::TooManySettled)
        );
        assert_eq!(
            UsageTotals::from_request(settling(vec!["al_1".into(), "x".repeat(129)])),
            Err(InvalidReport::AllowanceId(1))
        );
        assert!(UsageTotals::from_request(settling(vec!["x".repeat(128)])).is_ok());
    }

    #[test]
    fn absurd_counts_are_refused_by_entry_and_field() {
        let field_at_fault =
            |usage: Vec<UsageDelta>| match UsageTotals::from_request(request("b", usage)) {
                Err(InvalidReport::OutOfRange { index, field, .. }) => Some((index, field)),
                _ => None,
            };
        let most = MAX_BYTES_PER_DELTA as i64;
        assert_eq!(
            field_at_fault(vec![delta("u_a", 1, most), delta("u_a", 1, -most)]),
            None
        );
        assert_eq!(
            field_at_fault(vec![
                delta("u_a", 1, 0),
                UsageDelta {
                    requests: 1 << 63,
                    ..delta("u_a", 0, 0)
                }
            ]),
            Some((1, "requests"))
        );
        assert_eq!(
            field_at_fault(vec![delta("u_a", 1, -most - 1)]),
            Some((0, "storage_bytes"))
        );
        assert_eq!(
            field_at_fault(vec![delta("u_a", 1, i64::MIN)]),
            Some((0, "storage_bytes"))
        );
        let mut limited = delta("u_a", 0, 0);
        limited.rate_limited.insert("user".into(), u64::MAX);
        assert_eq!(field_at_fault(vec![limited]), Some((0, "rate_limited")));
    }
}
