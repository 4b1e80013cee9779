//! The control plane's HTTP surface as a running process.

use tollgate_e2e::control_plane::ADMIN_KEY;
use tollgate_e2e::{ControlPlane, ControlPlaneOptions, Layout};

#[test]
fn health_readiness_and_metrics_answer() {
    let cp = ControlPlane::start(&Layout::discover(), ControlPlaneOptions::default());
    let health = cp.get("/api/v1/health", None);
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(cp.get("/api/v1/ready", None).status, 200);
    let metrics = cp.get("/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text.contains("tollgate_http_requests_total"),
        "{}",
        metrics.text
    );
}

#[test]
fn the_imported_admin_key_is_never_logged() {
    let cp = ControlPlane::start(&Layout::discover(), ControlPlaneOptions::default());
    let (_, key) = cp.create_user_and_key("ivan");
    let log = cp.log();
    assert!(
        !log.contains(ADMIN_KEY) && !log.contains(&key),
        "a key was logged: {log}"
    );
}
