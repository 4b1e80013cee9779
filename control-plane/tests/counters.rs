//! One rate-limit counter suite, run against the in-process counters and against Redis
//! (at `TOLLGATE_TEST_REDIS_URL`, default 127.0.0.1:6379, each test under a key prefix of
//! its own); then Redis failures, and the limit calls over real gRPC.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::app::Api;
use support::grpc::FilterClient;
use tokio::net::TcpListener;
use tollgate::config::{Config, RedisConfig, RouteLimitConfig};
use tollgate::limits::counters::{self, CounterError, Counters, Draw, Limit, LocalCounters};
use tollgate::proto::v1::{
    BucketRef, CheckLimitsRequest, CheckLimitsResponse, RateLimit, SyncLimitsRequest,
    SyncLimitsResponse,
};
use tonic::Code;

const HOUR_MS: u64 = 3_600_000;
/// More Envoys than any test here counts, unless it is about the cap.
const MAX_ENVOYS: u32 = 64;

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn redis_config(url: String) -> RedisConfig {
    RedisConfig {
        url,
        key_prefix: format!("tollgate-test-{}:", support::rand_suffix()),
        // Generous, so a busy machine does not fail the functional tests.
        command_timeout_ms: 2_000,
    }
}

fn in_process() -> Arc<dyn Counters> {
    Arc::new(LocalCounters::new())
}

fn in_redis() -> Arc<dyn Counters> {
    counters::open(&redis_config(redis_url())).expect("Redis counters")
}

/// A sync batch id no other call uses.
fn new_batch() -> String {
    format!("batch-{}", support::rand_suffix())
}

/// `burst` requests at once, then one an hour: nothing refills while a test runs.
fn hourly(subject: &str, burst: u64) -> Draw {
    Draw {
        subject: subject.into(),
        limit: Limit {
            window_seconds: 3600,
            requests: 1,
            burst,
        },
        count: 1,
    }
}

macro_rules! against_both_backends {
    ($($name:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::in_process()).await;
                }
            )*
        }
        mod in_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::in_redis()).await;
                }
            )*
        }
    };
}

against_both_backends!(
    a_burst_is_admitted_then_refused,
    a_full_bucket_stops_every_other_bucket_of_the_check,
    concurrent_checks_admit_exactly_the_burst,
    charges_are_never_refused_and_report_the_debt,
    syncing_envoys_are_counted_once_each,
    envoys_beyond_the_cap_are_charged_but_not_counted,
    a_repeated_batch_is_charged_once,
);

async fn a_burst_is_admitted_then_refused(counters: Arc<dyn Counters>) {
    let draw = [hourly("user:burst", 3)];
    for taken in 1..=3 {
        let checked = counters.check(&draw).await.expect("check");
        assert!(checked.admitted, "request {taken}");
        let backlog = checked.backlog_ms[0];
        assert!(
            backlog <= taken * HOUR_MS && backlog > taken * HOUR_MS - 60_000,
            "{backlog}"
        );
    }
    let refused = counters.check(&draw).await.expect("check");
    assert!(!refused.admitted);
    assert!(refused.backlog_ms[0] > 3 * HOUR_MS - 60_000, "{refused:?}");
    assert!(refused.backlog_ms[0] <= 3 * HOUR_MS, "{refused:?}");
}

async fn a_full_bucket_stops_every_other_bucket_of_the_check(counters: Arc<dyn Counters>) {
    let roomy = hourly("user:roomy", 10);
    let tight = hourly("route:tight", 1);
    let both = [roomy.clone(), tight];
    assert!(counters.check(&both).await.expect("first").admitted);
    let refused = counters.check(&both).await.expect("second");
    assert!(!refused.admitted);
    assert!(refused.backlog_ms[0] <= HOUR_MS, "{refused:?}");
    assert!(refused.backlog_ms[1] <= HOUR_MS, "{refused:?}");
    let alone = counters.check(&[roomy]).await.expect("alone");
    assert!(alone.admitted);
    assert!(
        alone.backlog_ms[0] > 2 * HOUR_MS - 60_000 && alone.backlog_ms[0] <= 2 * HOUR_MS,
        "the refused check took from the roomy bucket: {alone:?}"
    );
}

