//! Rate-limit and quota settings through the admin API, as the filter service resolves
//! them, and usage reports, on a real SQLite database.

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::app::{error_code, error_message, key_principal, quota, Api};
use tollgate::filter_service::FilterApi;
use tollgate::proto::v1::filter_service_server::FilterService;
use tollgate::proto::v1::{
    LimitLevel, LimitMode, LookupUserRequest, Principal, RateLimit, ReportUsageRequest, UsageDelta,
    WatchChangesRequest, WatchChangesResponse,
};
use tonic::{Code, Request};

fn id(object: &Value) -> &str {
    object["id"].as_str().expect("id")
}

async fn lookup_user(filter: &FilterApi, user_id: &str) -> Principal {
    filter
        .lookup_user(Request::new(LookupUserRequest {
            user_id: user_id.to_string(),
        }))
        .await
        .expect("lookup")
        .into_inner()
        .principal
        .expect("principal")
}

async fn lookup_key(filter: &FilterApi, key: &str) -> Principal {
    key_principal(filter, key).await.expect("principal")
}

async fn report(filter: &FilterApi, batch_id: &str, usage: Vec<UsageDelta>) -> Result<(), Code> {
    filter
        .report_usage(Request::new(ReportUsageRequest {
            batch_id: batch_id.to_string(),
            usage,
            settled_allowances: Vec::new(),
        }))
        .await
        .map(|_| ())
        .map_err(|status| status.code())
}

async fn watch(filter: &FilterApi, request: WatchChangesRequest) -> WatchChangesResponse {
    filter
        .watch_changes(Request::new(request))
        .await
        .expect("watch")
        .into_inner()
}

fn requests(user_id: &str, requests: u64, bytes: u64) -> UsageDelta {
    UsageDelta {
        user_id: user_id.to_string(),
        requests,
        bytes,
        ..UsageDelta::default()
    }
}

fn bucket(
    level: LimitLevel,
    window_seconds: u32,
    requests: u64,
    burst: u64,
    mode: LimitMode,
) -> RateLimit {
    RateLimit {
        level: level.into(),
        window_seconds,
        requests,
        burst,
        mode: mode.into(),
    }
}

