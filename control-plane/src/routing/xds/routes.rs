//! The route configuration (RDS): which pool serves a request, by the routing group the
//! filter wrote into `x-tollgate-route-group`.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::{
    data_source, header_value_option::HeaderAppendAction, DataSource, HeaderValue,
    HeaderValueOption,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, route, route_action, route_match, DirectResponseAction, HeaderMatcher, Route,
    RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};

use super::model::{cluster_name, RoutingTable};

/// The name of the route configuration; the listener's `rds.route_config_name`.
pub const ROUTE_CONFIG_NAME: &str = "tollgate_routes";
/// The request header, set by the filter, that names the routing group.
pub const ROUTE_GROUP_HEADER: &str = "x-tollgate-route-group";
/// What a request gets when no pool can serve it.
const NO_UPSTREAM_STATUS: u32 = 503;
const NO_UPSTREAM_BODY: &str = r#"{"error":{"code":"no_upstream_available","message":"no healthy upstream pool for this request"}}"#;

/// One virtual host for every domain: a route per routing group, then the default route.
///
/// A group goes to the first of its pools in `serving_pools` (those that exist and have an
/// endpoint not known to be unhealthy); when none qualifies it gets the 503, not the default pool, so one group's
/// traffic never spills into a pool it was not given. The default route goes to the default
/// pool under the same condition, else the 503. Group routes are ordered by header value
/// (they match exact values, so order does not change the outcome); of two routes for the
/// same value, the first listed wins.
pub(crate) fn route_configuration(
    serving_pools: &BTreeSet<String>,
    routing: &RoutingTable,
) -> RouteConfiguration {
    let serving = |name: &str| serving_pools.contains(name).then(|| cluster_name(name));
    let mut groups: Vec<_> = routing.group_routes.iter().collect();
    groups.sort_by(|a, b| a.group_header_value.cmp(&b.group_header_value));
    groups.dedup_by(|later, first| later.group_header_value == first.group_header_value);

    let mut routes: Vec<Route> = groups
        .into_iter()
        .map(|group| {
            let target = group.pools.iter().find_map(|pool| serving(pool));
            route_to(
                format!("group:{}", group.group_header_value),
                route_match(Some(&group.group_header_value)),
                target,
            )
        })
        .collect();
    let default_target = routing.default_pool.as_deref().and_then(serving);
    routes.push(route_to(
        "default".into(),
        route_match(None),
        default_target,
    ));

    RouteConfiguration {
        name: ROUTE_CONFIG_NAME.into(),
        virtual_hosts: vec![VirtualHost {
            name: "tollgate".into(),
            domains: vec!["*".into()],
            routes,
            ..VirtualHost::default()
        }],
        ..RouteConfiguration::default()
    }
}

fn route_match(group: Option<&str>) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        headers: group
            .map(|value| HeaderMatcher {
                name: ROUTE_GROUP_HEADER.into(),
                header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                    StringMatcher {
                        match_pattern: Some(string_matcher::MatchPattern::Exact(value.into())),
                        ..StringMatcher::default()
                    },
                )),
                ..HeaderMatcher::default()
            })
            .into_iter()
            .collect(),
        ..RouteMatch::default()
    }
}