async fn concurrent_checks_admit_exactly_the_burst(counters: Arc<dyn Counters>) {
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let counters = counters.clone();
            tokio::spawn(async move { counters.check(&[hourly("key:busy", 50)]).await })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        if task.await.expect("task").expect("check").admitted {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 50);
}

async fn charges_are_never_refused_and_report_the_debt(counters: Arc<dyn Counters>) {
    // 5 a minute: T = 12 s, a full burst 60 s, the most debt 60 s + 60 s.
    let limit = Limit {
        window_seconds: 60,
        requests: 5,
        burst: 5,
    };
    let draw = |count| Draw {
        subject: "ip:192.0.2.7".into(),
        limit,
        count,
    };
    // 7 requests: 84 s; a million: capped at 120 s.
    for (count, expected_ms) in [(7, 84_000), (1_000_000, 120_000)] {
        let charged = counters
            .charge("envoy-a", &new_batch(), MAX_ENVOYS, &[draw(count)])
            .await
            .expect("charge");
        let backlog = charged.backlog_ms[0];
        assert!(
            backlog <= expected_ms && backlog > expected_ms - 1_000,
            "{charged:?}"
        );
    }
    let checked = counters.check(&[draw(1)]).await.expect("check");
    assert!(!checked.admitted);
}

async fn syncing_envoys_are_counted_once_each(counters: Arc<dyn Counters>) {
    let draw = [hourly("user:synced", 100)];
    let count = |node: &'static str| {
        let counters = counters.clone();
        let draw = draw.clone();
        async move {
            counters
                .charge(node, &new_batch(), MAX_ENVOYS, &draw)
                .await
                .expect("charge")
                .envoys
        }
    };
    assert_eq!(count("envoy-a").await, 1);
    assert_eq!(count("envoy-b").await, 2);
    assert_eq!(count("envoy-a").await, 2);
}

async fn envoys_beyond_the_cap_are_charged_but_not_counted(counters: Arc<dyn Counters>) {
    let draw = [hourly("user:capped", 100)];
    for node in ["envoy-a", "envoy-b"] {
        let charged = counters
            .charge(node, &new_batch(), 2, &draw)
            .await
            .expect("charge");
        assert!(charged.counted, "{node}");
    }
    let beyond = counters
        .charge("envoy-c", &new_batch(), 2, &draw)
        .await
        .expect("charge");
    assert_eq!((beyond.envoys, beyond.counted), (2, false));
    let again = counters
        .charge("envoy-a", &new_batch(), 2, &draw)
        .await
        .expect("charge");
    assert_eq!((again.envoys, again.counted), (2, true));
    assert!(
        again.backlog_ms[0] > 4 * HOUR_MS - 60_000,
        "every charge counted: {again:?}"
    );
}

/// A loopback address where nothing listens.
async fn a_repeated_batch_is_charged_once(counters: Arc<dyn Counters>) {
    let draw = [hourly("user:retried", 10)];
    let charge = |batch_id: String| {
        let counters = counters.clone();
        let draw = draw.clone();
        async move {
            counters
                .charge("envoy-a", &batch_id, MAX_ENVOYS, &draw)
                .await
                .expect("charge")
        }
    };
    let batch = new_batch();
    let first = charge(batch.clone()).await;
    assert!(!first.repeated);
    let retried = charge(batch).await;
    assert!(retried.repeated);
    assert!(
        retried.backlog_ms[0] <= first.backlog_ms[0] && retried.backlog_ms[0] > HOUR_MS - 60_000,
        "charged again: {retried:?}"
    );
    let next = charge(new_batch()).await;
    assert!(!next.repeated);
    assert!(next.backlog_ms[0] > 2 * HOUR_MS - 60_000, "{next:?}");
}

async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

fn quick_redis(address: SocketAddr) -> Arc<dyn Counters> {
    let mut config = redis_config(format!("redis://{address}"));
    config.command_timeout_ms = 250;
    counters::open(&config).expect("Redis counters")
}

