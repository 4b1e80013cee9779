//! Faults: the control plane away, bad configuration, ports in use.

use std::time::{Duration, Instant};

use tollgate_e2e::{
    ControlPlane, ControlPlaneOptions, Envoy, EnvoyOptions, Gateway, Layout, Port, Process,
};

#[test]
fn with_the_control_plane_down_cached_keys_work_and_unknown_keys_fail_closed() {
    let mut gateway = Gateway::start();
    let (_, key) = gateway.control_plane.create_user_and_key("grace");
    // Warm the cache on both workers' shared data.
    assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);

    gateway.control_plane.stop();
    for _ in 0..5 {
        let answer = gateway.envoy.get_with_key("/", &key);
        assert_eq!(answer.status, 200, "cached key refused: {}", answer.text);
    }
    let started = Instant::now();
    let answer = gateway.envoy.get(
        "/",
        &[("x-api-key", "tg_never_seen_before_key_0123456789abcdef")],
    );
    answer.assert_refused(503, "control_plane_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the refusal hung"
    );
}

#[test]
fn a_control_plane_on_postgres_serves_the_same_slice() {
    let url = tollgate_e2e::control_plane::fresh_postgres_database();
    let gateway = Gateway::start_with(ControlPlaneOptions {
        database_url: Some(url.url.clone()),
        ..ControlPlaneOptions::default()
    });
    let cp = &gateway.control_plane;
    let (user_id, key) = cp.create_user_and_key("heidi");
    let answer = gateway.envoy.get_with_key("/", &key);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.body["headers"]["x-tollgate-user-id"],
        user_id.as_str()
    );
    assert_eq!(
        cp.get("/api/v1/health", None).body["checks"]["database"]["status"],
        "ok"
    );
}

fn run_to_exit(mut process: Process) -> (Option<i32>, String) {
    let code = process.wait_exit(Duration::from_secs(20));
    (code, process.log())
}

#[test]
fn malformed_configuration_is_one_clear_line_and_a_failing_exit() {
    let layout = Layout::discover();
    let cp = ControlPlane::start(&layout, ControlPlaneOptions::default());
    let dir = tempfile::tempdir().expect("dir");
    let bad_yaml = dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "keys:\n  prefix: [not, a, prefix]\n").expect("write");
    let unknown_key = dir.path().join("unknown.yaml");
    std::fs::write(&unknown_key, "databse:\n  url: sqlite://x.db\n").expect("write");

    for (args, expected) in [
        (
            vec!["--config", bad_yaml.to_str().expect("path"), "check-config"],
            "keys.prefix",
        ),
        (
            vec![
                "--config",
                unknown_key.to_str().expect("path"),
                "check-config",
            ],
            "databse",
        ),
        (
            vec!["--config", "/nonexistent/tollgate.yaml", "check-config"],
            "/nonexistent/tollgate.yaml",
        ),
    ] {
        let (code, log) = run_to_exit(Process::spawn("tollgate", cp.command(&args)));
        assert_eq!(code, Some(1), "{args:?}: {log}");
        assert!(
            log.contains(expected),
            "{args:?} does not name {expected}: {log}"
        );
        assert_eq!(log.trim().lines().count(), 1, "{args:?}: {log}");
        assert!(!log.contains("panicked"), "{log}");
    }

    let mut command = cp.command(&["serve"]);
    command.env("TOLLGATE_GRPC__LISTEN", "localhost");
    let (code, log) = run_to_exit(Process::spawn("tollgate", command));
    assert_eq!(code, Some(1));
    assert!(
        log.contains("grpc.listen") && !log.contains("panicked"),
        "{log}"
    );
}

#[test]
fn a_port_in_use_is_one_clear_line_and_a_failing_exit() {
    let layout = Layout::discover();
    let cp = ControlPlane::start(&layout, ControlPlaneOptions::default());
    let grpc = Port::reserve();
    let mut command = cp.command(&["serve"]);
    command.env(
        "TOLLGATE_GRPC__LISTEN",
        format!("127.0.0.1:{}", grpc.number()),
    );
    let (code, log) = run_to_exit(Process::spawn("tollgate", command));
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("http.listen") && log.contains("in use"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn envoy_refuses_a_bad_filter_configuration_or_a_missing_wasm() {
    let layout = Layout::discover();
    let options = EnvoyOptions {
        filter_config: Some(r#"{"callout_timeout_ms":"soon"}"#.to_string()),
        ..EnvoyOptions::default()
    };
    let (_dir, command) = Envoy::validation_command(&layout, &options);
    let (code, log) = run_to_exit(Process::spawn("envoy-validate", command));
    assert_ne!(
        code,
        Some(0),
        "a bad filter configuration was accepted: {log}"
    );
    assert!(
        log.contains("callout_timeout_ms"),
        "the error does not name the field: {log}"
    );

    let mut missing = layout.clone();
    missing.filter_wasm = layout.root.join("no/such/filter.wasm");
    let (_dir, command) = Envoy::validation_command(&missing, &EnvoyOptions::default());
    let (code, log) = run_to_exit(Process::spawn("envoy-validate", command));
    assert_ne!(code, Some(0), "a missing wasm file was accepted: {log}");
}
