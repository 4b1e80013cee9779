//! Quotas: what a user may use per period (requests, bandwidth) or at all (storage), the
//! settings that decide it, and the period a moment falls in.

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::validation::InvalidField;
use crate::domain::Timestamp;
use crate::limits::allowances::AllowancePolicy;

/// The largest quota amount that may be set.
pub const MAX_QUOTA: u64 = 1_000_000_000_000_000;
/// Bytes in one MB of a quota.
pub const BYTES_PER_MB: u64 = 1_048_576;
/// Reset days stop at 28 so every month has one.
pub const MAX_RESET_DAY: u8 = 28;

/// Quota settings of one user or group; `None` inherits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    pub monthly_requests: Option<u64>,
    pub monthly_bandwidth_mb: Option<u64>,
    pub storage_quota_mb: Option<u64>,
    /// Day of the month (1-28) a period starts on.
    pub reset_day: Option<u8>,
}

impl Quotas {
    /// Amounts are 0 (nothing allowed) to [`MAX_QUOTA`]; the reset day is 1 to 28.
    pub fn validate(&self) -> Result<(), InvalidField> {
        let amounts = [
            ("monthly_requests", self.monthly_requests),
            ("monthly_bandwidth_mb", self.monthly_bandwidth_mb),
            ("storage_quota_mb", self.storage_quota_mb),
        ];
        for (field, value) in amounts {
            if value.is_some_and(|amount| amount > MAX_QUOTA) {
                return Err(InvalidField {
                    field,
                    problem: "must be an integer from 0 to 1000000000000000",
                });
            }
        }
        if self
            .reset_day
            .is_some_and(|day| !(1..=MAX_RESET_DAY).contains(&day))
        {
            return Err(InvalidField {
                field: "reset_day",
                problem: "must be a day of the month from 1 to 28",
            });
        }
        Ok(())
    }
}

/// The quotas that apply to a user; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveQuotas {
    pub monthly_requests: Option<u64>,
    pub monthly_bandwidth_mb: Option<u64>,
    pub storage_quota_mb: Option<u64>,
    pub reset_day: u8,
}

impl EffectiveQuotas {
    /// Each field from the first of `layers` (most specific first) that sets it, else
    /// from `defaults`.
    pub fn resolve(layers: &[&Quotas], defaults: &EffectiveQuotas) -> Self {
        let first = |field: fn(&Quotas) -> Option<u64>| layers.iter().find_map(|q| field(q));
        Self {
            monthly_requests: first(|q| q.monthly_requests).or(defaults.monthly_requests),
            monthly_bandwidth_mb: first(|q| q.monthly_bandwidth_mb)
                .or(defaults.monthly_bandwidth_mb),
            storage_quota_mb: first(|q| q.storage_quota_mb).or(defaults.storage_quota_mb),
            reset_day: layers
                .iter()
                .find_map(|q| q.reset_day)
                .unwrap_or(defaults.reset_day),
        }
    }

    /// Each quota's limit in the unit usage is counted in (requests, bytes).
    fn limits(&self) -> [(QuotaName, Option<u128>); 3] {
        let bytes = |mb: Option<u64>| mb.map(|mb| u128::from(mb) * u128::from(BYTES_PER_MB));
        [
            (
                QuotaName::MonthlyRequests,
                self.monthly_requests.map(u128::from),
            ),
            (
                QuotaName::MonthlyBandwidth,
                bytes(self.monthly_bandwidth_mb),
            ),
            (QuotaName::Storage, bytes(self.storage_quota_mb)),
        ]
    }

    /// The quota's limit in the unit usage is counted in; `None` is unlimited.
    pub fn limit(&self, quota: QuotaName) -> Option<u128> {
        self.limits()
            .into_iter()
            .find(|(name, _)| *name == quota)
            .and_then(|(_, limit)| limit)
    }

    /// The quotas `usage` has reached.
    pub fn exhausted(&self, usage: &Usage) -> Vec<QuotaName> {
        self.limits()
            .into_iter()
            .filter(|(name, limit)| limit.is_some_and(|limit| usage.of(*name) >= limit))
            .map(|(name, _)| name)
            .collect()
    }

