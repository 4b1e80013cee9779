//! Which buckets a request draws on: its address's, its user's, its key's and its route's,
//! each under a subject name that every Envoy and the control plane agree on.

use std::net::IpAddr;
use std::rc::Rc;

use super::failing_addresses::{bucket_address, failure_horizon_us};
use crate::access::Scopes;
use crate::proto::{LimitLevel, LimitMode, LimitSettings, RateLimit};

/// The limits of one subject that are counted in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub subject: String,
    pub limits: Vec<RateLimit>,
}

/// A request's draws, split by where they are counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Counted in this Envoy's shared data (`local` and `fast` limits).
    pub here: Vec<Draw>,
    /// Counted by the control plane on every request (`exact` limits).
    pub exact: Vec<Draw>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.here.is_empty() && self.exact.is_empty()
    }

    fn add(&mut self, subject: impl Fn() -> String, limits: &[RateLimit]) {
        let (exact, here): (Vec<RateLimit>, Vec<RateLimit>) = limits
            .iter()
            .cloned()
            .partition(|limit| limit.mode() == LimitMode::Exact);
        for (draws, limits) in [(&mut self.here, here), (&mut self.exact, exact)] {
            if !limits.is_empty() {
                draws.push(Draw {
                    subject: subject(),
                    limits,
                });
            }
        }
    }
}

/// The deployment's route limits with their routes parsed once.
#[derive(Debug, Clone, Default)]
pub struct RouteLimits {
    routes: Vec<(String, Scopes, Vec<RateLimit>)>,
}

impl RouteLimits {
    /// Routes that cannot be parsed are skipped: the control plane validated them.
    pub fn from_settings(settings: &LimitSettings) -> Self {
        Self {
            routes: settings
                .routes
                .iter()
                .filter_map(|route| {
                    let scopes = Scopes::parse(std::slice::from_ref(&route.route)).ok()?;
                    Some((route.route.clone(), scopes, route.limits.clone()))
                })
                .collect(),
        }
    }
}

/// The subject that counts for every address once an Envoy holds its most address buckets.
pub const ADDRESS_OVERFLOW_SUBJECT: &str = "ip:overflow";

/// The bucket an address counts against: its own for IPv4, its /64 for IPv6 (one host
/// commonly holds a whole /64, and per-address buckets would let it make up new ones).
pub fn address_subject(address: IpAddr) -> String {
    match bucket_address(address) {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(network) => format!("ip:{network}/64"),
    }
}

/// The address limits, counted before authentication, against `subject`.
pub fn address_plan(settings: &LimitSettings, subject: String) -> Plan {
    let mut plan = Plan::default();
    // An address is only ever counted by this Envoy and its peers through `fast` syncs:
    // asking the control plane for every unauthenticated request would hand it the flood.
    let limits: Vec<RateLimit> = settings
        .ip
        .iter()
        .map(|limit| {
            let mut limit = *limit;
            if limit.mode() == LimitMode::Exact {
                limit.set_mode(LimitMode::Fast);
            }
            limit
        })
        .collect();
    plan.add(|| subject.clone(), &limits);
    plan
}

/// How long after its last failure an address may be refused, under `settings`' address
/// limits (see [`failure_horizon_us`]).
pub fn address_failure_horizon_us(settings: &LimitSettings, envoys: u32) -> i64 {
    let longest_window_secs = settings
        .ip
        .iter()
        .map(|limit| limit.window_seconds)
        .max()
        .unwrap_or(0);
    failure_horizon_us(longest_window_secs, envoys)
}

/// The limits of a principal: its user's and its key's. The same for each of its requests,
/// so it is worked out once per cached principal.
pub fn principal_plan(rate_limits: &[RateLimit], user_id: &str, key_id: &str) -> Plan {
    let mut plan = Plan::default();
    let of_level = |level: LimitLevel| -> Vec<RateLimit> {
        rate_limits
            .iter()
            .filter(|limit| limit.level() == level)
            .cloned()
            .collect()
    };
    plan.add(|| format!("user:{user_id}"), &of_level(LimitLevel::User));
    if !key_id.is_empty() {
        plan.add(|| format!("key:{key_id}"), &of_level(LimitLevel::Key));
    }
    plan
}

