//! `quotas.*`: when quota periods start and the quotas of users whose groups set none.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::limits::quota::{EffectiveQuotas, QuotaPolicy, Quotas};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// Day of the month (1-28) periods start on.
    pub reset_day: u8,
    /// IANA name of the zone whose midnight starts a period.
    pub time_zone: String,
    pub defaults: QuotaDefaults,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            reset_day: 1,
            time_zone: "UTC".into(),
            defaults: QuotaDefaults::default(),
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
        })
    }
}
