//! Health checks through real `tollgate` processes: what they write, how they learn of
//! backends, and how replicas share them.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;
use support::replica::{Replica, Upstreams};
use support::TestDatabase;

const WRITES: &str = "tollgate_database_writes_total";
const FULL_LOADS: &str = "tollgate_health_check_full_loads_total";
const BECAME_HEALTHY: &str = "tollgate_backend_health_changes_total{to=\"healthy\"}";

/// Checks every `interval` seconds, healthy after one success, unhealthy after two failures.
fn checks_every(interval: &str) -> Vec<(&'static str, String)> {
    vec![
        ("POOLS__HEALTH_CHECK__INTERVAL_SECS", interval.to_string()),
        ("POOLS__HEALTH_CHECK__TIMEOUT_SECS", "1".to_string()),
        ("POOLS__HEALTH_CHECK__HEALTHY_THRESHOLD", "1".to_string()),
        ("POOLS__HEALTH_CHECK__UNHEALTHY_THRESHOLD", "2".to_string()),
        ("POOLS__MAX_BACKENDS", "100000".to_string()),
    ]
}

async fn start(database_url: &str, settings: &[(&'static str, String)]) -> Replica {
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Replica::start(database_url, &settings).await
}

/// Creates backends `numbers` through the admin API; answers their ids in order.
async fn create_backends(
    replica: &Replica,
    upstreams: &Upstreams,
    numbers: std::ops::Range<u32>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for n in numbers {
        let (status, created) = replica
            .admin("POST", "/api/v1/backends", Some(upstreams.backend(n)))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    ids
}

async fn backend(replica: &Replica, id: &str) -> Value {
    let (status, backend) = replica
        .admin("GET", &format!("/api/v1/backends/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{backend}");
    backend
}

/// Waits up to `limit` for `done`, polling every 100 ms; panics with `what` otherwise.
async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_status(replica: &Replica, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        last = backend(replica, id).await;
        if last["health"]["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("backend {id} is not {status}: {last}");
}

#[tokio::test]
async fn many_healthy_backends_cost_the_database_at_most_one_write_a_second() {
    const BACKENDS: u32 = 300;
    const WINDOW: Duration = Duration::from_secs(32);
    let upstreams = Upstreams::start().await;
    let db = TestDatabase::sqlite().await;
    let replica = start(&db.url, &checks_every("8")).await;
    let ids = create_backends(&replica, &upstreams, 0..BACKENDS).await;
    eventually(Duration::from_secs(30), "every backend healthy", || async {
        replica.metric(BECAME_HEALTHY).await >= f64::from(BACKENDS)
    })
    .await;

    let (writes_before, started) = (replica.metric(WRITES).await, Instant::now());
    tokio::time::sleep(WINDOW).await;
    let writes = replica.metric(WRITES).await - writes_before;
    let checks = upstreams
        .hits_since(started)
        .values()
        .map(Vec::len)
        .sum::<usize>();
    let per_second = writes / WINDOW.as_secs_f64();
    println!(
        "{BACKENDS} healthy backends checked every 8 s: {checks} checks and {writes} database \
         writes in {WINDOW:?} ({per_second:.2} writes/s)"
    );
    assert!(
        checks >= 3 * BACKENDS as usize,
        "the checks went on: {checks}"
    );
    assert!(per_second <= 1.0, "{writes} writes in {WINDOW:?}");

    // The summary keeps what the admin API shows of the checks current.
    let shown = backend(&replica, &ids[0]).await;
    assert_eq!(shown["health"]["status"], "healthy");
    assert!(
        shown["health"]["consecutive_successes"].as_u64() >= Some(2),
        "{shown}"
    );
    let last_checked: chrono::DateTime<chrono::Utc> = shown["health"]["last_checked_at"]
        .as_str()
        .and_then(|at| at.parse().ok())
        .expect("last_checked_at");
    let age = chrono::Utc::now() - last_checked;
    assert!(age < chrono::Duration::seconds(8 + 30 + 5), "{shown}");
}

#[tokio::test]
async fn a_backend_going_down_and_up_is_written_at_once_and_audited() {
    let upstreams = Upstreams::start().await;
    let db = TestDatabase::sqlite().await;
    let replica = start(&db.url, &checks_every("2")).await;
    let ids = create_backends(&replica, &upstreams, 0..3).await;
    for id in &ids {
        wait_for_status(&replica, id, "healthy").await;
    }
    upstreams.set_failing(1, true);
    let down = wait_for_status(&replica, &ids[1], "unhealthy").await;
    assert_eq!(down["health"]["consecutive_failures"], 2, "{down}");
    assert_eq!(down["health"]["last_error"], "answered 503", "{down}");
    assert_eq!(
        backend(&replica, &ids[0]).await["health"]["status"],
        "healthy"
    );

    upstreams.set_failing(1, false);
    let up = wait_for_status(&replica, &ids[1], "healthy").await;
    assert_eq!(up["health"]["consecutive_successes"], 1, "{up}");

    let (status, audit) = replica
        .admin("GET", "/api/v1/audit?per_page=100", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let changes: Vec<(String, String)> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "backend.health_changed" && e["target"] == ids[1].as_str())
        .map(|e| {
            let detail = |key: &str| e["details"][key].as_str().unwrap_or_default().to_string();
            (detail("from"), detail("to"))
        })
        .collect();
    let mut expected = vec![
        ("unknown".to_string(), "healthy".to_string()),
        ("healthy".to_string(), "unhealthy".to_string()),
        ("unhealthy".to_string(), "healthy".to_string()),
    ];
    if changes.first() == expected.last() {
        // Listed newest first.
        expected.reverse();
    }
    assert_eq!(changes, expected, "{audit}");
}

#[tokio::test]
async fn backends_added_or_removed_through_the_api_are_followed_without_reading_them_all() {
    let upstreams = Upstreams::start().await;
    let db = TestDatabase::sqlite().await;
    let replica = start(&db.url, &checks_every("2")).await;
    let ids = create_backends(&replica, &upstreams, 0..2).await;
    for id in &ids {
        wait_for_status(&replica, id, "healthy").await;
    }
    let added = create_backends(&replica, &upstreams, 2..3).await;
    let healthy = wait_for_status(&replica, &added[0], "healthy").await;
    assert_eq!(healthy["health"]["consecutive_successes"], 1, "{healthy}");
    assert!(upstreams.hits().iter().any(|hit| hit.backend == 2));

    let (status, _) = replica
        .admin("DELETE", &format!("/api/v1/backends/{}", ids[0]), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A check already under way may still arrive; none after that.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let hits = upstreams.hits_since(since);
    assert!(
        !hits.contains_key(&0),
        "the removed backend is still checked"
    );
    assert!(hits.contains_key(&1) && hits.contains_key(&2), "{hits:?}");
    assert_eq!(replica.metric(FULL_LOADS).await, 1.0, "one load, at start");
}

#[tokio::test]
async fn two_replicas_on_postgres_check_each_backend_once_and_take_over_a_killed_one_s() {
    const BACKENDS: u32 = 40;
    const INTERVAL: Duration = Duration::from_secs(6);
    let upstreams = Upstreams::start().await;
    let db = TestDatabase::postgres().await;
    let settings = checks_every("6");
    let mut first = start(&db.url, &settings).await;
    create_backends(&first, &upstreams, 0..BACKENDS).await;
    eventually(
        Duration::from_secs(15),
        "the first replica checks",
        || async { upstreams.hits().len() >= BACKENDS as usize },
    )
    .await;
    let first_agent = upstreams.hits()[0].user_agent.clone();
    let _second = start(&db.url, &settings).await;
    eventually(
        Duration::from_secs(15),
        "the second replica checks",
        || async {
            upstreams
                .hits()
                .iter()
                .any(|hit| hit.user_agent != first_agent)
        },
    )
    .await;
    // The first replica notices the second at its next lease renewal.
    tokio::time::sleep(INTERVAL).await;

    let window = Instant::now();
    tokio::time::sleep(INTERVAL * 2).await;
    let hits = upstreams.hits_since(window);
    assert_eq!(hits.len(), BACKENDS as usize, "every backend is checked");
    let mut first_share = Vec::new();
    for (n, checks) in &hits {
        let agents: HashSet<&str> = checks.iter().map(|hit| hit.user_agent.as_str()).collect();
        assert_eq!(agents.len(), 1, "backend {n} checked by {agents:?}");
        assert!(
            checks.len() <= 3,
            "backend {n} checked {} times",
            checks.len()
        );
        if agents.contains(first_agent.as_str()) {
            first_share.push(*n);
        }
    }
    println!(
        "two replicas: the first checks {} of {BACKENDS} backends",
        first_share.len()
    );
    assert!(!first_share.is_empty() && first_share.len() < BACKENDS as usize);

    first.kill();
    let killed = Instant::now();
    tokio::time::sleep(INTERVAL * 2).await;
    let after = upstreams.hits_since(killed);
    let takeover = first_share
        .iter()
        .map(|n| {
            after
                .get(n)
                .and_then(|checks| checks.first())
                .map_or(INTERVAL * 2, |hit| hit.at - killed)
        })
        .max()
        .unwrap_or_default();
    println!("the killed replica's backends were checked again within {takeover:?}");
    assert!(takeover <= INTERVAL, "taken over after {takeover:?}");
}
