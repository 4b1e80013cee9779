//! The shipped `docker-compose.yml` keeps each tier apart: what each network joins, who holds
//! a password, where Envoy's admin interface listens.

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml::Value;

fn repository_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn compose() -> Value {
    serde_yaml::from_str(&repository_file("docker-compose.yml")).expect("docker-compose.yml")
}

/// The services attached to `network`.
fn members(compose: &Value, network: &str) -> BTreeSet<String> {
    let services = compose["services"].as_mapping().expect("services");
    services
        .iter()
        .filter(|(_, service)| {
            service["networks"]
                .as_sequence()
                .is_some_and(|joined| joined.iter().any(|n| n.as_str() == Some(network)))
        })
        .map(|(name, _)| name.as_str().expect("service name").to_owned())
        .collect()
}

fn networks_of(compose: &Value, service: &str) -> Vec<String> {
    compose["services"][service]["networks"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{service} names its networks"))
        .iter()
        .map(|network| network.as_str().expect("network name").to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

#[test]
fn compose_gives_each_tier_its_own_network() {
    let compose = compose();
    for network in networks_of(&compose, "postgres")
        .into_iter()
        .chain(networks_of(&compose, "redis"))
    {
        assert_eq!(
            members(&compose, &network),
            set(&["postgres", "redis", "tollgate"]),
            "the databases share {network} with others"
        );
        assert_eq!(compose["networks"][&network]["internal"], true);
    }
    for echo in ["echo-a", "echo-b"] {
        for network in networks_of(&compose, echo) {
            assert!(
                !members(&compose, &network).contains("tollgate"),
                "{echo} reaches the control plane over {network}"
            );
        }
    }
    let with_the_control_plane: BTreeSet<String> = networks_of(&compose, "tollgate")
        .iter()
        .flat_map(|network| members(&compose, network))
        .collect();
    assert_eq!(
        with_the_control_plane,
        set(&[
            "envoy",
            "tollgate",
            "postgres",
            "redis",
            "openldap",
            "oidc",
            "prometheus"
        ])
    );
}

#[test]
fn compose_observability_profile_scrapes_metrics_only() {
    let compose = compose();
    for service in ["prometheus", "grafana"] {
        assert_eq!(
            compose["services"][service]["profiles"][0], "observability",
            "{service} runs only in the observability profile"
        );
    }
    for network in networks_of(&compose, "grafana") {
        assert_eq!(
            members(&compose, &network),
            set(&["grafana", "prometheus"]),
            "Grafana reaches more than Prometheus over {network}"
        );
    }
    let bootstrap: Value =
        serde_yaml::from_str(&repository_file("envoy/bootstrap.compose.yaml")).expect("bootstrap");
    let metrics_listener = bootstrap["static_resources"]["listeners"]
        .as_sequence()
        .expect("listeners")
        .iter()
        .find(|listener| listener["name"] == "envoy_metrics")
        .expect("a metrics listener");
    let routes = &metrics_listener["filter_chains"][0]["filters"][0]["typed_config"]
        ["route_config"]["virtual_hosts"][0]["routes"];
    assert_eq!(routes[0]["match"]["path"], "/stats/prometheus");
    assert_eq!(routes[0]["route"]["cluster"], "envoy_admin");
    assert_eq!(routes[1]["direct_response"]["status"], 404);
    assert_eq!(routes.as_sequence().map(Vec::len), Some(2));

    let prometheus: Value =
        serde_yaml::from_str(&repository_file("deploy/prometheus/prometheus.yml"))
            .expect("prometheus.yml");
    let scrapes: Vec<(&str, &str, &str)> = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|job| {
            (
                job["job_name"].as_str().unwrap_or_default(),
                job["metrics_path"].as_str().unwrap_or_default(),
                job["static_configs"][0]["targets"][0]
                    .as_str()
                    .unwrap_or_default(),
            )
        })
        .collect();
    let metrics_port = metrics_listener["address"]["socket_address"]["port_value"]
        .as_u64()
        .expect("metrics port");
    assert_eq!(
        scrapes,
        [
            ("tollgate", "/metrics", "tollgate:8090"),
            (
                "envoy",
                "/stats/prometheus",
                format!("envoy:{metrics_port}").as_str()
            ),
        ]
    );
}

#[test]
fn compose_databases_need_passwords_from_the_environment() {
    let compose = compose();
    let postgres = &compose["services"]["postgres"]["environment"];
    assert!(postgres.get("POSTGRES_HOST_AUTH_METHOD").is_none());
    assert!(postgres["POSTGRES_PASSWORD"]
        .as_str()
        .is_some_and(|value| value.starts_with("${TOLLGATE_POSTGRES_PASSWORD:?")));
    let redis: Vec<&str> = compose["services"]["redis"]["command"]
        .as_sequence()
        .expect("redis command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let password = redis
        .iter()
        .position(|argument| *argument == "--requirepass")
        .and_then(|at| redis.get(at + 1))
        .expect("redis requires a password");
    assert!(password.starts_with("${TOLLGATE_REDIS_PASSWORD:?"));
}

#[test]
fn compose_envoy_admin_listens_on_loopback_only() {
    let bootstrap: Value =
        serde_yaml::from_str(&repository_file("envoy/bootstrap.compose.yaml")).expect("bootstrap");
    assert_eq!(
        bootstrap["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
    let compose = compose();
    let published: Vec<&str> = compose["services"]["envoy"]["ports"]
        .as_sequence()
        .expect("envoy ports")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(published.iter().all(|port| port.starts_with("127.0.0.1:")));
    assert!(!published.iter().any(|port| port.ends_with(":9901")));
}
