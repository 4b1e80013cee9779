//! `quotas.*`: when quota periods start, the quotas of users whose groups set none, and how
//! allowances of quotas are granted to Envoy workers.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::limits::allowances::AllowancePolicy;
use crate::limits::quota::{EffectiveQuotas, QuotaPolicy, Quotas, BYTES_PER_MB, MAX_QUOTA};

/// The largest `quotas.allowance_divisor`.
const MAX_ALLOWANCE_DIVISOR: u64 = 1_000_000;
/// The largest allowance of bandwidth: 1 TiB.
const MAX_ALLOWANCE_BANDWIDTH_MB: u64 = 1_048_576;
/// The longest `quotas.allowance_timeout_secs`: one day.
const MAX_ALLOWANCE_TIMEOUT_SECS: u32 = 86_400;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// Day of the month (1-28) periods start on.
    pub reset_day: u8,
    /// IANA name of the zone whose midnight starts a period.
    pub time_zone: String,
    pub defaults: QuotaDefaults,
    /// How far above its limit allowances may take a quota, in requests.
    pub overshoot_requests: u64,
    /// The same for bandwidth, in MB.
    pub overshoot_bandwidth_mb: u64,
    /// An allowance is at most this fraction (1/n) of what remains of its quota.
    pub allowance_divisor: u64,
    pub max_allowance_requests: u64,
    pub max_allowance_bandwidth_mb: u64,
    /// After this an unsettled allowance returns to its quota.
    pub allowance_timeout_secs: u32,
    /// How long a worker may admit from an allowance; at most half the timeout.
    pub allowance_admit_secs: u32,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            reset_day: 1,
            time_zone: "UTC".into(),
            defaults: QuotaDefaults::default(),
            overshoot_requests: 0,
            overshoot_bandwidth_mb: 0,
            allowance_divisor: 8,
            max_allowance_requests: 1000,
            max_allowance_bandwidth_mb: 64,
            allowance_timeout_secs: 300,
            allowance_admit_secs: 30,
        }
    }
}

/// `None` is unlimited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaDefaults {
    pub monthly_requests: Option<u64>,
    pub monthly_bandwidth_mb: Option<u64>,
    pub storage_quota_mb: Option<u64>,
}

impl QuotasConfig {
    /// The deployment's quota policy, checked by the rules of every user's and group's quotas.
    pub fn validate(&self) -> Result<QuotaPolicy, ConfigError> {
        let defaults = self.defaults;
        Quotas {
            monthly_requests: defaults.monthly_requests,
            monthly_bandwidth_mb: defaults.monthly_bandwidth_mb,
            storage_quota_mb: defaults.storage_quota_mb,
            reset_day: Some(self.reset_day),
        }
        .validate()
        .map_err(|e| match e.field {
            "reset_day" => ConfigError::invalid("quotas.reset_day", e.problem),
            field => ConfigError::invalid(format!("quotas.defaults.{field}"), e.problem),
        })?;
        let time_zone = self.time_zone.parse::<Tz>().map_err(|_| {
            ConfigError::invalid(
                "quotas.time_zone",
                format!(
                    "must be an IANA time zone like UTC or Europe/Berlin, not {:?}",
                    self.time_zone
                ),
            )
        })?;
        Ok(QuotaPolicy {
            defaults: EffectiveQuotas {
                monthly_requests: defaults.monthly_requests,
                monthly_bandwidth_mb: defaults.monthly_bandwidth_mb,
                storage_quota_mb: defaults.storage_quota_mb,
                reset_day: self.reset_day,
            },
            time_zone,
            allowances: self.allowance_policy()?,
        })
    }

    fn allowance_policy(&self) -> Result<AllowancePolicy, ConfigError> {
        let ranges = [
            (
                "quotas.overshoot_requests",
                self.overshoot_requests,
                0,
                MAX_QUOTA,
            ),
            (
                "quotas.overshoot_bandwidth_mb",
                self.overshoot_bandwidth_mb,
                0,
                MAX_QUOTA,
            ),
            (
                "quotas.allowance_divisor",
                self.allowance_divisor,
                1,
                MAX_ALLOWANCE_DIVISOR,
            ),
            (
                "quotas.max_allowance_requests",
                self.max_allowance_requests,
                1,
                MAX_QUOTA,
            ),
            (
                "quotas.max_allowance_bandwidth_mb",
                self.max_allowance_bandwidth_mb,
                1,
                MAX_ALLOWANCE_BANDWIDTH_MB,
            ),
            (
                "quotas.allowance_timeout_secs",
                self.allowance_timeout_secs.into(),
                2,
                MAX_ALLOWANCE_TIMEOUT_SECS.into(),
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be an integer from {min} to {max}"),
                ));
            }
        }
        let most_admit = self.allowance_timeout_secs / 2;
        if !(1..=most_admit).contains(&self.allowance_admit_secs) {
            return Err(ConfigError::invalid(
                "quotas.allowance_admit_secs",
                format!(
                    "must be an integer from 1 to half of quotas.allowance_timeout_secs ({most_admit})"
                ),
            ));
        }
        Ok(AllowancePolicy {
            overshoot_requests: self.overshoot_requests,
            overshoot_bytes: self.overshoot_bandwidth_mb.saturating_mul(BYTES_PER_MB),
            divisor: self.allowance_divisor,
            max_requests: self.max_allowance_requests,
            max_bytes: self.max_allowance_bandwidth_mb * BYTES_PER_MB,
            timeout_secs: self.allowance_timeout_secs,
            admit_secs: self.allowance_admit_secs,
        })
    }
}