async fn assert_fails_quickly(counters: Arc<dyn Counters>) {
    let started = Instant::now();
    let result = counters.check(&[hourly("user:unreachable", 1)]).await;
    assert!(
        matches!(
            result,
            Err(CounterError::Timeout(_) | CounterError::Redis(_))
        ),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(counters.ping().await.is_err());
}

#[tokio::test]
async fn an_unreachable_redis_fails_calls_quickly() {
    assert_fails_quickly(quick_redis(closed_port().await)).await;
}

#[tokio::test]
async fn a_redis_that_never_answers_fails_calls_quickly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept().await {
            connections.push(connection);
        }
    });
    assert_fails_quickly(quick_redis(address)).await;
    held.abort();
}

#[tokio::test]
async fn the_connection_recovers_after_redis_drops_it() {
    // Only this test uses database 9, so its connection is the one found there.
    let database = 9;
    let counters = counters::open(&redis_config(format!("{}/{database}", redis_url())))
        .expect("Redis counters");
    let draw = [hourly("user:reconnects", 100)];
    counters.check(&draw).await.expect("first check");

    let client = redis::Client::open(redis_url()).expect("client");
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .expect("client list");
    let ids: Vec<&str> = clients
        .lines()
        .filter(|line| {
            line.split(' ')
                .any(|field| field == format!("db={database}"))
        })
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .collect();
    assert_eq!(ids.len(), 1, "{clients}");
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(ids[0])
        .query_async(&mut admin)
        .await
        .expect("client kill");
    assert_eq!(killed, 1);

    let mut attempts = 0;
    loop {
        attempts += 1;
        match counters.check(&draw).await {
            Ok(checked) => {
                assert!(checked.admitted);
                break;
            }
            Err(error) if attempts < 3 => {
                eprintln!("attempt {attempts}: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no recovery after {attempts} attempts: {error}"),
        }
    }
}

#[tokio::test]
async fn health_reports_a_down_redis_as_degraded_not_down() {
    let address = closed_port().await;
    let api = support::app::Api::start_with(|config| {
        config.redis = redis_config(format!("redis://{address}"));
        config.redis.command_timeout_ms = 250;
    })
    .await;
    let (status, health) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["redis"]["status"], "down", "{health}");
    assert_eq!(health["checks"]["database"]["status"], "ok", "{health}");

    let api = support::app::Api::start().await;
    let (_, health) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["checks"].get("redis").is_none(), "{health}");
}

/// A whole control plane whose gRPC port is called with the Envoy credential.
async fn filter_service(adjust: impl FnOnce(&mut Config)) -> (Api, FilterClient) {
    let api = Api::start_with(adjust).await;
    let client = api.filter_client().await;
    (api, client)
}

fn bucket(subject: &str, window_seconds: u32, requests: u64, burst: u64, count: u32) -> BucketRef {
    BucketRef {
        subject: subject.into(),
        limit: Some(RateLimit {
            window_seconds,
            requests,
            burst,
            ..RateLimit::default()
        }),
        count,
    }
}

/// A user whose own limit is `settings`, and the subject of their bucket.
async fn limited_user(api: &Api, username: &str, settings: Value) -> String {
    let user = api
        .create_user_with(json!({"username": username, "rate_limits": settings}))
        .await;
    format!("user:{}", user["id"].as_str().expect("id"))
}

async fn check(client: &mut FilterClient, buckets: Vec<BucketRef>) -> CheckLimitsResponse {
    client
        .check_limits(CheckLimitsRequest { buckets })
        .await
        .expect("check")
        .into_inner()
}

async fn sync(
    client: &mut FilterClient,
    node_id: &str,
    buckets: Vec<BucketRef>,
) -> SyncLimitsResponse {
    sync_batch(client, node_id, &new_batch(), buckets).await
}

