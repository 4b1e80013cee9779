//! Hot reload of the configuration through the real binary: on SIGHUP and when the file is
//! replaced, quota and rate-limit defaults and the log filter take effect at once, a key that
//! needs a restart is named in the log and the audit instead, and an invalid file changes
//! nothing.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::replica::Replica;
use support::TestDatabase;
use tollgate::proto::v1::{LimitLevel, LookupUserRequest, RateLimit, WatchChangesRequest};

fn config(monthly_requests: u32, access_token_ttl_secs: u32, log_level: Option<&str>) -> String {
    let log = log_level.map_or(String::new(), |level| format!("log:\n  level: {level}\n"));
    format!(
        "quotas:\n  defaults: {{monthly_requests: {monthly_requests}}}\n\
         login:\n  max_failures: {}\n\
         sessions:\n  access_token_ttl_secs: {access_token_ttl_secs}\n{log}",
        monthly_requests / 10
    )
}

/// Lines of the log that say a reload was done (logged at `info`).
fn reloads_logged(replica: &Replica) -> usize {
    replica
        .log()
        .lines()
        .filter(|line| line.contains("configuration reloaded"))
        .count()
}

/// Puts `text` in place of `file` as editors do: written beside it, then renamed over it.
fn replace(file: &Path, text: &str) {
    let next = file.with_extension("next");
    std::fs::write(&next, text).expect("write");
    std::fs::rename(&next, file).expect("rename");
}

