//! Pools over xDS through real Envoy: weights, health, live changes, NACKs, group routing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{ControlPlaneOptions, Echo, EnvoyOptions, Gateway};

fn backend_of(gateway: &Gateway, key: &str) -> String {
    let answer = gateway.envoy.get_with_key("/", key);
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["backend"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn weights_70_30_split_a_thousand_requests_within_five_points() {
    let gateway = Gateway::start();
    let (_, key) = gateway.control_plane.create_user_and_key("splitter");
    let to_a = (0..1000)
        .filter(|_| backend_of(&gateway, &key) == "backend-a")
        .count();
    assert!((650..=750).contains(&to_a), "backend-a got {to_a} of 1000");
}

#[test]
fn an_envoy_on_delta_xds_acts_on_a_weight_change() {
    let gateway = Gateway::start_with_envoy(
        ControlPlaneOptions::default(),
        EnvoyOptions {
            delta_xds: true,
            ..EnvoyOptions::default()
        },
    );
    let cp = &gateway.control_plane;
    let nodes = cp.admin("GET", "/api/v1/xds/nodes", None).body;
    let protocols: Vec<&serde_json::Value> = nodes["nodes"]
        .as_object()
        .expect("nodes")
        .values()
        .map(|node| &node["protocol"])
        .collect();
    assert_eq!(protocols, [&json!("delta")]);

    let (_, key) = cp.create_user_and_key("delta-splitter");
    for (port, weight) in [(gateway.upstream_b.port, 100), (gateway.upstream_a.port, 1)] {
        let id = find_backend(&gateway, port);
        let reweight = cp.admin(
            "PATCH",
            &format!("/api/v1/backends/{id}"),
            Some(json!({"weight": weight})),
        );
        assert_eq!(reweight.status, 200);
    }
    let weight_line = format!(
        "tollgate_pool_default::127.0.0.1:{}::weight::1",
        gateway.upstream_a.port
    );
    envoy_shows(&gateway, |clusters| clusters.contains(&weight_line));
    let to_b = (0..300)
        .filter(|_| backend_of(&gateway, &key) == "backend-b")
        .count();
    assert!(
        to_b >= 285,
        "backend-b got {to_b} of 300 at weight 100 to 1"
    );
}

#[test]
fn a_failing_backend_leaves_after_three_checks_and_returns_after_two() {
    let mut gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let settings = cp.admin(
        "PUT",
        "/api/v1/pools/default",
        Some(json!({"interval_secs": 1, "timeout_secs": 1, "unhealthy_threshold": 3, "healthy_threshold": 2})),
    );
    assert_eq!(
        settings.status, 400,
        "a timeout must be shorter than the interval"
    );
    let settings = cp.admin(
        "PUT",
        "/api/v1/pools/default",
        Some(json!({"interval_secs": 2, "timeout_secs": 1, "unhealthy_threshold": 3, "healthy_threshold": 2})),
    );
    assert_eq!(settings.status, 200, "{}", settings.text);
    let (_, key) = gateway.control_plane.create_user_and_key("watcher");
    let backend_b = find_backend(&gateway, gateway.upstream_b.port);
    wait_for_health(&gateway, &backend_b, "healthy", Duration::from_secs(10));

    gateway.upstream_b.stop();
    let failing = wait_for_health(&gateway, &backend_b, "unhealthy", Duration::from_secs(12));
    assert_eq!(failing["health"]["consecutive_failures"], 3);
    // Envoy follows: every request now lands on backend-a.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..50 {
        assert_eq!(backend_of(&gateway, &key), "backend-a");
    }

    gateway.upstream_b.resume();
    let back = wait_for_health(&gateway, &backend_b, "healthy", Duration::from_secs(10));
    assert_eq!(back["health"]["consecutive_successes"], 2);
    let audit = gateway
        .control_plane
        .admin("GET", "/api/v1/audit?per_page=200", None)
        .body;
    let transitions = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "backend.health_changed" && e["target"] == backend_b.as_str())
        .count();
    assert!(
        transitions >= 3,
        "unknown->healthy->unhealthy->healthy: {audit}"
    );
    let served = (0..100)
        .filter(|_| backend_of(&gateway, &key) == "backend-b")
        .count();
    assert!(served > 0, "backend-b never came back");
}

fn find_backend(gateway: &Gateway, port: u16) -> String {
    let list = gateway
        .control_plane
        .admin("GET", "/api/v1/backends", None)
        .body;
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|b| b["url"] == format!("http://127.0.0.1:{port}").as_str())
        .and_then(|b| b["id"].as_str())
        .expect("the backend")
        .to_string()
}