async fn sync_batch(
    client: &mut FilterClient,
    node_id: &str,
    batch_id: &str,
    buckets: Vec<BucketRef>,
) -> SyncLimitsResponse {
    client
        .sync_limits(SyncLimitsRequest {
            node_id: node_id.into(),
            buckets,
            batch_id: batch_id.into(),
        })
        .await
        .expect("sync")
        .into_inner()
}

#[tokio::test]
async fn limit_calls_name_the_field_they_refuse() {
    let (_api, mut client) = filter_service(|_| {}).await;
    let good = bucket("user:u_1", 60, 10, 10, 1);
    let cases = [
        (vec![], "buckets"),
        (vec![good.clone(); 65], "buckets"),
        (vec![bucket("", 60, 10, 10, 1)], "buckets[0].subject"),
        (
            vec![good.clone(), bucket(&"x".repeat(513), 60, 10, 10, 1)],
            "buckets[1].subject",
        ),
        (
            vec![bucket("user:k_1", 60, 10, 10, 1)],
            "buckets[0].subject",
        ),
        (
            vec![bucket("planet:mars", 60, 10, 10, 1)],
            "buckets[0].subject",
        ),
        (
            vec![BucketRef {
                limit: None,
                ..good.clone()
            }],
            "buckets[0].limit",
        ),
        (
            vec![bucket("user:u_1", 30, 10, 10, 1)],
            "buckets[0].limit.window_seconds",
        ),
        (vec![bucket("user:u_1", 60, 10, 10, 0)], "buckets[0].count"),
        (
            vec![bucket("user:u_1", 60, 10, 10, 1_000_001)],
            "buckets[0].count",
        ),
        (vec![good.clone(), good.clone()], "buckets[1]"),
    ];
    for (buckets, field) in cases {
        let status = client
            .check_limits(CheckLimitsRequest {
                buckets: buckets.clone(),
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().starts_with(field), "{field}: {status:?}");
        let status = client
            .sync_limits(SyncLimitsRequest {
                node_id: "envoy-a".into(),
                buckets,
                batch_id: new_batch(),
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().starts_with(field), "{field}: {status:?}");
    }
    let refused_syncs = [
        ("n".repeat(513), new_batch(), "node_id"),
        ("envoy-a".into(), String::new(), "batch_id"),
        ("envoy-a".into(), "b".repeat(129), "batch_id"),
    ];
    for (node_id, batch_id, field) in refused_syncs {
        let status = client
            .sync_limits(SyncLimitsRequest {
                node_id,
                buckets: vec![good.clone()],
                batch_id,
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().starts_with(field), "{field}: {status:?}");
    }
    let longest = sync_batch(&mut client, "envoy-a", &"b".repeat(128), vec![good]).await;
    assert_eq!(longest.buckets.len(), 1);
}

#[tokio::test]
async fn limit_calls_answer_over_grpc_from_either_backend() {
    for url in [String::new(), redis_url()] {
        let (api, mut client) = filter_service(|config| {
            config.redis = redis_config(url);
            config.limits.key.requests_per_hour = Some(1);
        })
        .await;
        let (user_id, _) = api.user_with_key("keyed").await;
        let (_, keys) = api
            .admin("GET", &format!("/api/v1/users/{user_id}/keys"), None)
            .await;
        let key_id = keys["items"][0]["id"].as_str().expect("key id");
        let tight = bucket(&format!("key:{key_id}"), 3600, 1, 1, 1);
        for expected in [true, false] {
            let checked = check(&mut client, vec![tight.clone()]).await;
            assert_eq!(checked.admitted, expected);
            assert_eq!(checked.buckets.len(), 1);
        }
        let synced = sync(&mut client, "", vec![tight]).await;
        assert_eq!(synced.envoys, 1);
        assert!(synced.buckets[0].backlog_ms > i64::try_from(HOUR_MS).expect("fits"));
    }
}

#[tokio::test]
async fn buckets_are_counted_with_the_control_planes_limits_not_the_callers() {
    let (api, mut client) = filter_service(|config| {
        config.limits.routes.push(RouteLimitConfig {
            route: "POST /api/".into(),
            requests_per_second: None,
            requests_per_minute: Some(1),
            requests_per_hour: None,
            burst: None,
            mode: None,
        });
    })
    .await;
    let user = limited_user(&api, "two-a-minute", json!({"requests_per_minute": 2})).await;
    // The caller claims a billion a minute; the user may make two.
    let generous = || bucket(&user, 60, 1_000_000_000, 1_000_000_000, 1);
    for _ in 0..2 {
        assert!(check(&mut client, vec![generous()]).await.admitted);
    }
    let refused = check(&mut client, vec![generous()]).await;
    assert!(!refused.admitted);
    // Two taken at 30 s each: the bucket is a minute ahead.
    assert!(
        (59_000..=60_000).contains(&refused.buckets[0].backlog_ms),
        "{refused:?}"
    );
    let route = || bucket("route:POST /api/", 60, 1_000_000_000, 1_000_000_000, 1);
    assert!(check(&mut client, vec![route()]).await.admitted);
    assert!(!check(&mut client, vec![route()]).await.admitted);
}

#[tokio::test]
async fn buckets_the_control_plane_does_not_know_are_left_alone() {
    let (api, mut client) = filter_service(|_| {}).await;
    let known = limited_user(&api, "known", json!({"requests_per_minute": 1})).await;
    let (_, deleted) = api
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "soon-gone"})),
        )
        .await;
    let deleted_id = deleted["id"].as_str().expect("id");
    let (status, _) = api
        .admin("DELETE", &format!("/api/v1/users/{deleted_id}"), None)
        .await;
    assert!(status.is_success(), "{status}");
    let unknown = [
        bucket("user:u_nobody", 60, 1, 1, 1),
        bucket(&format!("user:{deleted_id}"), 60, 1, 1, 1),
        bucket("key:k_nobody", 60, 1, 1, 1),
        bucket("route:GET /unconfigured/", 60, 1, 1, 1),
        // The user has no per-second limit.
        bucket(&known, 1, 1, 1, 1),
    ];
    for _ in 0..3 {
        let checked = check(&mut client, unknown.to_vec()).await;
        assert!(checked.admitted);
        assert!(
            checked.buckets.iter().all(|b| b.backlog_ms == 0),
            "{checked:?}"
        );
        let synced = sync(&mut client, "envoy-a", unknown.to_vec()).await;
        assert!(
            synced.buckets.iter().all(|b| b.backlog_ms == 0),
            "{synced:?}"
        );
    }
    // A known bucket beside them is counted, and answered in its place.
    let mut mixed = unknown.to_vec();
    mixed.insert(2, bucket(&known, 60, 1, 1, 1));
    let checked = check(&mut client, mixed.clone()).await;
    assert!(checked.admitted);
    assert!(checked.buckets[2].backlog_ms > 59_000, "{checked:?}");
    assert!(!check(&mut client, mixed).await.admitted);
}

