//! Each request's correlation id (`x-request-id`), and the request context audit entries carry,
//! through the router; and the metrics: endpoints, and per-user labels only for opted-in users.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::accounts::{login_from, user_with_password, FIREFOX, PASSWORD};
use support::app::{Answer, Api, ADMIN_KEY};
use support::TestDatabase;
use tollgate::proto::v1::filter_service_server::FilterService;
use tollgate::proto::v1::{ReportUsageRequest, UsageDelta};
use tonic::Request;

const SCRIPT: &str = "ops-script/1.0";

async fn audit_entry(api: &Api, action: &str) -> Value {
    let (_, audit) = api.admin("GET", "/api/v1/audit?per_page=100", None).await;
    audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|entry| entry["action"] == action)
        .unwrap_or_else(|| panic!("no {action} entry in {audit}"))
        .clone()
}

fn request_id(answer: &Answer) -> &str {
    answer
        .headers
        .get("x-request-id")
        .expect("an x-request-id answered")
        .to_str()
        .expect("ASCII")
}

fn is_uuid(id: &str) -> bool {
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    groups == [8, 4, 4, 4, 12] && id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_change_is_audited_with_its_request_id_client_address_and_user_agent() {
    let api = Api::start().await;
    let answer = api
        .answer_from(
            "192.0.2.9:5000",
            "POST",
            "/api/v1/users",
            &[
                ("x-api-key", ADMIN_KEY),
                ("x-request-id", "req-create-carol"),
                ("user-agent", SCRIPT),
            ],
            Some(json!({"username": "carol"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(request_id(&answer), "req-create-carol");

    let entry = audit_entry(&api, "user.created").await;
    assert_eq!(entry["correlation_id"], "req-create-carol", "{entry}");
    assert_eq!(entry["client_address"], "192.0.2.9", "{entry}");
    assert_eq!(entry["user_agent"], SCRIPT, "{entry}");
}

#[tokio::test]
async fn a_missing_or_malformed_request_id_is_replaced_with_a_fresh_one() {
    let api = Api::start().await;
    let long = "a".repeat(129);
    let mut seen = Vec::new();
    for sent in [None, Some("has spaces"), Some(long.as_str()), Some("")] {
        let headers: Vec<(&str, &str)> = sent.map(|id| ("x-request-id", id)).into_iter().collect();
        let answer = api
            .answer_from("127.0.0.1:40000", "GET", "/api/v1/health", &headers, None)
            .await;
        let answered = request_id(&answer).to_string();
        assert!(is_uuid(&answered), "{sent:?} answered {answered}");
        seen.push(answered);
    }
    seen.dedup();
    assert_eq!(seen.len(), 4, "each request gets its own id: {seen:?}");

    let refused = api
        .answer_from(
            "127.0.0.1:40000",
            "GET",
            "/api/v1/users",
            &[("x-request-id", "kept-on-errors-too")],
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(request_id(&refused), "kept-on-errors-too");
}

#[tokio::test]
async fn a_login_is_audited_with_its_request_context_and_counted_by_method() {
    let api = Api::start().await;
    user_with_password(&api, "dana").await;
    let answer = login_from(&api, "198.51.100.3:4000", FIREFOX, "dana", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    let entry = audit_entry(&api, "session.created").await;
    assert_eq!(entry["client_address"], "198.51.100.3", "{entry}");
    assert_eq!(entry["user_agent"], FIREFOX, "{entry}");
    assert_eq!(entry["correlation_id"], request_id(&answer), "{entry}");

    let (_, metrics) = api.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().expect("metrics text");
    assert!(
        metrics.contains("tollgate_auth_attempts_total{method=\"local\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn backend_health_is_a_gauge_and_the_summary_is_for_admins() {
    let api = Api::start().await;
    let (status, backend) = api
        .admin(
            "POST",
            "/api/v1/backends",
            Some(json!({"url": "http://127.0.0.1:9", "weight": 1, "pool": "default"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{backend}");
    let id = backend["id"].as_str().expect("backend id");

    let (_, metrics) = api.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().expect("metrics text");
    assert!(
        metrics.contains(&format!(
            "tollgate_backend_health_status{{backend=\"{id}\",pool=\"default\"}} 0"
        )),
        "{metrics}"
    );

    let (_, user_key) = api.user_with_key("erin").await;
    let (status, _) = api.call("GET", "/api/v1/metrics", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call("GET", "/api/v1/metrics", Some(&user_key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, summary) = api.admin("GET", "/api/v1/metrics", None).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(
        summary["backends"],
        json!({"total": 1, "healthy": 0, "unhealthy": 0, "unknown": 1})
    );
    assert!(
        summary["metrics"]["tollgate_http_requests_total"]
            .as_f64()
            .is_some_and(|total| total >= 4.0),
        "{summary}"
    );
}

#[tokio::test]
async fn per_user_metrics_name_only_opted_in_users() {
    // The users exist before the configuration names one: the same database and secret, restarted.
    let db = Arc::new(TestDatabase::sqlite().await);
    let secret = Some("a server secret of at least thirty-two characters".to_string());
    let first = Api::start_on(db.clone(), |config| {
        config.security.key_hash_secret.clone_from(&secret);
    })
    .await;
    let (named, _) = first.user_with_key("named").await;
    let (unnamed, _) = first.user_with_key("unnamed").await;
    let api = Api::start_on(db, |config| {
        config.security.key_hash_secret = secret;
        config.metrics.labelled_users = vec![named.clone()];
    })
    .await;
    let usage = |user_id: &str| UsageDelta {
        user_id: user_id.to_string(),
        requests: 7,
        bytes: 700,
        rate_limited: [("user".to_string(), 3)].into(),
        ..UsageDelta::default()
    };
    api.filter
        .report_usage(Request::new(ReportUsageRequest {
            batch_id: "b_labels".to_string(),
            usage: vec![usage(&named), usage(&unnamed)],
            settled_allowances: Vec::new(),
        }))
        .await
        .expect("applied");

    let (_, metrics) = api.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().expect("metrics text");
    for line in [
        format!("tollgate_user_quota_usage_requests_total{{user=\"{named}\"}} 7"),
        format!("tollgate_user_quota_usage_bytes_total{{user=\"{named}\"}} 700"),
        format!("tollgate_user_rate_limit_violations_total{{user=\"{named}\"}} 3"),
        "tollgate_user_rate_limit_violations_total{user=\"other\"} 3".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    assert!(!metrics.contains(&unnamed), "{metrics}");
}
