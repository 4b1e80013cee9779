//! Rate-limit settings and how the settings of a user, its groups and the deployment
//! combine into the token buckets the data plane enforces.

use serde::{Deserialize, Serialize};

use crate::domain::validation::InvalidField;

/// The largest request count a limit or a burst may name.
pub const MAX_REQUESTS: u64 = 1_000_000_000;

/// Where a limit is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// Each Envoy on its own.
    Local,
    /// Each Envoy admits on its own and reports in the background.
    Fast,
    /// Every request asks the control plane.
    Exact,
}

impl LimitMode {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "local" => Some(Self::Local),
            "fast" => Some(Self::Fast),
            "exact" => Some(Self::Exact),
            _ => None,
        }
    }
}

/// Rate-limit settings of one user, group, key or deployment default; `None` inherits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub requests_per_second: Option<u64>,
    pub requests_per_minute: Option<u64>,
    pub requests_per_hour: Option<u64>,
    /// The most requests admitted at once by the shortest window.
    pub burst: Option<u64>,
    pub mode: Option<LimitMode>,
}

impl RateLimits {
    /// Every count and the burst are 1 to [`MAX_REQUESTS`].
    pub fn validate(&self) -> Result<(), InvalidField> {
        let counts = [
            ("requests_per_second", self.requests_per_second),
            ("requests_per_minute", self.requests_per_minute),
            ("requests_per_hour", self.requests_per_hour),
            ("burst", self.burst),
        ];
        for (field, value) in counts {
            if value.is_some_and(|count| !(1..=MAX_REQUESTS).contains(&count)) {
                return Err(InvalidField {
                    field,
                    problem: "must be an integer from 1 to 1000000000",
                });
            }
        }
        Ok(())
    }

    fn windows(&self) -> [(u32, Option<u64>); 3] {
        [
            (1, self.requests_per_second),
            (60, self.requests_per_minute),
            (3600, self.requests_per_hour),
        ]
    }
}

/// Which counter a limit draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitLevel {
    Ip,
    User,
    Key,
    Route,
}

/// One token bucket: `burst` requests at once, refilled at `requests` per `window_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub level: LimitLevel,
    pub window_seconds: u32,
    pub requests: u64,
    pub burst: u64,
    pub mode: LimitMode,
}

/// The buckets for `layers`, most specific first: each field comes from the first layer
/// that sets it, the mode falls back to `default_mode`. The burst belongs to the shortest
/// window; every other window admits its own count at once.
pub fn resolve(
    layers: &[&RateLimits],
    level: LimitLevel,
    default_mode: LimitMode,
) -> Vec<RateLimit> {
    let merged = layers
        .iter()
        .rev()
        .fold(RateLimits::default(), |inherited, layer| RateLimits {
            requests_per_second: layer.requests_per_second.or(inherited.requests_per_second),
            requests_per_minute: layer.requests_per_minute.or(inherited.requests_per_minute),
            requests_per_hour: layer.requests_per_hour.or(inherited.requests_per_hour),
            burst: layer.burst.or(inherited.burst),
            mode: layer.mode.or(inherited.mode),
        });
    let mode = merged.mode.unwrap_or(default_mode);
    let mut burst = merged.burst;
    merged
        .windows()
        .into_iter()
        .filter_map(|(window_seconds, requests)| {
            let requests = requests?;
            Some(RateLimit {
                level,
                window_seconds,
                requests,
                burst: burst.take().unwrap_or(requests),
                mode,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(second: Option<u64>, minute: Option<u64>, hour: Option<u64>) -> RateLimits {
        RateLimits {
            requests_per_second: second,
            requests_per_minute: minute,
            requests_per_hour: hour,
            ..RateLimits::default()
        }
    }

    #[test]
    fn each_field_comes_from_the_most_specific_layer_that_sets_it() {
        let user = RateLimits {
            requests_per_minute: Some(10),
            ..RateLimits::default()
        };
        let first_group = RateLimits {
            requests_per_minute: Some(20),
            requests_per_hour: Some(500),
            mode: Some(LimitMode::Exact),
            ..RateLimits::default()
        };
        let second_group = RateLimits {
            requests_per_hour: Some(900),
            requests_per_second: Some(2),
            mode: Some(LimitMode::Local),
            ..RateLimits::default()
        };
        let default = limits(None, Some(1000), Some(10_000));
        let resolved = resolve(
            &[&user, &first_group, &second_group, &default],
            LimitLevel::User,
            LimitMode::Fast,
        );
        let windows: Vec<(u32, u64, u64)> = resolved
            .iter()
            .map(|l| (l.window_seconds, l.requests, l.burst))
            .collect();
        assert_eq!(windows, [(1, 2, 2), (60, 10, 10), (3600, 500, 500)]);
        assert!(resolved
            .iter()
            .all(|l| l.mode == LimitMode::Exact && l.level == LimitLevel::User));
    }

    #[test]
    fn the_burst_applies_to_the_shortest_configured_window_only() {
        let user = RateLimits {
            burst: Some(20),
            ..limits(None, Some(100), Some(1000))
        };
        let resolved = resolve(&[&user], LimitLevel::Key, LimitMode::Fast);
        let windows: Vec<(u32, u64, u64)> = resolved
            .iter()
            .map(|l| (l.window_seconds, l.requests, l.burst))
            .collect();
        assert_eq!(windows, [(60, 100, 20), (3600, 1000, 1000)]);
    }

    #[test]
    fn nothing_configured_means_no_limit_and_the_default_mode() {
        assert!(resolve(&[&RateLimits::default()], LimitLevel::User, LimitMode::Fast).is_empty());
        let resolved = resolve(
            &[&limits(Some(5), None, None)],
            LimitLevel::Ip,
            LimitMode::Local,
        );
        assert_eq!(resolved[0].mode, LimitMode::Local);
        assert_eq!(resolved[0].burst, 5);
    }

    #[test]
    fn counts_are_bounded() {
        assert!(limits(Some(1), Some(MAX_REQUESTS), None).validate().is_ok());
        assert_eq!(
            limits(Some(0), None, None).validate().map_err(|e| e.field),
            Err("requests_per_second")
        );
        let too_big_burst = RateLimits {
            burst: Some(MAX_REQUESTS + 1),
            ..RateLimits::default()
        };
        assert_eq!(too_big_burst.validate().map_err(|e| e.field), Err("burst"));
    }
}
