//! `limits.*`: rate limits of the whole deployment, and the defaults of users and keys.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::limits::rate_limits::{LimitMode, RateLimits};

/// Rate limits of the whole deployment, and the defaults of users and keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The mode of limits that do not name one.
    pub mode: LimitMode,
    /// Per client address.
    pub ip: RateLimits,
    pub ip_counts: IpCounts,
    /// Users (and their groups) that set no limit of their own.
    pub user: RateLimits,
    /// Keys that set no limit of their own.
    pub key: RateLimits,
    /// Per route, for all users together.
    pub routes: Vec<RouteLimitConfig>,
    /// When the control plane cannot be reached, `exact` limits admit (true) or refuse.
    pub exact_fails_open: bool,
    /// The most Envoys (node ids syncing within a minute) that share each `fast` limit; any
    /// further node id is charged but does not shrink the others' shares.
    pub max_envoys: u32,
    /// The most refusals (429 and 402, sampled per user) written to the audit log per minute
    /// by one control plane; the rest are counted in metrics only.
    pub refusal_audits_per_minute: u32,
}

/// The largest `limits.max_envoys` and `limits.refusal_audits_per_minute`.
const MAX_CAP: u32 = 100_000;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            mode: LimitMode::Fast,
            ip: RateLimits {
                requests_per_minute: Some(100),
                burst: Some(20),
                ..RateLimits::default()
            },
            ip_counts: IpCounts::FailedAuthentications,
            user: RateLimits {
                requests_per_minute: Some(1000),
                requests_per_hour: Some(10_000),
                ..RateLimits::default()
            },
            key: RateLimits::default(),
            routes: Vec::new(),
            exact_fails_open: false,
            max_envoys: 64,
            refusal_audits_per_minute: 1000,
        }
    }
}

/// Which requests count against the per-address limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpCounts {
    /// Only those that fail authentication: throttles key guessing, not busy NATs.
    FailedAuthentications,
    EveryRequest,
}

/// A limit on one route: `[METHOD ]PATH_PREFIX`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitConfig {
    pub route: String,
    pub requests_per_second: Option<u64>,
    pub requests_per_minute: Option<u64>,
    pub requests_per_hour: Option<u64>,
    pub burst: Option<u64>,
    pub mode: Option<LimitMode>,
}

impl RouteLimitConfig {
    /// The route's limit as rate-limit settings.
    pub fn limits(&self) -> RateLimits {
        RateLimits {
            requests_per_second: self.requests_per_second,
            requests_per_minute: self.requests_per_minute,
            requests_per_hour: self.requests_per_hour,
            burst: self.burst,
            mode: self.mode,
        }
    }

    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        if !valid_route(&self.route) {
            return Err(ConfigError::invalid(
                format!("{section}.route"),
                "must be a path prefix like /api/, optionally after a method: GET /api/",
            ));
        }
        let settings = self.limits();
        validate_settings(section, &settings)?;
        if [
            settings.requests_per_second,
            settings.requests_per_minute,
            settings.requests_per_hour,
        ]
        .iter()
        .all(Option::is_none)
        {
            return Err(ConfigError::invalid(
                section,
                "must set requests_per_second, requests_per_minute or requests_per_hour",
            ));
        }
        Ok(())
    }
}

impl LimitsConfig {
    /// Every limit's counts, and every route's pattern and counts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_settings("limits.ip", &self.ip)?;
        validate_settings("limits.user", &self.user)?;
        validate_settings("limits.key", &self.key)?;
        for (key, cap) in [
            ("limits.max_envoys", self.max_envoys),
            (
                "limits.refusal_audits_per_minute",
                self.refusal_audits_per_minute,
            ),
        ] {
            if !(1..=MAX_CAP).contains(&cap) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be an integer from 1 to {MAX_CAP}"),
                ));
            }
        }
        self.routes
            .iter()
            .enumerate()
            .try_for_each(|(index, route)| route.validate(&format!("limits.routes[{index}]")))
    }
}

fn validate_settings(section: &str, settings: &RateLimits) -> Result<(), ConfigError> {
    settings
        .validate()
        .map_err(|e| ConfigError::invalid(format!("{section}.{}", e.field), e.problem))
}

/// `[METHOD ]PATH_PREFIX`, as in key scopes.
fn valid_route(route: &str) -> bool {
    let path = match route.split_once(' ') {
        Some((method, path)) => {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return false;
            }
            path
        }
        None => route,
    };
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic())
}