/// The limits of one request: its principal's, and those of the routes it matches (shared
/// with `principal` when it matches none, as most requests do).
pub fn request_plan(
    principal: &Rc<Plan>,
    routes: &RouteLimits,
    method: &str,
    path: &str,
) -> Rc<Plan> {
    let mut matching = routes
        .routes
        .iter()
        .filter(|(_, scopes, _)| scopes.permits(method, path))
        .peekable();
    if matching.peek().is_none() {
        return Rc::clone(principal);
    }
    let mut plan = Plan::clone(principal);
    for (route, _, limits) in matching {
        plan.add(|| format!("route:{route}"), limits);
    }
    Rc::new(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::RouteLimit;

    fn limit(level: LimitLevel, window_seconds: u32, mode: LimitMode) -> RateLimit {
        RateLimit {
            level: level.into(),
            window_seconds,
            requests: 10,
            burst: 10,
            mode: mode.into(),
        }
    }

    #[test]
    fn splits_exact_limits_from_the_ones_counted_here() {
        let limits = [
            limit(LimitLevel::User, 60, LimitMode::Fast),
            limit(LimitLevel::User, 3600, LimitMode::Exact),
            limit(LimitLevel::Key, 1, LimitMode::Local),
        ];
        let plan = principal_plan(&limits, "u_1", "k_1");
        assert_eq!(plan.here.len(), 2);
        assert_eq!(plan.here[0].subject, "user:u_1");
        assert_eq!(plan.here[1].subject, "key:k_1");
        assert_eq!(plan.exact.len(), 1);
        assert_eq!(plan.exact[0].limits[0].window_seconds, 3600);
    }

    #[test]
    fn sessions_have_no_key_bucket() {
        let limits = [limit(LimitLevel::Key, 1, LimitMode::Local)];
        let plan = principal_plan(&limits, "u_1", "");
        assert!(plan.is_empty());
    }

    #[test]
    fn route_limits_apply_where_their_route_matches() {
        let settings = LimitSettings {
            routes: vec![RouteLimit {
                route: "POST /api/".to_owned(),
                limits: vec![limit(LimitLevel::Route, 60, LimitMode::Local)],
            }],
            ..LimitSettings::default()
        };
        let routes = RouteLimits::from_settings(&settings);
        let principal = Rc::new(principal_plan(
            &[limit(LimitLevel::User, 60, LimitMode::Fast)],
            "u",
            "",
        ));
        let matched = request_plan(&principal, &routes, "POST", "/api/x");
        assert_eq!(matched.here[0].subject, "user:u");
        assert_eq!(matched.here[1].subject, "route:POST /api/");
        for (method, path) in [("GET", "/api/x"), ("POST", "/apix")] {
            let unmatched = request_plan(&principal, &routes, method, path);
            assert!(Rc::ptr_eq(&unmatched, &principal), "{method} {path}");
        }
    }

    #[test]
    fn the_failure_horizon_is_that_of_the_longest_address_window() {
        let settings = LimitSettings {
            ip: vec![
                limit(LimitLevel::Ip, 60, LimitMode::Fast),
                limit(LimitLevel::Ip, 3_600, LimitMode::Fast),
            ],
            ..LimitSettings::default()
        };
        assert_eq!(
            address_failure_horizon_us(&settings, 2),
            failure_horizon_us(3_600, 2)
        );
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        assert_eq!(address_subject(one), "ip:2001:db8:1:2::/64");
        assert_eq!(address_subject(one), address_subject(other));
        let v4: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(address_subject(v4), "ip:192.0.2.7");
    }

    #[test]
    fn address_limits_are_never_exact() {
        let settings = LimitSettings {
            ip: vec![limit(LimitLevel::Ip, 60, LimitMode::Exact)],
            ..LimitSettings::default()
        };
        let plan = address_plan(&settings, "ip:192.0.2.1".to_owned());
        assert!(plan.exact.is_empty());
        assert_eq!(plan.here[0].subject, "ip:192.0.2.1");
        assert_eq!(plan.here[0].limits[0].mode(), LimitMode::Fast);
    }
}
