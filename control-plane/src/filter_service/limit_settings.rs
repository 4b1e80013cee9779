//! Rate limits as the filter receives them: the deployment's limits on every change-feed
//! answer, and each principal's own buckets on every lookup.

use std::iter;

use crate::accounts::api_key::ApiKey;
use crate::accounts::group::Group;
use crate::accounts::user::User;
use crate::config::{IpCounts, LimitsConfig};
use crate::limits::rate_limits::{self, LimitLevel, LimitMode, RateLimit, RateLimits};
use crate::proto::v1;

/// The deployment-wide limits.
pub fn limit_settings(config: &LimitsConfig) -> v1::LimitSettings {
    v1::LimitSettings {
        ip: buckets(&[&config.ip], LimitLevel::Ip, config.mode),
        ip_counts_every_request: config.ip_counts == IpCounts::EveryRequest,
        routes: config
            .routes
            .iter()
            .map(|route| v1::RouteLimit {
                route: route.route.clone(),
                limits: buckets(&[&route.limits()], LimitLevel::Route, config.mode),
            })
            .collect(),
        exact_fails_open: config.exact_fails_open,
    }
}

/// The user's buckets: their own settings, then their groups' in priority order, then
/// the deployment's user defaults.
pub fn user_limits(config: &LimitsConfig, user: &User, groups: &[Group]) -> Vec<v1::RateLimit> {
    let layers: Vec<&RateLimits> = iter::once(&user.rate_limits)
        .chain(groups.iter().map(|group| &group.rate_limits))
        .chain(iter::once(&config.user))
        .collect();
    buckets(&layers, LimitLevel::User, config.mode)
}

/// The key's buckets: its own settings, then the deployment's key defaults.
pub fn key_limits(config: &LimitsConfig, key: &ApiKey) -> Vec<v1::RateLimit> {
    buckets(
        &[&key.rate_limits, &config.key],
        LimitLevel::Key,
        config.mode,
    )
}

fn buckets(layers: &[&RateLimits], level: LimitLevel, mode: LimitMode) -> Vec<v1::RateLimit> {
    rate_limits::resolve(layers, level, mode)
        .into_iter()
        .map(to_proto)
        .collect()
}

fn to_proto(limit: RateLimit) -> v1::RateLimit {
    let level = match limit.level {
        LimitLevel::Ip => v1::LimitLevel::Ip,
        LimitLevel::User => v1::LimitLevel::User,
        LimitLevel::Key => v1::LimitLevel::Key,
        LimitLevel::Route => v1::LimitLevel::Route,
    };
    let mode = match limit.mode {
        LimitMode::Local => v1::LimitMode::Local,
        LimitMode::Fast => v1::LimitMode::Fast,
        LimitMode::Exact => v1::LimitMode::Exact,
    };
    v1::RateLimit {
        level: level.into(),
        window_seconds: limit.window_seconds,
        requests: limit.requests,
        burst: limit.burst,
        mode: mode.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteLimitConfig;

    #[test]
    fn deployment_limits_carry_their_levels_and_the_default_mode() {
        let config = LimitsConfig {
            routes: vec![RouteLimitConfig {
                route: "GET /api/".into(),
                requests_per_second: None,
                requests_per_minute: Some(5000),
                requests_per_hour: None,
                burst: None,
                mode: Some(LimitMode::Exact),
            }],
            ..LimitsConfig::default()
        };
        let settings = limit_settings(&config);
        assert_eq!(
            settings.ip,
            [v1::RateLimit {
                level: v1::LimitLevel::Ip.into(),
                window_seconds: 60,
                requests: 100,
                burst: 20,
                mode: v1::LimitMode::Fast.into(),
            }]
        );
        assert!(!settings.ip_counts_every_request);
        assert_eq!(settings.routes[0].route, "GET /api/");
        assert_eq!(
            settings.routes[0].limits[0].level,
            i32::from(v1::LimitLevel::Route)
        );
        assert_eq!(
            settings.routes[0].limits[0].mode,
            i32::from(v1::LimitMode::Exact)
        );
    }
}