    /// The quotas that were below their limit at `before` and are at or over it at `after`.
    pub fn crossed(&self, before: &Usage, after: &Usage) -> Vec<QuotaName> {
        self.limits()
            .into_iter()
            .filter(|(name, limit)| {
                limit.is_some_and(|limit| before.of(*name) < limit && after.of(*name) >= limit)
            })
            .map(|(name, _)| name)
            .collect()
    }
}

/// The deployment's quota defaults, the time zone periods are counted in, and how
/// allowances are granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaPolicy {
    pub defaults: EffectiveQuotas,
    pub time_zone: Tz,
    pub allowances: AllowancePolicy,
}

/// A quota the data plane enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaName {
    MonthlyRequests,
    MonthlyBandwidth,
    Storage,
}

impl QuotaName {
    /// The quotas the data plane admits requests under through allowances.
    pub const METERED: [Self; 2] = [Self::MonthlyRequests, Self::MonthlyBandwidth];

    /// The name in the filter protocol, metrics and audit entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MonthlyRequests => "monthly_requests",
            Self::MonthlyBandwidth => "monthly_bandwidth",
            Self::Storage => "storage",
        }
    }

    /// A quota admitted through allowances, by its name in the filter protocol.
    pub fn metered(name: &str) -> Option<Self> {
        Self::METERED
            .into_iter()
            .find(|quota| quota.as_str() == name)
    }

    /// Whether the quota starts again each period (storage does not).
    pub fn resets(self) -> bool {
        self != Self::Storage
    }
}

/// What a user used: requests and bytes in one period, storage held now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    pub bytes: u64,
    pub storage_bytes: u64,
}

impl Usage {
    /// The amount counted against `quota`: requests, or bytes.
    pub fn amount(&self, quota: QuotaName) -> u64 {
        match quota {
            QuotaName::MonthlyRequests => self.requests,
            QuotaName::MonthlyBandwidth => self.bytes,
            QuotaName::Storage => self.storage_bytes,
        }
    }

    fn of(&self, quota: QuotaName) -> u128 {
        u128::from(self.amount(quota))
    }
}

/// `[start, end)`: from one reset day's midnight to the next, in the policy's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Period {
    /// The period `now` falls in: it starts at the most recent `reset_day` 00:00 in
    /// `time_zone` at or before `now`.
    pub fn containing(now: Timestamp, reset_day: u8, time_zone: Tz) -> Self {
        let reset_day = u32::from(reset_day.clamp(1, MAX_RESET_DAY));
        let local = now.with_timezone(&time_zone).date_naive();
        let (year, month) = if local.day() >= reset_day {
            (local.year(), local.month())
        } else {
            previous_month(local.year(), local.month())
        };
        let (next_year, next_month) = next_month(year, month);
        Self {
            start: local_midnight(year, month, reset_day, time_zone),
            end: local_midnight(next_year, next_month, reset_day, time_zone),
        }
    }
}

