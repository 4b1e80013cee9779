//! Groups, backends and pools through the HTTP application.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;
use support::app::{error_code, error_message, Api};

#[tokio::test]
async fn backends_are_validated_and_listed_with_health() {
    let api = Api::start().await;
    for (body, expected) in [
        (json!({"url": "ftp://example.com"}), "validation_failed"),
        (
            json!({"url": "http://user:pw@example.com"}),
            "validation_failed",
        ),
        (
            json!({"url": "http://example.com/path"}),
            "validation_failed",
        ),
        (
            json!({"url": "http://example.com", "weight": 0}),
            "validation_failed",
        ),
        (
            json!({"url": "http://example.com", "weight": 101}),
            "validation_failed",
        ),
        (
            json!({"url": "http://example.com", "pool": "Bad Pool"}),
            "validation_failed",
        ),
        (
            json!({"url": "http://example.com", "health_check_path": "healthz"}),
            "validation_failed",
        ),
        (
            json!({"url": "http://example.com", "colour": "red"}),
            "invalid_body",
        ),
    ] {
        let (status, answer) = api
            .admin("POST", "/api/v1/backends", Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(error_code(&answer), expected, "{body}");
    }
    let (status, created) = api
        .admin(
            "POST",
            "/api/v1/backends",
            Some(json!({"url": "http://127.0.0.1:48080", "weight": 70})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["pool"], "default");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["health"]["status"], "unknown");
    assert_eq!(created["url"], "http://127.0.0.1:48080");
    let id = created["id"].as_str().expect("id");

    let (status, changed) = api
        .admin(
            "PATCH",
            &format!("/api/v1/backends/{id}"),
            Some(json!({"weight": 30, "enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["weight"], 30);
    let (_, list) = api.admin("GET", "/api/v1/backends", None).await;
    assert_eq!(list["total"], 1);
    assert_eq!(
        api.admin("DELETE", &format!("/api/v1/backends/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.admin("GET", &format!("/api/v1/backends/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_backend_creations_all_succeed_and_are_listed_page_by_page() {
    const WRITERS: usize = 32;
    let api = Arc::new(Api::start_with(|config| config.pools.max_backends = WRITERS).await);
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let api = Arc::clone(&api);
        writers.spawn(async move {
            let body = json!({"url": format!("http://10.0.1.{writer}:80"), "pool": "busy"});
            api.admin("POST", "/api/v1/backends", Some(body)).await
        });
    }
    let mut created = BTreeSet::new();
    while let Some(answer) = writers.join_next().await {
        let (status, backend) = answer.expect("writer");
        assert_eq!(status, StatusCode::CREATED, "{backend}");
        created.insert(backend["id"].as_str().expect("id").to_string());
    }
    assert_eq!(created.len(), WRITERS);

    let mut listed = BTreeSet::new();
    for (page, expected) in [(1, 10), (2, 10), (3, 10), (4, 2), (5, 0)] {
        let (status, list) = api
            .admin(
                "GET",
                &format!("/api/v1/backends?page={page}&per_page=10"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list["total"], WRITERS, "{list}");
        assert_eq!(list["page"], page);
        assert_eq!(list["per_page"], 10);
        let items = list["items"].as_array().expect("items");
        assert_eq!(items.len(), expected, "page {page}");
        listed.extend(
            items
                .iter()
                .map(|b| b["id"].as_str().expect("id").to_string()),
        );
    }
    assert_eq!(listed, created);
    let (_, pools) = api.admin("GET", "/api/v1/pools", None).await;
    assert_eq!(pools["items"][0]["enabled_backends"], WRITERS);
}

#[tokio::test]
async fn backend_listing_pages_are_validated() {
    let api = Api::start().await;
    for query in ["page=0", "per_page=0", "per_page=201", "page=x"] {
        let (status, body) = api
            .admin("GET", &format!("/api/v1/backends?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
}

#[tokio::test]
async fn a_pool_holds_at_most_the_configured_number_of_backends() {
    let api = Api::start_with(|config| config.pools.max_backends = 2).await;
    for port in [1, 2] {
        let (status, _) = api
            .admin(
                "POST",
                "/api/v1/backends",
                Some(json!({"url": format!("http://10.0.0.{port}:80"), "pool": "small"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = api
        .admin(
            "POST",
            "/api/v1/backends",
            Some(json!({"url": "http://10.0.0.3:80", "pool": "small"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "pool_full");
    let (_, pools) = api.admin("GET", "/api/v1/pools", None).await;
    assert_eq!(pools["items"][0]["name"], "small");
    assert_eq!(pools["items"][0]["enabled_backends"], 2);
    assert_eq!(pools["items"][0]["health_check"]["interval_secs"], 30);
}

#[tokio::test]
async fn pool_health_checks_are_configurable_and_validated() {
    let api = Api::start().await;
    let (status, body) = api
        .admin(
            "PUT",
            "/api/v1/pools/fast",
            Some(json!({"interval_secs": 2, "timeout_secs": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["health_check"]["unhealthy_threshold"], 3);
    let (status, body) = api
        .admin(
            "PUT",
            "/api/v1/pools/fast",
            Some(json!({"interval_secs": 2, "timeout_secs": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "validation_failed");
}

#[tokio::test]
async fn groups_carry_pools_and_members() {
    let api = Api::start().await;
    let user = api.create_user("member").await;
    let user_id = user["id"].as_str().expect("id");
    let (status, group) = api
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "premium", "priority": 10, "pools": ["fast", "spare"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group_id = group["id"].as_str().expect("id");
    assert!(group_id.starts_with("g_"));
    let (status, _) = api
        .admin(
            "POST",
            &format!("/api/v1/groups/{group_id}/members"),
            Some(json!({"user_id": user_id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = api
        .admin(
            "POST",
            &format!("/api/v1/groups/{group_id}/members"),
            Some(json!({"user_id": user_id})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "already_member");
    let (_, reread) = api
        .admin("GET", &format!("/api/v1/users/{user_id}"), None)
        .await;
    assert_eq!(reread["groups"], json!([group_id]));
    let (_, listed) = api.admin("GET", "/api/v1/groups", None).await;
    assert_eq!(listed["items"][0]["members"], 1);

    let (status, body) = api
        .admin("POST", "/api/v1/groups", Some(json!({"name": "premium"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "name_taken");
    let (status, body) = api
        .admin(
            "PATCH",
            &format!("/api/v1/groups/{group_id}"),
            Some(json!({"pools": ["a", "a"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    assert_eq!(
        api.admin(
            "DELETE",
            &format!("/api/v1/groups/{group_id}/members/{user_id}"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.admin("DELETE", &format!("/api/v1/groups/{group_id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, reread) = api
        .admin("GET", &format!("/api/v1/users/{user_id}"), None)
        .await;
    assert_eq!(reread["groups"], json!([]));
}

#[tokio::test]
async fn backend_tls_settings_are_validated_and_an_opt_out_is_shown() {
    let api = Api::start().await;
    let ca = include_str!("../../tests/fixtures/upstream-tls/ca.pem");
    for (body, field) in [
        (
            json!({"url": "https://api.example.com", "tls_ca": "not a certificate"}),
            "tls_ca",
        ),
        (
            json!({"url": "http://api.example.com", "tls_ca": ca}),
            "tls_ca",
        ),
        (
            json!({"url": "http://api.example.com", "tls_insecure": true}),
            "tls_insecure",
        ),
        (
            json!({"url": "https://api.example.com", "tls_ca": ca, "tls_insecure": true}),
            "tls_insecure",
        ),
    ] {
        let (status, answer) = api.admin("POST", "/api/v1/backends", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(error_code(&answer), "validation_failed", "{answer}");
        assert!(
            error_message(&answer).contains(&format!("`{field}`")),
            "{answer}"
        );
    }
    let (_, listed) = api.admin("GET", "/api/v1/backends", None).await;
    assert_eq!(listed["total"], 0, "refusals change nothing: {listed}");

    let (status, verified) = api
        .admin(
            "POST",
            "/api/v1/backends",
            Some(json!({"url": "https://api.example.com", "tls_ca": ca})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{verified}");
    assert_eq!(verified["tls_ca"], ca);
    assert_eq!(verified["tls_insecure"], false);
    let path = format!("/api/v1/backends/{}", verified["id"].as_str().expect("id"));
    let (status, answer) = api
        .admin("PATCH", &path, Some(json!({"tls_insecure": true})))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a CA and an opt-out: {answer}"
    );
    let (status, insecure) = api
        .admin(
            "PATCH",
            &path,
            Some(json!({"tls_ca": null, "tls_insecure": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{insecure}");
    let (_, shown) = api.admin("GET", &path, None).await;
    assert_eq!(shown["tls_insecure"], true, "{shown}");
    assert_eq!(shown["tls_ca"], serde_json::Value::Null, "{shown}");
    let (_, audit) = api.admin("GET", "/api/v1/audit", None).await;
    let updated = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|entry| entry["action"] == "backend.updated")
        .expect("an audit entry");
    assert_eq!(
        updated["details"]["before"]["tls_insecure"], false,
        "{updated}"
    );
    assert_eq!(
        updated["details"]["after"]["tls_insecure"], true,
        "{updated}"
    );
}