#[tokio::test]
async fn a_caller_cannot_lock_a_user_out_for_longer_than_their_own_limit_allows() {
    let (api, mut client) = filter_service(|_| {}).await;
    let victim = limited_user(
        &api,
        "victim",
        json!({"requests_per_second": 2, "mode": "exact"}),
    )
    .await;
    // One request an hour... per second, with room for a million at once.
    let hostile = |count| bucket(&victim, 1, 1, 1_000_000_000, count);
    let checked = check(&mut client, vec![hostile(1_000_000)]).await;
    assert!(!checked.admitted, "more than the user's burst at once");
    sync(&mut client, "envoy-a", vec![hostile(1_000_000)]).await;
    let honest = || bucket(&victim, 1, 2, 2, 1);
    let locked = check(&mut client, vec![honest()]).await;
    assert!(!locked.admitted);
    // The most debt a sync leaves: a full burst (1 s) and one window (1 s).
    assert!(locked.buckets[0].backlog_ms <= 2_000, "{locked:?}");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert!(check(&mut client, vec![honest()]).await.admitted);
}

#[tokio::test]
async fn invented_node_ids_beyond_the_cap_do_not_divide_the_envoys_share() {
    for url in [String::new(), redis_url()] {
        let (api, mut client) = filter_service(|config| {
            config.redis = redis_config(url);
            config.limits.max_envoys = 3;
        })
        .await;
        let user = limited_user(&api, "shared", json!({"requests_per_minute": 100})).await;
        let draw = || vec![bucket(&user, 60, 100, 100, 1)];
        assert_eq!(sync(&mut client, "envoy-real", draw()).await.envoys, 1);
        for invented in 0..20 {
            let synced = sync(&mut client, &format!("invented-{invented}"), draw()).await;
            assert!(synced.envoys <= 3, "{synced:?}");
        }
        assert_eq!(sync(&mut client, "envoy-real", draw()).await.envoys, 3);
    }
}

