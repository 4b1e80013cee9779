//! `login.*`: how failed logins slow down and lock an account, how many failed
//! authentications (logins and admin-API credentials) a client address may make, and how many
//! sessions one user may hold.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::identity::lockout::LockoutPolicy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Failed logins in a row after which an account is locked.
    pub max_failures: u32,
    /// How long the first lock lasts; each further lock in a row lasts twice the one before.
    pub lockout_secs: u32,
    /// The longest lock. An account's failures are forgotten this long after its last attempt.
    pub max_lockout_secs: u32,
    /// Failed logins and admin-API authentications one client address may make per hour...
    pub address_failures_per_hour: u32,
    /// ...of which this many in a rapid row.
    pub address_failures_burst: u32,
    /// Failed logins in a row after which each next attempt at the account waits...
    pub backoff_after_failures: u32,
    /// ...this long after the one before, doubled for every further failure (0: no backoff).
    pub backoff_secs: u32,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            max_failures: 10,
            lockout_secs: 15 * 60,
            max_lockout_secs: 60 * 60,
            address_failures_per_hour: 120,
            address_failures_burst: 20,
            backoff_after_failures: 3,
            backoff_secs: 1,
        }
    }
}

/// The longest lock that may be configured: a week.
const MAX_LOCKOUT_SECS: u32 = 7 * 24 * 3600;
/// The largest count of failures that may be configured.
const MAX_COUNT: u32 = 1_000_000;

impl LoginConfig {
    /// When a login name is locked.
    pub fn lockout_policy(&self) -> LockoutPolicy {
        LockoutPolicy {
            max_failures: self.max_failures,
            lockout: Duration::seconds(self.lockout_secs.into()),
            max_lockout: Duration::seconds(self.max_lockout_secs.into()),
            backoff_after: if self.backoff_secs == 0 {
                0
            } else {
                self.backoff_after_failures
            },
            backoff: Duration::seconds(self.backoff_secs.into()),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let in_range = |key: &str, value: u32, max: u32| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    format!("login.{key}"),
                    format!("must be 1 to {max}"),
                ))
            }
        };
        in_range("max_failures", self.max_failures, MAX_COUNT)?;
        in_range("lockout_secs", self.lockout_secs, MAX_LOCKOUT_SECS)?;
        in_range("max_lockout_secs", self.max_lockout_secs, MAX_LOCKOUT_SECS)?;
        in_range(
            "address_failures_per_hour",
            self.address_failures_per_hour,
            MAX_COUNT,
        )?;
        in_range(
            "address_failures_burst",
            self.address_failures_burst,
            MAX_COUNT,
        )?;
        in_range(
            "backoff_after_failures",
            self.backoff_after_failures,
            MAX_COUNT,
        )?;
        if self.backoff_secs > self.max_lockout_secs {
            return Err(ConfigError::invalid(
                "login.backoff_secs",
                "must be at most login.max_lockout_secs",
            ));
        }
        if self.max_lockout_secs < self.lockout_secs {
            return Err(ConfigError::invalid(
                "login.max_lockout_secs",
                "must be at least login.lockout_secs",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert!(LoginConfig::default().validate().is_ok());
    }

    #[test]
    fn bad_values_name_their_key() {
        type Adjustment = fn(&mut LoginConfig);
        let cases: [(Adjustment, &str); 6] = [
            (|c| c.max_failures = 0, "login.max_failures"),
            (|c| c.lockout_secs = 0, "login.lockout_secs"),
            (|c| c.max_lockout_secs = 60, "login.max_lockout_secs"),
            (
                |c| c.address_failures_burst = 0,
                "login.address_failures_burst",
            ),
            (
                |c| c.backoff_after_failures = 0,
                "login.backoff_after_failures",
            ),
            (|c| c.backoff_secs = 7200, "login.backoff_secs"),
        ];
        for (adjust, key) in cases {
            let mut config = LoginConfig::default();
            adjust(&mut config);
            let error = config.validate().expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
        }
    }
}
