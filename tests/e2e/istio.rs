//! Tollgate installed on Istio's ingress gateway as a WasmPlugin alone (no `tollgate_sync`
//! service): the workers elect one syncer, so the gateway keeps one watch on the control plane,
//! sessions verify, and revocations reach every worker within a second.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::http::Answer;
use tollgate_e2e::{IstioGateway, WasmPluginFilter, GATEWAY_WORKERS};

const PASSWORD: &str = "correct horse battery";
/// How soon a change must be refused on every worker.
const WITHIN: Duration = Duration::from_secs(1);
/// Requests in a row, each on a connection of its own, that must all be answered alike: enough
/// that the kernel hands both workers some.
const REQUESTS_IN_A_ROW: usize = 24;

/// Connections each worker of the gateway accepted so far.
fn worker_connections(gateway: &IstioGateway) -> Vec<u64> {
    let listener = format!("listener.127.0.0.1_{}", gateway.envoy.listen_port);
    (0..GATEWAY_WORKERS)
        .map(|worker| {
            gateway
                .envoy
                .stat(&format!("{listener}.worker_{worker}.downstream_cx_total"))
        })
        .collect()
}

fn every_worker_served_since(gateway: &IstioGateway, before: &[u64]) -> bool {
    worker_connections(gateway)
        .iter()
        .zip(before)
        .all(|(now, then)| now > then)
}

/// Requests on fresh connections until both workers answered; asserts every answer passes.
fn admitted_on_every_worker(gateway: &IstioGateway, headers: &[(&str, &str)]) -> Answer {
    let before = worker_connections(gateway);
    let mut last = None;
    for _ in 0..REQUESTS_IN_A_ROW {
        let answer = gateway.envoy.get("/", headers);
        assert_eq!(answer.status, 200, "{}", answer.text);
        last = Some(answer);
    }
    assert!(
        every_worker_served_since(gateway, &before),
        "one worker got every connection: {:?}",
        worker_connections(gateway)
    );
    last.expect("requests were sent")
}

/// Sends requests on fresh connections from `changed` on until `REQUESTS_IN_A_ROW` of them in
/// a row, served by both workers, are refused with `status` and `code`; asserts that the first
/// of those was sent within [`WITHIN`] of the change.
fn assert_refused_on_every_worker_within_a_second(
    gateway: &IstioGateway,
    changed: Instant,
    headers: &[(&str, &str)],
    (status, code): (u16, &str),
) {
    let took = refused_on_every_worker(gateway, changed, headers, (status, code));
    assert!(took <= WITHIN, "{code} on every worker after {took:?}");
    println!("{code} on every worker after {took:?}");
}

fn refused_on_every_worker(
    gateway: &IstioGateway,
    changed: Instant,
    headers: &[(&str, &str)],
    (status, code): (u16, &str),
) -> Duration {
    let mut row: Option<(Duration, Vec<u64>, usize)> = None;
    loop {
        let before = worker_connections(gateway);
        let sent = changed.elapsed();
        let answer = gateway.envoy.get("/", headers);
        if answer.status == status && answer.error_code() == code {
            let (first, at_first, count) = row.get_or_insert((sent, before, 0));
            *count += 1;
            if *count >= REQUESTS_IN_A_ROW && every_worker_served_since(gateway, at_first) {
                return *first;
            }
        } else {
            row = None;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(10),
            "still {} after 10 s: {}",
            answer.status,
            answer.text
        );
    }
}

#[test]
fn the_shipped_wasmplugin_calls_the_cluster_istio_builds_for_the_control_plane() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let filter = WasmPluginFilter::from_manifests(&root);
    assert_eq!(
        filter.control_plane_cluster,
        "outbound|18000||tollgate.tollgate-system.svc.cluster.local"
    );
    assert_eq!(filter.control_plane_cluster, filter.istio_cluster);
    assert_eq!(filter.name, "istio-system.tollgate");
    assert_eq!(filter.failure_policy, "FAIL_CLOSED");
    assert!(
        !filter.configuration.contains("control_plane_credential\""),
        "the credential is in the WasmPlugin: {}",
        filter.configuration
    );
    assert_eq!(filter.host_env_keys, [filter.credential_env.as_str()]);
}

#[test]
fn a_wasmplugin_gateway_keeps_one_watch_and_ends_sessions_on_every_worker_within_a_second() {
    let gateway = IstioGateway::start();
    gateway.control_plane.assert_one_watch_per_envoy(1);
    let cp = &gateway.control_plane;
    let user_id = cp.create_user_with(json!({"username": "alice", "password": PASSWORD}));
    let bearer = format!("Bearer {}", cp.login("alice", PASSWORD));

    let answer = admitted_on_every_worker(&gateway, &[("authorization", &bearer)]);
    assert_eq!(
        answer.body["headers"]["x-tollgate-user-id"],
        user_id.as_str()
    );
    assert_eq!(answer.body["headers"]["x-tollgate-auth-method"], "session");

    let ended = Instant::now();
    let logout = tollgate_e2e::http::send(
        tollgate_e2e::http::client()
            .post(cp.url("/api/v1/auth/logout"))
            .header("authorization", &bearer),
    );
    assert_eq!(logout.status, 204, "{}", logout.text);
    assert_refused_on_every_worker_within_a_second(
        &gateway,
        ended,
        &[("authorization", &bearer)],
        (401, "session_revoked"),
    );
    gateway.control_plane.assert_one_watch_per_envoy(1);
}

#[test]
fn a_wasmplugin_gateway_refuses_a_revoked_key_and_a_suspended_user_on_every_worker_within_a_second()
{
    let gateway = IstioGateway::start();
    let cp = &gateway.control_plane;
    let user_id = cp.create_user("bob");
    let (key_id, key) = cp.create_key(&user_id);
    let (_, kept_key) = cp.create_key(&user_id);
    for credential in [&key, &kept_key] {
        admitted_on_every_worker(&gateway, &[("x-api-key", credential)]);
    }

    let revoked = Instant::now();
    assert_eq!(cp.revoke_key(&user_id, &key_id).status, 204);
    assert_refused_on_every_worker_within_a_second(
        &gateway,
        revoked,
        &[("x-api-key", &key)],
        (401, "invalid_api_key"),
    );

    admitted_on_every_worker(&gateway, &[("x-api-key", &kept_key)]);
    let suspended = Instant::now();
    let answer = cp.patch_user(&user_id, json!({"status": "suspended"}));
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_refused_on_every_worker_within_a_second(
        &gateway,
        suspended,
        &[("x-api-key", &kept_key)],
        (403, "user_suspended"),
    );
    gateway.control_plane.assert_one_watch_per_envoy(1);
}