fn previous_month(year: i32, month: u32) -> (i32, u32) {
    if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    }
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// Midnight of that day in `time_zone`; where a clock change skips midnight, the first
/// hour that exists that day.
fn local_midnight(year: i32, month: u32, day: u32, time_zone: Tz) -> Timestamp {
    let midnight = NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    (0..24)
        .find_map(|hour| {
            time_zone
                .from_local_datetime(&(midnight + Duration::hours(hour)))
                .earliest()
        })
        .map_or_else(|| midnight.and_utc(), |at| at.with_timezone(&chrono::Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_period_runs_from_the_latest_reset_midnight_to_the_next() {
        let cases = [
            // now, reset day, time zone, start, end
            (
                "2026-05-20T10:00:00Z",
                15,
                Tz::UTC,
                "2026-05-15T00:00:00Z",
                "2026-06-15T00:00:00Z",
            ),
            (
                "2026-05-15T00:00:00Z",
                15,
                Tz::UTC,
                "2026-05-15T00:00:00Z",
                "2026-06-15T00:00:00Z",
            ),
            (
                "2026-05-14T23:59:59Z",
                15,
                Tz::UTC,
                "2026-04-15T00:00:00Z",
                "2026-05-15T00:00:00Z",
            ),
            // Across the year end, and already January in Tokyo.
            (
                "2027-01-05T12:00:00Z",
                10,
                Tz::UTC,
                "2026-12-10T00:00:00Z",
                "2027-01-10T00:00:00Z",
            ),
            (
                "2026-12-31T23:30:00Z",
                1,
                Tz::UTC,
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                "2026-12-31T23:30:00Z",
                1,
                Tz::Asia__Tokyo,
                "2026-12-31T15:00:00Z",
                "2027-01-31T15:00:00Z",
            ),
            // March in Berlin starts in winter time and ends in summer time.
            (
                "2026-03-15T12:00:00Z",
                1,
                Tz::Europe__Berlin,
                "2026-02-28T23:00:00Z",
                "2026-03-31T22:00:00Z",
            ),
            (
                "2026-03-31T22:30:00Z",
                1,
                Tz::Europe__Berlin,
                "2026-03-31T22:00:00Z",
                "2026-04-30T22:00:00Z",
            ),
            // Santiago skipped from 00:00 to 01:00 on 2022-09-11: the first hour that exists.
            (
                "2022-09-20T12:00:00Z",
                11,
                Tz::America__Santiago,
                "2022-09-11T04:00:00Z",
                "2022-10-11T03:00:00Z",
            ),
        ];
        for (now, reset_day, time_zone, start, end) in cases {
            assert_eq!(
                Period::containing(at(now), reset_day, time_zone),
                Period {
                    start: at(start),
                    end: at(end)
                },
                "{now} with reset day {reset_day} in {time_zone}"
            );
        }
    }

    #[test]
    fn settings_inherit_per_field() {
        let user = Quotas {
            monthly_requests: Some(10),
            ..Quotas::default()
        };
        let group = Quotas {
            monthly_requests: Some(20),
            storage_quota_mb: Some(5),
            reset_day: Some(15),
            ..Quotas::default()
        };
        let defaults = EffectiveQuotas {
            monthly_requests: None,
            monthly_bandwidth_mb: Some(100),
            storage_quota_mb: None,
            reset_day: 1,
        };
        assert_eq!(
            EffectiveQuotas::resolve(&[&user, &group], &defaults),
            EffectiveQuotas {
                monthly_requests: Some(10),
                monthly_bandwidth_mb: Some(100),
                storage_quota_mb: Some(5),
                reset_day: 15,
            }
        );
    }

    #[test]
    fn exhaustion_and_crossings_compare_in_each_quotas_unit() {
        let quotas = EffectiveQuotas {
            monthly_requests: Some(10),
            monthly_bandwidth_mb: Some(1),
            storage_quota_mb: Some(MAX_QUOTA),
            reset_day: 1,
        };
        let before = Usage {
            requests: 9,
            bytes: BYTES_PER_MB - 1,
            storage_bytes: 0,
        };
        let after = Usage {
            requests: 12,
            bytes: BYTES_PER_MB - 1,
            storage_bytes: u64::MAX,
        };
        assert!(quotas.exhausted(&before).is_empty());
        assert_eq!(
            quotas.crossed(&before, &after),
            [QuotaName::MonthlyRequests]
        );
        assert!(quotas.crossed(&after, &after).is_empty());
        let nothing_allowed = EffectiveQuotas {
            monthly_requests: Some(0),
            ..quotas
        };
        assert_eq!(
            nothing_allowed.exhausted(&Usage::default()),
            [QuotaName::MonthlyRequests]
        );
    }

    #[test]
    fn settings_are_bounded() {
        let valid = Quotas {
            monthly_requests: Some(0),
            storage_quota_mb: Some(MAX_QUOTA),
            reset_day: Some(28),
            ..Quotas::default()
        };
        assert!(valid.validate().is_ok());
        let bad_day = Quotas {
            reset_day: Some(29),
            ..Quotas::default()
        };
        assert_eq!(bad_day.validate().map_err(|e| e.field), Err("reset_day"));
        let too_much = Quotas {
            monthly_bandwidth_mb: Some(MAX_QUOTA + 1),
            ..Quotas::default()
        };
        assert_eq!(
            too_much.validate().map_err(|e| e.field),
            Err("monthly_bandwidth_mb")
        );
    }
}