/// A route to `cluster`, or the JSON 503 when there is none.
fn route_to(name: String, matcher: RouteMatch, cluster: Option<String>) -> Route {
    let mut route = Route {
        name,
        r#match: Some(matcher),
        ..Route::default()
    };
    match cluster {
        Some(cluster) => {
            route.action = Some(route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
                ..RouteAction::default()
            }));
        }
        None => {
            route.action = Some(route::Action::DirectResponse(DirectResponseAction {
                status: NO_UPSTREAM_STATUS,
                body: Some(DataSource {
                    specifier: Some(data_source::Specifier::InlineString(
                        NO_UPSTREAM_BODY.into(),
                    )),
                    ..DataSource::default()
                }),
                ..DirectResponseAction::default()
            }));
            // Envoy labels a direct response text/plain unless told otherwise.
            route.response_headers_to_add = vec![HeaderValueOption {
                header: Some(HeaderValue {
                    key: "content-type".into(),
                    value: "application/json".into(),
                    ..HeaderValue::default()
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
                ..HeaderValueOption::default()
            }];
        }
    }
    route
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::xds::model::{HealthState, Pool};
    use crate::routing::xds::snapshot::tests::{endpoint, healthy_pool, pool, routing};

    /// What each route does: (name, header value matched, cluster or 503).
    fn outline(config: &RouteConfiguration) -> Vec<(String, Option<String>, String)> {
        assert_eq!(config.name, "tollgate_routes");
        assert_eq!(config.virtual_hosts.len(), 1);
        let host = &config.virtual_hosts[0];
        assert_eq!(host.domains, ["*"]);
        host.routes
            .iter()
            .map(|route| {
                let matcher = route.r#match.as_ref().expect("match");
                assert_eq!(
                    matcher.path_specifier,
                    Some(route_match::PathSpecifier::Prefix("/".into()))
                );
                let header = matcher.headers.first().map(|h| {
                    assert_eq!(h.name, "x-tollgate-route-group");
                    match &h.header_match_specifier {
                        Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                            StringMatcher {
                                match_pattern: Some(string_matcher::MatchPattern::Exact(v)),
                                ..
                            },
                        )) => v.clone(),
                        other => panic!("unexpected header match {other:?}"),
                    }
                });
                let target = match &route.action {
                    Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(c)),
                        ..
                    })) => c.clone(),
                    Some(route::Action::DirectResponse(d)) => format!("{}", d.status),
                    other => panic!("unexpected action {other:?}"),
                };
                (route.name.clone(), header, target)
            })
            .collect()
    }

    fn build(pools: &[Pool], table: &RoutingTable) -> RouteConfiguration {
        let serving = pools
            .iter()
            .filter(|p| p.can_serve())
            .map(|p| p.name.clone())
            .collect();
        route_configuration(&serving, table)
    }

    fn row(name: &str, header: Option<&str>, target: &str) -> (String, Option<String>, String) {
        (name.into(), header.map(Into::into), target.into())
    }

    #[test]
    fn groups_take_their_first_pool_and_the_rest_the_default() {
        let pools = [
            healthy_pool("gold", "10.0.0.1"),
            healthy_pool("silver", "10.0.0.2"),
            healthy_pool("default", "10.0.0.3"),
        ];
        let table = routing(
            Some("default"),
            &[("premium", &["gold", "silver"]), ("basic", &["silver"])],
        );
        assert_eq!(
            outline(&build(&pools, &table)),
            [
                row("group:basic", Some("basic"), "tollgate_pool_silver"),
                row("group:premium", Some("premium"), "tollgate_pool_gold"),
                row("default", None, "tollgate_pool_default"),
            ]
        );
    }

    #[test]
    fn a_group_falls_back_past_unhealthy_empty_and_unknown_pools() {
        let pools = [
            pool(
                "down",
                vec![
                    endpoint("a", "10.0.0.1", 1, HealthState::Unhealthy),
                    endpoint("b", "10.0.0.2", 1, HealthState::Unhealthy),
                ],
            ),
            pool("empty", vec![]),
            pool(
                "unchecked",
                vec![
                    endpoint("a", "10.0.1.1", 1, HealthState::Unhealthy),
                    endpoint("b", "10.0.1.2", 1, HealthState::Unknown),
                ],
            ),
        ];
        let table = routing(None, &[("g", &["down", "missing", "empty", "unchecked"])]);
        assert_eq!(
            outline(&build(&pools, &table))[0],
            row("group:g", Some("g"), "tollgate_pool_unchecked")
        );
    }

    #[test]
    fn nothing_available_answers_a_json_503() {
        let pools = [pool(
            "down",
            vec![endpoint("a", "10.0.0.1", 1, HealthState::Unhealthy)],
        )];
        let table = routing(Some("down"), &[("g", &["down"])]);
        let config = build(&pools, &table);
        assert_eq!(
            outline(&config),
            [
                row("group:g", Some("g"), "503"),
                row("default", None, "503"),
            ]
        );
        let route = &config.virtual_hosts[0].routes[1];
        let Some(route::Action::DirectResponse(direct)) = &route.action else {
            panic!("not a direct response");
        };
        let body = match direct.body.as_ref().and_then(|b| b.specifier.as_ref()) {
            Some(data_source::Specifier::InlineString(body)) => body,
            other => panic!("unexpected body {other:?}"),
        };
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(json["error"]["code"], "no_upstream_available");
        assert_eq!(
            json["error"]["message"],
            "no healthy upstream pool for this request"
        );
        let header = route.response_headers_to_add[0]
            .header
            .as_ref()
            .expect("header");
        assert_eq!(
            (header.key.as_str(), header.value.as_str()),
            ("content-type", "application/json")
        );
    }

    #[test]
    fn without_a_default_pool_unrouted_requests_get_the_503() {
        let config = build(&[healthy_pool("a", "10.0.0.1")], &routing(None, &[]));
        assert_eq!(outline(&config), [row("default", None, "503")]);
    }

    #[test]
    fn the_first_route_for_a_group_value_wins() {
        let pools = [healthy_pool("a", "10.0.0.1"), healthy_pool("b", "10.0.0.2")];
        let table = routing(None, &[("g", &["b"]), ("g", &["a"])]);
        assert_eq!(
            outline(&build(&pools, &table))[..1],
            [row("group:g", Some("g"), "tollgate_pool_b")]
        );
    }
}