pub(super) fn wait_for_health(
    gateway: &Gateway,
    id: &str,
    status: &str,
    limit: Duration,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let backend = gateway
            .control_plane
            .admin("GET", &format!("/api/v1/backends/{id}"), None)
            .body;
        if backend["health"]["status"] == status {
            return backend;
        }
        assert!(
            started.elapsed() < limit,
            "not {status} after {limit:?}: {backend}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends requests from another thread until dropped; counts the ones that failed.
struct SteadyLoad {
    running: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SteadyLoad {
    fn start(url: String, key: String) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (r, s, f) = (running.clone(), sent.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let client = tollgate_e2e::http::client();
            while r.load(Ordering::Relaxed) {
                let ok = client
                    .get(&url)
                    .header("x-api-key", &key)
                    .send()
                    .is_ok_and(|response| response.status().is_success());
                s.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self {
            running,
            sent,
            failed,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> (u64, u64) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn adding_reweighting_and_removing_a_backend_reach_envoy_within_a_second_under_load() {
    let gateway = Gateway::start();
    let (_, key) = gateway.control_plane.create_user_and_key("steady");
    let layout = tollgate_e2e::Layout::discover();
    let third = Echo::start(&layout, "backend-c");
    let load = SteadyLoad::start(gateway.envoy.url("/"), key);
    std::thread::sleep(Duration::from_millis(300));

    let cp = &gateway.control_plane;
    let endpoint = format!("127.0.0.1:{}", third.port);
    let id = cp.add_backend(third.port, 50, "default");
    let added = envoy_shows(&gateway, |clusters| clusters.contains(&endpoint));
    let reweight = cp.admin(
        "PATCH",
        &format!("/api/v1/backends/{id}"),
        Some(json!({"weight": 5})),
    );
    assert_eq!(reweight.status, 200);
    let weight_line = format!("tollgate_pool_default::{endpoint}::weight::5");
    let reweighted = envoy_shows(&gateway, |clusters| clusters.contains(&weight_line));
    assert_eq!(
        cp.admin("DELETE", &format!("/api/v1/backends/{id}"), None)
            .status,
        204
    );
    let removed = envoy_shows(&gateway, |clusters| !clusters.contains(&endpoint));
    std::thread::sleep(Duration::from_millis(300));
    let (sent, failed) = load.stop();

    println!("add {added:?}, reweight {reweighted:?}, remove {removed:?}; {sent} requests");
    for took in [added, reweighted, removed] {
        assert!(took < Duration::from_secs(1), "Envoy took {took:?}");
    }
    assert!(sent > 20, "the load barely ran: {sent}");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the changes"
    );
}

/// How long until Envoy's `/clusters` satisfies `done`; panics after 5 s.
fn envoy_shows(gateway: &Gateway, done: impl Fn(&str) -> bool) -> Duration {
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{}/clusters", gateway.envoy.admin_port);
    loop {
        let clusters = tollgate_e2e::http::client()
            .get(&url)
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        if done(&clusters) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "Envoy never showed it"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn users_of_different_groups_reach_different_pools_through_the_same_route() {
    let gateway = Gateway::start();
    let layout = tollgate_e2e::Layout::discover();
    let premium = Echo::start(&layout, "premium-1");
    let cp = &gateway.control_plane;
    cp.add_backend(premium.port, 100, "premium");
    let group_id =
        cp.create_group(json!({"name": "premium", "priority": 10, "pools": ["premium"]}));
    let (vip, vip_key) = cp.create_user_and_key("vip");
    cp.add_group_member(&group_id, &vip);
    let (_, regular_key) = cp.create_user_and_key("regular");
    gateway.envoy.wait_for_stat(
        "cluster.tollgate_pool_premium.membership_total",
        1,
        Duration::from_secs(5),
    );

    for _ in 0..10 {
        assert_eq!(backend_of(&gateway, &vip_key), "premium-1");
        assert_ne!(backend_of(&gateway, &regular_key), "premium-1");
    }
    // A client cannot pick the group's pool by sending the routing header itself.
    let spoofed = gateway.envoy.get(
        "/",
        &[
            ("x-api-key", &regular_key),
            ("x-tollgate-route-group", &group_id),
        ],
    );
    assert_ne!(spoofed.body["backend"], "premium-1");
}

#[test]
fn a_group_without_an_available_pool_gets_503_unless_fallback_is_configured() {
    for (fallback, expected) in [("false", 503), ("true", 200)] {
        let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[(
            "TOLLGATE_ROUTING__FALLBACK_TO_DEFAULT_POOL",
            fallback,
        )]));
        let cp = &gateway.control_plane;
        let group_id = cp.create_group(json!({"name": "stranded", "pools": ["nowhere"]}));
        let (user, key) = cp.create_user_and_key("stranded_user");
        cp.add_group_member(&group_id, &user);
        let answer = gateway.envoy.get_with_key("/", &key);
        assert_eq!(
            answer.status, expected,
            "fallback {fallback}: {}",
            answer.text
        );
        if expected == 503 {
            assert_eq!(answer.error_code(), "no_upstream_available");
        }
    }
}
