//! One rate-limit counter suite, run against the in-process counters and against Redis
//! (at `TOLLGATE_TEST_REDIS_URL`, default 127.0.0.1:6379, each test under a key prefix of
//! its own); then Redis failures, and the limit calls over real gRPC.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tollgate::config::{Config, RedisConfig};
use tollgate::limits::counters::{self, CounterError, Counters, Draw, Limit, LocalCounters};
use tollgate::proto::v1::filter_service_client::FilterServiceClient;
use tollgate::proto::v1::filter_service_server::FilterServiceServer;
use tollgate::proto::v1::{BucketRef, CheckLimitsRequest, RateLimit, SyncLimitsRequest};
use tollgate::server::services;
use tonic::Code;

const HOUR_MS: u64 = 3_600_000;

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
            .charge("envoy-a", &[draw(count)])
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
        async move { counters.charge(node, &draw).await.expect("charge").envoys }
    };
    assert_eq!(count("envoy-a").await, 1);
    assert_eq!(count("envoy-b").await, 2);
    assert_eq!(count("envoy-a").await, 2);
}

/// A loopback address where nothing listens.
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

/// The filter service of a whole control plane on a free loopback port.
async fn filter_service(
    adjust: impl FnOnce(&mut Config),
) -> (
    FilterServiceClient<tonic::transport::Channel>,
    support::TestDatabase,
    tempfile::TempDir,
) {
    let db = support::TestDatabase::sqlite().await;
    let data_dir = tempfile::tempdir().expect("data dir");
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        ..Config::default()
    };
    config.database.url = db.url.clone();
    adjust(&mut config);
    let config = config.validate().expect("valid config");
    let store = Arc::new(db.open().await);
    let services = services(&config, store).await.expect("services");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(FilterServiceServer::new(services.filter))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("gRPC server");
    });
    let client = FilterServiceClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    (client, db, data_dir)
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

#[tokio::test]
async fn limit_calls_name_the_field_they_refuse() {
    let (mut client, _db, _dir) = filter_service(|_| {}).await;
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
        (
            vec![bucket("user:u_1", 60, 0, 10, 1)],
            "buckets[0].limit.requests",
        ),
        (
            vec![bucket("user:u_1", 60, 1_000_000_001, 10, 1)],
            "buckets[0].limit.requests",
        ),
        (
            vec![bucket("user:u_1", 60, 10, 0, 1)],
            "buckets[0].limit.burst",
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
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    }
    let status = client
        .sync_limits(SyncLimitsRequest {
            node_id: "n".repeat(513),
            buckets: vec![good],
        })
        .await
        .expect_err("refused");
    assert!(status.message().starts_with("node_id"), "{status:?}");
}

#[tokio::test]
async fn limit_calls_answer_over_grpc_from_either_backend() {
    for url in [String::new(), redis_url()] {
        let (mut client, _db, _dir) =
            filter_service(|config| config.redis = redis_config(url)).await;
        let tight = bucket("key:k_1", 3600, 1, 1, 1);
        for expected in [true, false] {
            let checked = client
                .check_limits(CheckLimitsRequest {
                    buckets: vec![tight.clone()],
                })
                .await
                .expect("check")
                .into_inner();
            assert_eq!(checked.admitted, expected);
            assert_eq!(checked.buckets.len(), 1);
        }
        let synced = client
            .sync_limits(SyncLimitsRequest {
                node_id: String::new(),
                buckets: vec![tight],
            })
            .await
            .expect("sync")
            .into_inner();
        assert_eq!(synced.envoys, 1);
        assert!(synced.buckets[0].backlog_ms > i64::try_from(HOUR_MS).expect("fits"));
    }
}

#[tokio::test]
async fn a_down_redis_makes_limit_calls_unavailable() {
    let address = closed_port().await;
    let (mut client, _db, _dir) = filter_service(|config| {
        config.redis = redis_config(format!("redis://{address}"));
        config.redis.command_timeout_ms = 250;
    })
    .await;
    let status = client
        .check_limits(CheckLimitsRequest {
            buckets: vec![bucket("user:u_1", 60, 10, 10, 1)],
        })
        .await
        .expect_err("unavailable");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}
