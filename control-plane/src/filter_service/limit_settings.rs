//! Rate limits as the filter receives them: the deployment's limits on every change-feed
//! answer, and each principal's own buckets on every lookup.

use crate::accounts::api_key::ApiKey;
use crate::accounts::user::User;
use crate::config::{IpCounts, LimitsConfig};
use crate::limits::inherited::Inherited;
use crate::limits::rate_limits::{LimitLevel, LimitMode, RateLimit};
use crate::limits::subjects;
use crate::proto::v1;

/// The deployment-wide limits.
pub fn limit_settings(config: &LimitsConfig) -> v1::LimitSettings {
    v1::LimitSettings {
        ip: to_proto(subjects::ip_limits(config)),
        ip_counts_every_request: config.ip_counts == IpCounts::EveryRequest,
        routes: subjects::route_limits(config)
            .map(|(route, limits)| v1::RouteLimit {
                route: route.to_string(),
                limits: to_proto(limits),
            })
            .collect(),
        exact_fails_open: config.exact_fails_open,
    }
}

/// The user's buckets, as the control plane counts them (see [`subjects::user_limits`]).
pub fn user_limits(
    config: &LimitsConfig,
    user: &User,
    inherited: &Inherited,
) -> Vec<v1::RateLimit> {
    to_proto(subjects::user_limits(config, user, inherited))
}

/// The key's buckets, as the control plane counts them (see [`subjects::key_limits`]).
pub fn key_limits(config: &LimitsConfig, key: &ApiKey) -> Vec<v1::RateLimit> {
    to_proto(subjects::key_limits(config, key))
}

fn to_proto(limits: Vec<RateLimit>) -> Vec<v1::RateLimit> {
    limits.into_iter().map(limit_to_proto).collect()
}

fn limit_to_proto(limit: RateLimit) -> v1::RateLimit {
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