#[tokio::test]
async fn new_objects_show_every_setting_as_null() {
    let api = Api::start().await;
    let user = api.create_user("plain").await;
    assert_eq!(
        user["rate_limits"],
        json!({"requests_per_second": null, "requests_per_minute": null,
               "requests_per_hour": null, "burst": null, "mode": null})
    );
    assert_eq!(
        user["quotas"],
        json!({"monthly_requests": null, "monthly_bandwidth_mb": null,
               "storage_quota_mb": null, "reset_day": null})
    );
    let (status, group) = api
        .admin("POST", "/api/v1/groups", Some(json!({"name": "plain"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(group["rate_limits"]["mode"], Value::Null);
    assert_eq!(group["quotas"]["reset_day"], Value::Null);
}

#[tokio::test]
async fn each_bad_setting_is_refused_by_name_and_changes_nothing() {
    let api = Api::start().await;
    let user = api.create_user("careful").await;
    let user_path = format!("/api/v1/users/{}", id(&user));
    let (_, group) = api
        .admin("POST", "/api/v1/groups", Some(json!({"name": "careful"})))
        .await;
    let group_path = format!("/api/v1/groups/{}", id(&group));
    let bad = [
        (
            json!({"rate_limits": {"requests_per_second": 0}}),
            "rate_limits.requests_per_second",
        ),
        (
            json!({"rate_limits": {"requests_per_minute": -1}}),
            "rate_limits.requests_per_minute",
        ),
        (
            json!({"rate_limits": {"requests_per_hour": 1_000_000_001u64}}),
            "rate_limits.requests_per_hour",
        ),
        (json!({"rate_limits": {"burst": 0}}), "rate_limits.burst"),
        (json!({"rate_limits": {"mode": "slow"}}), "rate_limits.mode"),
        (
            json!({"quotas": {"monthly_requests": -1}}),
            "quotas.monthly_requests",
        ),
        (
            json!({"quotas": {"monthly_bandwidth_mb": 1_000_000_000_000_001u64}}),
            "quotas.monthly_bandwidth_mb",
        ),
        (
            json!({"quotas": {"storage_quota_mb": -5}}),
            "quotas.storage_quota_mb",
        ),
        (json!({"quotas": {"reset_day": 29}}), "quotas.reset_day"),
        (json!({"quotas": {"reset_day": 0}}), "quotas.reset_day"),
    ];
    for (body, field) in &bad {
        for (method, path) in [
            ("PATCH", user_path.as_str()),
            ("PATCH", group_path.as_str()),
        ] {
            let (status, answer) = api.admin(method, path, Some(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path} {body}");
            assert_eq!(error_code(&answer), "validation_failed", "{answer}");
            let message = error_message(&answer);
            assert!(message.contains(field), "{message} should name {field}");
        }
        let mut create = body.clone();
        create["username"] = json!("refused");
        let (status, answer) = api.admin("POST", "/api/v1/users", Some(create)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    for (body, named) in [
        (
            json!({"rate_limits": {"requests_per_minute": 1.5}}),
            "rate_limits.requests_per_minute",
        ),
        (json!({"rate_limits": {"surprise": 1}}), "surprise"),
    ] {
        let (status, answer) = api.admin("PATCH", &user_path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(error_message(&answer).contains(named), "{answer}");
    }

    let (_, unchanged) = api.admin("GET", &user_path, None).await;
    assert_eq!(unchanged, user, "nothing was changed");
    let (_, list) = api.admin("GET", "/api/v1/users?q=refused", None).await;
    assert_eq!(list["total"], 0);
    let (_, group_now) = api.admin("GET", &group_path, None).await;
    assert_eq!(group_now["quotas"], group["quotas"]);
    assert_eq!(group_now["rate_limits"], group["rate_limits"]);
}

#[tokio::test]
async fn patching_settings_leaves_absent_fields_and_clears_null_ones() {
    let api = Api::start().await;
    let user = api.create_user("patched").await;
    let path = format!("/api/v1/users/{}", id(&user));
    let (status, changed) = api
        .admin(
            "PATCH",
            &path,
            Some(
                json!({"rate_limits": {"requests_per_minute": 60, "burst": 5, "mode": "exact"},
                        "quotas": {"monthly_requests": 0, "reset_day": 28}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (_, changed) = api
        .admin(
            "PATCH",
            &path,
            Some(json!({"rate_limits": {"burst": null, "requests_per_hour": 600}})),
        )
        .await;
    assert_eq!(
        changed["rate_limits"],
        json!({"requests_per_second": null, "requests_per_minute": 60,
               "requests_per_hour": 600, "burst": null, "mode": "exact"})
    );
    assert_eq!(changed["quotas"]["monthly_requests"], 0);
    let (_, cleared) = api
        .admin("PATCH", &path, Some(json!({"quotas": null})))
        .await;
    assert_eq!(cleared["quotas"]["monthly_requests"], Value::Null);
    assert_eq!(cleared["quotas"]["reset_day"], Value::Null);
    assert_eq!(cleared["rate_limits"]["requests_per_minute"], 60);
}

#[tokio::test]
async fn the_user_beats_the_group_which_beats_the_default() {
    let api = Api::start_with(|config| {
        config.quotas.defaults.monthly_requests = Some(1000);
        config.quotas.defaults.storage_quota_mb = Some(50);
        config.quotas.reset_day = 3;
    })
    .await;
    let user = api.create_user("layered").await;
    let user_id = id(&user);
    let (_, high) = api
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "high", "priority": 10,
                        "rate_limits": {"requests_per_minute": 200, "burst": 10, "mode": "exact"},
                        "quotas": {"monthly_requests": 500, "monthly_bandwidth_mb": 20}})),
        )
        .await;
    let (_, low) = api
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "low", "priority": 1,
                        "rate_limits": {"requests_per_second": 5, "mode": "local"},
                        "quotas": {"monthly_bandwidth_mb": 99, "reset_day": 15}})),
        )
        .await;
    for group in [&high, &low] {
        let (status, body) = api
            .admin(
                "POST",
                &format!("/api/v1/groups/{}/members", id(group)),
                Some(json!({"user_id": user_id})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{user_id}"),
            Some(json!({"rate_limits": {"requests_per_hour": 3000},
                        "quotas": {"monthly_requests": 100}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, answer) = api
        .admin("GET", &format!("/api/v1/users/{user_id}/quota"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["user_id"], user_id);
    assert_eq!(answer["reset_day"], 15, "from the low group");
    assert_eq!(answer["time_zone"], "UTC");
    assert!(answer["period_start"]
        .as_str()
        .expect("start")
        .contains("-15T00:00:00"));
    assert_eq!(
        quota(&answer, "monthly_requests")["limit"],
        100,
        "the user's"
    );
    assert_eq!(quota(&answer, "monthly_requests")["remaining"], 100);
    assert_eq!(
        quota(&answer, "monthly_bandwidth_mb")["limit"],
        20,
        "the high group's"
    );
    assert_eq!(
        quota(&answer, "storage_quota_mb")["limit"],
        50,
        "the default"
    );
    assert_eq!(quota(&answer, "storage_quota_mb")["used_bytes"], 0);

    let user_buckets = [
        bucket(LimitLevel::User, 1, 5, 10, LimitMode::Exact),
        bucket(LimitLevel::User, 60, 200, 200, LimitMode::Exact),
        bucket(LimitLevel::User, 3600, 3000, 3000, LimitMode::Exact),
    ];
    let principal = lookup_user(&api.filter, user_id).await;
    assert_eq!(principal.rate_limits, user_buckets);
    assert!(principal.exhausted_quotas.is_empty());

    let issued = api
        .issue_key_with(
            user_id,
            json!({"name": "limited", "rate_limits": {"requests_per_second": 2}}),
        )
        .await;
    assert_eq!(issued["rate_limits"]["requests_per_second"], 2);
    let key = issued["key"].as_str().expect("key");
    let principal = lookup_key(&api.filter, key).await;
    let mut with_key = user_buckets.to_vec();
    with_key.push(bucket(LimitLevel::Key, 1, 2, 2, LimitMode::Fast));
    assert_eq!(principal.rate_limits, with_key);

    let (status, changed) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{user_id}/keys/{}", id(&issued)),
            Some(json!({"rate_limits": {"requests_per_second": null}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(lookup_key(&api.filter, key).await.rate_limits, user_buckets);

    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{user_id}"),
            Some(json!({"rate_limits": null, "quotas": {"monthly_requests": null}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let principal = lookup_user(&api.filter, user_id).await;
    assert_eq!(
        principal.rate_limits,
        [
            bucket(LimitLevel::User, 1, 5, 10, LimitMode::Exact),
            bucket(LimitLevel::User, 60, 200, 200, LimitMode::Exact),
            bucket(LimitLevel::User, 3600, 10_000, 10_000, LimitMode::Exact),
        ],
        "the hour falls back to the deployment default"
    );
    let (_, answer) = api
        .admin("GET", &format!("/api/v1/users/{user_id}/quota"), None)
        .await;
    assert_eq!(
        quota(&answer, "monthly_requests")["limit"],
        500,
        "the high group's"
    );
}

#[tokio::test]
async fn users_read_their_own_quota_but_no_one_elses() {
    let api = Api::start().await;
    let ivy = api.create_user("ivy").await;
    let jon = api.create_user("jon").await;
    let ivy_key = &api.issue_key(id(&ivy)).await;
    let quota_of = |user: &Value| format!("/api/v1/users/{}/quota", id(user));
    let (status, own) = api.call("GET", &quota_of(&ivy), Some(ivy_key), None).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(quota(&own, "monthly_requests")["limit"], Value::Null);
    assert_eq!(quota(&own, "monthly_requests")["remaining"], Value::Null);
    let (status, other) = api.call("GET", &quota_of(&jon), Some(ivy_key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&other), "forbidden");
    let (status, missing) = api.admin("GET", "/api/v1/users/u_nobody/quota", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&missing), "not_found");

    let (status, _) = api
        .call(
            "POST",
            &format!("/api/v1/users/{}/keys", id(&ivy)),
            Some(ivy_key),
            Some(json!({"name": "faster", "rate_limits": {"requests_per_second": 1000}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins set key limits");
}

#[tokio::test]
async fn reported_usage_counts_once_and_exhausts_quotas() {
    let api = Api::start().await;
    let user = api.create_user("metered").await;
    let user_id = id(&user);
    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{user_id}"),
            Some(
                json!({"quotas": {"monthly_requests": 5, "monthly_bandwidth_mb": 1,
                                   "storage_quota_mb": 0}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let principal = lookup_user(&api.filter, user_id).await;
    let names: Vec<&str> = principal
        .exhausted_quotas
        .iter()
        .map(|q| q.name.as_str())
        .collect();
    assert_eq!(names, ["storage"], "a zero quota allows nothing");
    assert_eq!(principal.exhausted_quotas[0].resets_at, 0);

    let batch = vec![
        requests(user_id, 2, 524_288),
        requests("u_unknown", 100, 0),
        requests(user_id, 1, 0),
    ];
    assert_eq!(report(&api.filter, "batch-1", batch.clone()).await, Ok(()));
    assert_eq!(
        report(&api.filter, "batch-1", batch).await,
        Ok(()),
        "a retry"
    );
    let (_, answer) = api
        .admin("GET", &format!("/api/v1/users/{user_id}/quota"), None)
        .await;
    assert_eq!(quota(&answer, "monthly_requests")["used"], 3, "{answer}");
    assert_eq!(quota(&answer, "monthly_requests")["remaining"], 2);
    assert_eq!(quota(&answer, "monthly_bandwidth_mb")["used"], 0.5);
    assert_eq!(
        quota(&answer, "monthly_bandwidth_mb")["used_bytes"],
        524_288
    );
    assert_eq!(quota(&answer, "monthly_bandwidth_mb")["remaining"], 0.5);

    assert_eq!(
        report(&api.filter, "batch-2", vec![requests(user_id, 2, 0)]).await,
        Ok(())
    );
    let principal = lookup_user(&api.filter, user_id).await;
    let period_end =
        chrono::DateTime::parse_from_rfc3339(answer["period_end"].as_str().expect("period end"))
            .expect("time")
            .timestamp();
    let exhausted: Vec<(&str, i64)> = principal
        .exhausted_quotas
        .iter()
        .map(|q| (q.name.as_str(), q.resets_at))
        .collect();
    assert_eq!(
        exhausted,
        [("monthly_requests", period_end), ("storage", 0)]
    );
    let (_, audit) = api.admin("GET", "/api/v1/audit", None).await;
    let exhaustions = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["action"] == "quota.exhausted")
        .count();
    assert_eq!(exhaustions, 1);

    for (batch_id, usage) in [
        (String::new(), vec![]),
        ("x".repeat(129), vec![]),
        ("bad-user".to_string(), vec![requests("alice", 1, 0)]),
        (
            "too-many".to_string(),
            vec![requests(user_id, 1, 0); 10_001],
        ),
    ] {
        assert_eq!(
            report(&api.filter, &batch_id, usage).await,
            Err(Code::InvalidArgument),
            "{batch_id}"
        );
    }
}

#[tokio::test]
async fn every_change_feed_answer_carries_the_deployment_limits() {
    let api = Api::start_with(|config| {
        config.limits.exact_fails_open = true;
    })
    .await;
    let first = watch(
        &api.filter,
        WatchChangesRequest {
            initial: true,
            ..WatchChangesRequest::default()
        },
    )
    .await;
    let idle = watch(
        &api.filter,
        WatchChangesRequest {
            since: first.cursor,
            wait_ms: 1,
            signing_keys_version: first.signing_keys_version.clone(),
            ..WatchChangesRequest::default()
        },
    )
    .await;
    assert!(idle.invalidations.is_empty());
    for answer in [first, idle] {
        let limits = answer.limits.expect("limits");
        assert!(limits.exact_fails_open);
        assert!(!limits.ip_counts_every_request);
        assert_eq!(
            limits.ip,
            [bucket(LimitLevel::Ip, 60, 100, 20, LimitMode::Fast)]
        );
        assert!(limits.routes.is_empty());
    }
}

/// The audit entries with this action, as `(target, details)`.
async fn audited(api: &Api, action: &str) -> Vec<(String, Value)> {
    let (status, audit) = api.admin("GET", "/api/v1/audit?per_page=100", None).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|entry| entry["action"] == action)
        .map(|entry| {
            (
                entry["target"].as_str().unwrap_or_default().to_string(),
                entry["details"].clone(),
            )
        })
        .collect()
}

fn rate_limited(user_id: &str, refused: u64) -> UsageDelta {
    UsageDelta {
        user_id: user_id.to_string(),
        rate_limited: [("user".to_string(), refused)].into(),
        ..UsageDelta::default()
    }
}

#[tokio::test]
async fn usage_of_unknown_users_is_ignored_and_absurd_counts_are_refused() {
    let api = Api::start().await;
    let client = api.filter_client().await;
    let user = api.create_user("reported").await;
    let user_id = id(&user);
    let report = |batch_id: &str, usage: Vec<UsageDelta>| {
        let request = ReportUsageRequest {
            batch_id: batch_id.to_string(),
            usage,
            settled_allowances: Vec::new(),
        };
        let mut client = client.clone();
        async move { client.report_usage(request).await.map(|_| ()) }
    };
    report(
        "unknown",
        vec![rate_limited("u_nobody", 5), requests(user_id, 1, 0)],
    )
    .await
    .expect("a batch naming an unknown user is applied for the known ones");
    assert!(
        audited(&api, "rate_limit.exceeded").await.is_empty(),
        "nothing is audited for a user who does not exist"
    );

    let mut storage = requests(user_id, 0, 0);
    storage.storage_bytes = -(1 << 62);
    for (batch_id, absurd, field) in [
        (
            "requests",
            requests(user_id, 1 << 63, 0),
            "usage[0].requests",
        ),
        ("bytes", requests(user_id, 1, u64::MAX), "usage[0].bytes"),
        ("storage", storage, "usage[0].storage_bytes"),
        (
            "refusals",
            rate_limited(user_id, u64::MAX),
            "usage[0].rate_limited",
        ),
    ] {
        let refused = report(batch_id, vec![absurd]).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{batch_id}");
        assert!(refused.message().starts_with(field), "{refused:?}");
    }
    let (_, answer) = api
        .admin("GET", &format!("/api/v1/users/{user_id}/quota"), None)
        .await;
    assert_eq!(quota(&answer, "monthly_requests")["used"], 1, "{answer}");
    assert!(audited(&api, "rate_limit.exceeded").await.is_empty());
}

#[tokio::test]
async fn refusal_audits_are_bounded_per_user_and_per_minute() {
    let api = Api::start_with(|config| config.limits.refusal_audits_per_minute = 2).await;
    let mut client = api.filter_client().await;
    let mut users = Vec::new();
    for name in ["first", "second", "third"] {
        users.push(id(&api.create_user(name).await).to_string());
    }
    for batch in ["one", "two"] {
        client
            .report_usage(ReportUsageRequest {
                batch_id: batch.to_string(),
                usage: users.iter().map(|user| rate_limited(user, 3)).collect(),
                settled_allowances: Vec::new(),
            })
            .await
            .expect("applied");
    }
    let entries = audited(&api, "rate_limit.exceeded").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let mut targets: Vec<&str> = entries.iter().map(|(target, _)| target.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    assert_eq!(targets.len(), 2, "one entry per user: {entries:?}");
}
