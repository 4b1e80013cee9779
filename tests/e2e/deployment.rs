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
        set(&["envoy", "tollgate", "postgres", "redis", "openldap", "oidc"])
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
