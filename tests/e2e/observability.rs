//! Observability of a running gateway: every query of the Grafana dashboard returns data from a
//! real Prometheus scraping the control plane and Envoy, and the control plane's JSON log names
//! the request a filter callout was made for.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_e2e::prometheus::{Prometheus, ScrapeTarget};
use tollgate_e2e::{ControlPlaneOptions, Gateway, Layout};

const SCRAPES_WAIT: Duration = Duration::from_secs(60);

/// Every `expr` of the dashboard's panels.
fn dashboard_queries(layout: &Layout) -> Vec<String> {
    let path = layout.root.join("deploy/grafana/tollgate.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    queries
}

/// Good and refused traffic through Envoy and the admin API: allowed, rate-limited and
/// unauthenticated requests, and logins that succeed and fail.
fn send_traffic(gateway: &Gateway) {
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key_with(json!({
        "username": "metered",
        "rate_limits": {"requests_per_minute": 3, "mode": "local"},
    }));
    let statuses = gateway.envoy.statuses_with_key(&key, 6);
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let unknown = gateway
        .envoy
        .get_with_key("/", "tg_u_nobody_0123456789abcdef0123456789abcdef");
    assert_eq!(unknown.status, 401, "{}", unknown.text);
    assert_eq!(gateway.envoy.get("/", &[]).status, 401);

    cp.create_user_with(json!({"username": "lena", "password": "correct horse battery"}));
    assert_eq!(cp.login_answer("lena", "correct horse battery").status, 200);
    assert_eq!(cp.login_answer("lena", "wrong horse").status, 401);
}

#[test]
fn every_dashboard_query_returns_data_from_real_scrapes() {
    let gateway = Gateway::start();
    let queries = dashboard_queries(&gateway.layout);
    let prometheus = Prometheus::start(&[
        ScrapeTarget {
            job: "tollgate",
            address: format!("127.0.0.1:{}", gateway.control_plane.http_port),
            metrics_path: "/metrics",
        },
        ScrapeTarget {
            job: "envoy",
            address: format!("127.0.0.1:{}", gateway.envoy.admin_port),
            metrics_path: "/stats/prometheus",
        },
    ]);
    send_traffic(&gateway);

    // Each query waits for the scrapes that give it data (counters need two to show a rate).
    let deadline = Instant::now() + SCRAPES_WAIT;
    let mut empty = queries.clone();
    while !empty.is_empty() && Instant::now() < deadline {
        empty.retain(|expr| prometheus.query(expr).is_empty());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data after {SCRAPES_WAIT:?}: {empty:#?}"
    );
}

#[test]
fn json_log_lines_name_the_request_a_filter_callout_was_made_for() {
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[
        ("TOLLGATE_LOG__FORMAT", "json"),
        ("TOLLGATE_LOG", "tollgate::filter_service=debug,info"),
    ]));
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key("traced");
    let answer = gateway.envoy.get_with_key("/", &key);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let request_id = answer.body["headers"]["x-request-id"]
        .as_str()
        .expect("Envoy sends an x-request-id upstream")
        .to_owned();

    let deadline = Instant::now() + Duration::from_secs(10);
    let lookup = loop {
        let lines: Vec<Value> = cp
            .log()
            .lines()
            .filter(|line| line.starts_with('{'))
            .map(|line| serde_json::from_str(line).expect("each JSON line parses"))
            .collect();
        assert!(
            lines.iter().all(|line| line["level"].is_string()
                && line["target"].is_string()
                && line["fields"].is_object()),
            "{lines:#?}"
        );
        let found = lines
            .into_iter()
            .find(|line| line["fields"]["message"] == "key looked up");
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no lookup in {}", cp.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(lookup["span"]["name"], "grpc", "{lookup}");
    assert_eq!(lookup["span"]["request_id"], request_id, "{lookup}");
    assert_eq!(lookup["fields"]["result"], "found", "{lookup}");
}