#[tokio::test]
async fn a_down_redis_makes_limit_calls_unavailable() {
    let address = closed_port().await;
    let (api, mut client) = filter_service(|config| {
        config.redis = redis_config(format!("redis://{address}"));
        config.redis.command_timeout_ms = 250;
    })
    .await;
    let user = limited_user(&api, "unlucky", json!({"requests_per_minute": 10})).await;
    let status = client
        .check_limits(CheckLimitsRequest {
            buckets: vec![bucket(&user, 60, 10, 10, 1)],
        })
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

/// Ten an hour for `POST /retried/`: a limit every control plane of the test knows from its
/// configuration, so a second one on the same Redis counts the same bucket.
fn retried_route(config: &mut Config) {
    config.limits.routes.push(RouteLimitConfig {
        route: "POST /retried/".into(),
        requests_per_second: None,
        requests_per_minute: None,
        requests_per_hour: Some(10),
        burst: None,
        mode: None,
    });
}

/// Three requests of the retried route: the bucket is 18 minutes ahead.
const THREE_OF_TEN_AN_HOUR_MS: i64 = 3 * 360_000;

fn three_of_the_retried_route() -> Vec<BucketRef> {
    vec![bucket("route:POST /retried/", 3600, 10, 10, 3)]
}

#[tokio::test]
async fn a_resent_sync_is_charged_once_by_either_backend() {
    for url in [String::new(), redis_url()] {
        let (_api, mut client) = filter_service(|config| {
            config.redis = redis_config(url);
            retried_route(config);
        })
        .await;
        let batch = new_batch();
        let sent = sync_batch(&mut client, "envoy-a", &batch, three_of_the_retried_route()).await;
        let resent = sync_batch(&mut client, "envoy-a", &batch, three_of_the_retried_route()).await;
        let backlog = resent.buckets[0].backlog_ms;
        assert!(
            backlog <= sent.buckets[0].backlog_ms && backlog > THREE_OF_TEN_AN_HOUR_MS - 60_000,
            "{sent:?} then {resent:?}"
        );
        let next = sync(&mut client, "envoy-a", three_of_the_retried_route()).await;
        assert!(
            next.buckets[0].backlog_ms > 2 * THREE_OF_TEN_AN_HOUR_MS - 60_000,
            "a new batch is charged: {next:?}"
        );
    }
}

#[tokio::test]
async fn a_sync_resent_to_a_restarted_control_plane_is_charged_once() {
    let shared = redis_config(redis_url());
    let batch = new_batch();
    let (api, mut client) = filter_service(|config| {
        config.redis = shared.clone();
        retried_route(config);
    })
    .await;
    let sent = sync_batch(&mut client, "envoy-a", &batch, three_of_the_retried_route()).await;
    drop((client, api));

    let (_restarted, mut client) = filter_service(|config| {
        config.redis = shared.clone();
        retried_route(config);
    })
    .await;
    let resent = sync_batch(&mut client, "envoy-a", &batch, three_of_the_retried_route()).await;
    let backlog = resent.buckets[0].backlog_ms;
    assert!(
        backlog <= sent.buckets[0].backlog_ms && backlog > THREE_OF_TEN_AN_HOUR_MS - 60_000,
        "{sent:?} then {resent:?}"
    );
}
