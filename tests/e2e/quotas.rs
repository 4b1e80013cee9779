//! Quotas through Envoy: usage reported by the filter, accounted durably by the control
//! plane, and refused with 402 once used up.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_e2e::{ControlPlane, ControlPlaneOptions, EnvoyOptions, Gateway, RedisServer};

/// The user's quota entry called `name`, as `GET /api/v1/users/{id}/quota` answers it.
fn quota(cp: &ControlPlane, user: &str, name: &str) -> Value {
    let answer = cp.admin("GET", &format!("/api/v1/users/{user}/quota"), None);
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["quotas"]
        .as_array()
        .and_then(|quotas| quotas.iter().find(|q| q["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {}", answer.text))
}

/// Waits until the quota's `field` reaches `expected`; panics with the last answer.
fn wait_for_usage(cp: &ControlPlane, user: &str, name: &str, field: &str, expected: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entry = quota(cp, user, name);
        if entry[field].as_f64() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}.{field} never became {expected}: {entry}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn usage_is_accounted_for_an_envoy_with_a_long_node_id() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    // Istio names a sidecar's Envoy like this; batch ids must not grow with it.
    let node_id = format!(
        "sidecar~10.244.17.203~{}-7d9f8b6c5d-x2k9q.payments~payments.svc.cluster.local",
        "checkout-".repeat(8)
    );
    let envoy = gateway.another_envoy(EnvoyOptions {
        node_id: Some(node_id),
        ..EnvoyOptions::default()
    });
    let (user, key) = cp.create_user_and_key_with(json!({
        "username": "sidecar",
        "quotas": {"monthly_requests": 100},
    }));

    assert_eq!(envoy.statuses_with_key(&key, 3), [200; 3]);
    wait_for_usage(cp, &user, "monthly_requests", "used", 3.0);
}

#[test]
fn refused_requests_are_not_charged() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (user, key) = cp.create_user_and_key_with(json!({
        "username": "refused",
        "rate_limits": {"requests_per_minute": 2, "mode": "local"},
        "quotas": {"monthly_requests": 100},
    }));
    assert_eq!(
        gateway.envoy.statuses_with_key(&key, 5),
        [200, 200, 429, 429, 429]
    );
    wait_for_usage(cp, &user, "monthly_requests", "used", 2.0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(quota(cp, &user, "monthly_requests")["used"], 2);
}

#[test]
fn bandwidth_and_reported_storage_are_accounted() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (user, key) = cp.create_user_and_key_with(json!({
        "username": "storing",
        "quotas": {"storage_quota_mb": 1},
    }));
    let store = gateway.envoy.get(
        "/objects/1",
        &[("x-api-key", &key), ("x-echo-storage-bytes", "2000000")],
    );
    assert_eq!(store.status, 200, "{}", store.text);
    assert!(
        store.headers.get("x-tollgate-storage-bytes").is_none(),
        "the upstream's report is not passed to the client"
    );
    wait_for_usage(cp, &user, "storage_quota_mb", "used_bytes", 2_000_000.0);
    let bandwidth = quota(cp, &user, "monthly_bandwidth_mb");
    assert!(
        bandwidth["used_bytes"].as_f64().is_some_and(|b| b > 200.0),
        "request and response bytes are counted: {bandwidth}"
    );

    let read = || gateway.envoy.get_with_key("/objects/1", &key);
    gateway
        .envoy
        .until(Duration::from_secs(5), read, |a| a.status == 402);
    assert_eq!(read().body["error"]["quota"], "storage");
    let delete = tollgate_e2e::http::send(
        tollgate_e2e::http::client()
            .delete(gateway.envoy.url("/objects/1"))
            .header("x-api-key", &key)
            .header("x-echo-storage-bytes", "-2000000"),
    );
    assert_eq!(
        delete.status, 200,
        "deleting frees storage: {}",
        delete.text
    );
    gateway
        .envoy
        .until(Duration::from_secs(5), read, |a| a.status == 200);
}

#[test]
fn a_report_retried_after_a_timeout_is_counted_once() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (user, key) = cp.create_user_and_key("retried");
    assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
    wait_for_usage(cp, &user, "monthly_requests", "used", 1.0);

    assert_eq!(gateway.envoy.statuses_with_key(&key, 5), [200; 5]);
    // Frozen, the control plane takes the report but answers only after Envoy gave up on
    // it (1 s); Envoy sends the same batch again.
    cp.freeze(true);
    std::thread::sleep(Duration::from_millis(3500));
    cp.freeze(false);
    wait_for_usage(cp, &user, "monthly_requests", "used", 6.0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(quota(cp, &user, "monthly_requests")["used"], 6);
    assert!(
        gateway
            .envoy
            .stat("wasmcustom.tollgate.usage.report_failures")
            >= 1,
        "the report timed out at least once"
    );
}

#[test]
fn a_redis_restart_loses_no_quota_usage() {
    let mut redis = RedisServer::start();
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[(
        "TOLLGATE_REDIS__URL",
        &redis.url(),
    )]));
    let cp = &gateway.control_plane;
    let (user, key) = cp.create_user_and_key_with(json!({
        "username": "through-redis",
        "rate_limits": {"requests_per_minute": 1000, "mode": "fast"},
    }));
    let send = |count: usize| {
        for _ in 0..count {
            assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
        }
    };
    send(10);
    wait_for_usage(cp, &user, "monthly_requests", "used", 10.0);

    redis.stop();
    send(10);
    redis.resume();
    send(10);
    wait_for_usage(cp, &user, "monthly_requests", "used", 30.0);
}

#[test]
fn envoys_own_errors_are_not_charged() {
    let mut gateway = Gateway::start();
    let (user, key) = gateway.control_plane.create_user_and_key_with(json!({
        "username": "unlucky",
        "quotas": {"monthly_requests": 100},
    }));
    assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
    wait_for_usage(
        &gateway.control_plane,
        &user,
        "monthly_requests",
        "used",
        1.0,
    );

    gateway.upstream_a.stop();
    gateway.upstream_b.stop();
    for _ in 0..3 {
        let answer = gateway.envoy.get_with_key("/", &key);
        assert_eq!(answer.status, 503, "{}", answer.text);
    }
    // Two report intervals: anything counted would have arrived.
    std::thread::sleep(Duration::from_secs(2));
    let used = &quota(&gateway.control_plane, &user, "monthly_requests")["used"];
    assert_eq!(used, 1, "Envoy's own 503s were charged");
}