async fn monthly_requests(replica: &Replica, user: &str) -> Value {
    let (status, quota) = replica
        .admin("GET", &format!("/api/v1/users/{user}/quota"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{quota}");
    quota["quotas"][0]["limit"].clone()
}

/// Waits until the user's monthly request quota is `limit`.
async fn until_quota(replica: &Replica, user: &str, limit: u32) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while monthly_requests(replica, user).await != json!(limit) {
        assert!(Instant::now() < deadline, "the quota never became {limit}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `config.reloaded` entries, oldest first, once there are `count`.
async fn reloads(replica: &Replica, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, page) = replica
            .admin("GET", "/api/v1/audit?action=config.reloaded", None)
            .await;
        let mut items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= count {
            items.reverse();
            return items;
        }
        assert!(Instant::now() < deadline, "{count} reloads never audited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_and_a_replaced_file_reload_what_may_change_and_name_what_needs_a_restart() {
    let db = TestDatabase::sqlite().await;
    // SIGHUP first: the file is a link to one in another folder, whose changes the watcher
    // of the link's folder does not see.
    let (folder, elsewhere) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let target = elsewhere.path().join("tollgate.yaml");
    std::fs::write(&target, config(100, 900, None)).expect("write");
    let file = folder.path().join("tollgate.yaml");
    std::os::unix::fs::symlink(&target, &file).expect("link");
    let replica = Replica::start_with_file(&db.url, Some(&file), &[]).await;
    let (status, user) = replica
        .admin("POST", "/api/v1/users", Some(json!({"username": "ann"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let user = user["id"].as_str().expect("id").to_string();
    assert_eq!(monthly_requests(&replica, &user).await, json!(100));

    std::fs::write(&target, config(200, 600, Some("warn"))).expect("write");
    replica.hang_up();
    until_quota(&replica, &user, 200).await;
    let first = &reloads(&replica, 1).await[0];
    assert_eq!(first["target"], file.display().to_string());
    assert_eq!(
        first["details"],
        json!({
            "changed": ["log.level", "login.max_failures", "quotas.defaults.monthly_requests", "sessions.access_token_ttl_secs"],
            "applied": ["log.level", "login.max_failures", "quotas.defaults.monthly_requests"],
            "needs_restart": ["sessions.access_token_ttl_secs"],
        })
    );
    let log = replica.log();
    assert!(
        log.lines().any(|line| line.contains("needs a restart")
            && line.contains("sessions.access_token_ttl_secs")),
        "{log}"
    );
    assert_eq!(
        reloads_logged(&replica),
        0,
        "at `warn`, the reload's `info` is not logged"
    );

    replace(&file, &config(300, 600, None));
    until_quota(&replica, &user, 300).await;
    let second = &reloads(&replica, 2).await[1];
    assert_eq!(
        second["details"]["applied"],
        json!([
            "log.level",
            "login.max_failures",
            "quotas.defaults.monthly_requests"
        ])
    );
    assert_eq!(
        reloads_logged(&replica),
        1,
        "back at `TOLLGATE_LOG`'s `info`"
    );
    assert_eq!(
        second["details"]["needs_restart"],
        json!(["sessions.access_token_ttl_secs"]),
        "still not in effect"
    );

    replace(&file, "quotas:\n  reset_day: 40\n");
    let third = &reloads(&replica, 3).await[2];
    let error = third["details"]["error"].as_str().expect("an error");
    assert!(error.contains("quotas.reset_day"), "{error}");
    assert_eq!(third["details"]["applied"], json!([]));
    assert_eq!(
        monthly_requests(&replica, &user).await,
        json!(300),
        "nothing changed"
    );
}

fn limits_config(per_minute: (u32, u32), max_envoys: u32, check_every_secs: u32) -> String {
    let (user, ip) = per_minute;
    format!(
        "limits:\n  max_envoys: {max_envoys}\n\
         \x20 user: {{requests_per_minute: {user}, mode: local}}\n\
         \x20 ip: {{requests_per_minute: {ip}, mode: local}}\n\
         pools:\n  health_check: {{interval_secs: {check_every_secs}}}\n"
    )
}

/// The health-check interval of the pool `name`, which has no settings of its own.
async fn check_interval(replica: &Replica, name: &str) -> Value {
    let (status, pools) = replica.admin("GET", "/api/v1/pools", None).await;
    assert_eq!(status, StatusCode::OK, "{pools}");
    pools["items"]
        .as_array()
        .and_then(|pools| pools.iter().find(|pool| pool["name"] == name))
        .map(|pool| pool["health_check"]["interval_secs"].clone())
        .unwrap_or_else(|| panic!("no pool {name}: {pools}"))
}

/// The requests a minute of the `level` limit among `limits`.
fn per_minute(limits: &[RateLimit], level: LimitLevel) -> Option<u64> {
    limits
        .iter()
        .find(|limit| limit.level() == level && limit.window_seconds == 60)
        .map(|limit| limit.requests)
}

/// The user's and the deployment's address limit a minute, as an Envoy is answered now.
async fn limits_answered(replica: &Replica, user: &str) -> (Option<u64>, Option<u64>) {
    let mut filter = replica.filter_client().await;
    let principal = filter
        .lookup_user(LookupUserRequest {
            user_id: user.to_string(),
        })
        .await
        .expect("lookup")
        .into_inner()
        .principal
        .expect("a principal");
    let watch = filter
        .watch_changes(WatchChangesRequest {
            initial: true,
            node_id: "envoy-1".to_string(),
            ..WatchChangesRequest::default()
        })
        .await
        .expect("watch")
        .into_inner();
    let settings = watch.limits.expect("limit settings");
    (
        per_minute(&principal.rate_limits, LimitLevel::User),
        per_minute(&settings.ip, LimitLevel::Ip),
    )
}

#[tokio::test]
async fn rate_limit_and_health_check_defaults_reload_into_what_envoys_are_answered() {
    let db = TestDatabase::sqlite().await;
    let folder = tempfile::tempdir().expect("dir");
    let file = folder.path().join("tollgate.yaml");
    std::fs::write(&file, limits_config((60, 100), 64, 30)).expect("write");
    let replica = Replica::start_with_file(&db.url, Some(&file), &[]).await;
    let (status, user) = replica
        .admin("POST", "/api/v1/users", Some(json!({"username": "bea"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let user = user["id"].as_str().expect("id").to_string();
    assert_eq!(
        limits_answered(&replica, &user).await,
        (Some(60), Some(100))
    );
    let backend = json!({"url": "http://127.0.0.1:9", "pool": "checked"});
    let (status, answer) = replica
        .admin("POST", "/api/v1/backends", Some(backend))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(check_interval(&replica, "checked").await, 30);

    replace(&file, &limits_config((90, 200), 65, 45));
    let reloaded = &reloads(&replica, 1).await[0];
    assert_eq!(
        reloaded["details"]["applied"],
        json!([
            "limits.ip.requests_per_minute",
            "limits.user.requests_per_minute",
            "pools.health_check.interval_secs"
        ])
    );
    assert_eq!(
        reloaded["details"]["needs_restart"],
        json!(["limits.max_envoys"]),
        "the gRPC connection budget is sized at start"
    );
    assert_eq!(
        limits_answered(&replica, &user).await,
        (Some(90), Some(200))
    );
    assert_eq!(check_interval(&replica, "checked").await, 45);
}
