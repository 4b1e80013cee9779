//! The admin API through its router, on a real SQLite database.

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::app::{error_code, Api, ADMIN_KEY};

#[tokio::test]
async fn the_admin_api_requires_a_valid_key() {
    let api = Api::start().await;
    let (status, body) = api.call("GET", "/api/v1/users", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthenticated");
    assert!(body["error"]["message"].is_string());
    let (status, _) = api
        .call("GET", "/api/v1/users", Some("tg_wrong"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_imported_admin_key_administers_users() {
    let api = Api::start().await;
    let body = api
        .create_user_with(json!({"username": "alice", "email": "alice@example.com", "name": "Alice", "password": "correct horse"}))
        .await;
    assert!(body["id"].as_str().expect("id").starts_with("u_"));
    assert_eq!(body["status"], "active");
    assert_eq!(body["role"], "user");
    assert_eq!(body["groups"], json!([]));
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());

    let (status, list) = api
        .admin("GET", "/api/v1/users?q=ali&per_page=10", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["page"], 1);
    assert_eq!(list["per_page"], 10);
    assert_eq!(list["items"][0]["username"], "alice");
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let api = Api::start().await;
    for (body, expected) in [
        (json!({"username": ""}), "validation_failed"),
        (json!({"username": "a b"}), "validation_failed"),
        (
            json!({"username": "bob", "email": "not-an-email"}),
            "validation_failed",
        ),
        (
            json!({"username": "bob", "password": "short"}),
            "validation_failed",
        ),
        (json!({"username": "bob", "role": "root"}), "invalid_body"),
        (json!({"username": "bob", "surprise": 1}), "invalid_body"),
        (
            json!({"username": "bob", "status": "deleted"}),
            "validation_failed",
        ),
    ] {
        let (status, response) = api.admin("POST", "/api/v1/users", Some(body.clone())).await;
        assert!(status.is_client_error(), "{body} gave {status}");
        assert_eq!(error_code(&response), expected, "{body}: {response}");
    }
    let (status, response) = api
        .call("POST", "/api/v1/users", Some(ADMIN_KEY), None)
        .await;
    assert!(status.is_client_error());
    assert_eq!(error_code(&response), "invalid_body");
    let (_, list) = api.admin("GET", "/api/v1/users", None).await;
    assert_eq!(list["total"], 1, "only the admin exists: {list}");

    api.create_user("bob").await;
    let (status, response) = api
        .admin("POST", "/api/v1/users", Some(json!({"username": "bob"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&response), "username_taken");
    let (status, response) = api.admin("GET", "/api/v1/users?per_page=500", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&response), "validation_failed");
}

#[tokio::test]
async fn a_key_is_shown_once_and_authenticates_its_owner() {
    let api = Api::start().await;
    let user = api.create_user("carol").await;
    let id = user["id"].as_str().expect("id");
    let issued = api.issue_key_with(id, json!({"name": "primary"})).await;
    let key = issued["key"].as_str().expect("key");
    assert!(key.starts_with(&format!("tg_{id}_")));
    assert_eq!(issued["prefix"], "tg");
    assert_eq!(issued["last4"], key[key.len() - 4..]);
    assert_eq!(issued["status"], "active");

    let (status, keys) = api
        .admin("GET", &format!("/api/v1/users/{id}/keys"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys["total"], 1);
    assert!(
        keys["items"][0].get("key").is_none(),
        "listing never shows the key"
    );
    assert!(!keys.to_string().contains(key));

    let (status, me) = api.call("GET", "/api/v1/users/me", Some(key), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "carol");
    let (status, body) = api.call("GET", "/api/v1/users", Some(key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a user is not an admin");
    assert_eq!(error_code(&body), "forbidden");
}

#[tokio::test]
async fn a_rotated_key_works_beside_its_replacement_for_the_grace_period() {
    let api = Api::start().await;
    let user = api.create_user("erin").await;
    let id = user["id"].as_str().expect("id");
    let old = api.issue_key_with(id, json!({"name": "ci"})).await;
    let old_key = old["key"].as_str().expect("key");
    let rotate = |query: &str| {
        format!(
            "/api/v1/users/{id}/keys/{}/rotate{query}",
            old["id"].as_str().expect("key id")
        )
    };

    let (status, body) = api
        .admin("POST", &rotate("?grace_secs=2592001"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "grace_secs");

    let before = chrono::Utc::now();
    let (status, new) = api.admin("POST", &rotate(""), None).await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    let new_key = new["key"].as_str().expect("new key");
    for key in [old_key, new_key] {
        let (status, me) = api.call("GET", "/api/v1/users/me", Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "both keys work: {me}");
    }
    let (_, keys) = api
        .admin("GET", &format!("/api/v1/users/{id}/keys"), None)
        .await;
    let listed = keys["items"].as_array().expect("items");
    assert!(
        listed.iter().all(|key| key.get("key").is_none()),
        "never the key"
    );
    let old_listed = listed
        .iter()
        .find(|key| key["id"] == old["id"])
        .expect("old key listed");
    assert_eq!(old_listed["status"], "active");
    let expires: chrono::DateTime<chrono::Utc> = old_listed["expires_at"]
        .as_str()
        .expect("the old key now expires")
        .parse()
        .expect("a time");
    let grace = expires - before;
    assert!(
        grace >= chrono::Duration::hours(24)
            && grace < chrono::Duration::hours(24) + chrono::Duration::minutes(1),
        "{grace:?}"
    );
    assert_eq!(old_listed["prefix"], old["prefix"]);
    assert_eq!(old_listed["last4"], old["last4"]);
    assert_eq!(old_listed["replaced_by"], new["id"]);

    // Whoever holds the old key cannot mint another one with it.
    let (status, body) = api.call("POST", &rotate(""), Some(old_key), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "key_replaced");
    let (_, keys) = api
        .admin("GET", &format!("/api/v1/users/{id}/keys"), None)
        .await;
    assert_eq!(keys["items"].as_array().expect("items").len(), 2);
}

#[tokio::test]
async fn revoked_and_rotated_keys_stop_working() {
    let api = Api::start().await;
    let user = api.create_user("dave").await;
    let id = user["id"].as_str().expect("id");
    let first = api.issue_key_with(id, json!({"name": "a"})).await;
    let first_key = first["key"].as_str().expect("key");
    let first_id = first["id"].as_str().expect("key id");

    let (status, rotated) = api
        .call(
            "POST",
            &format!("/api/v1/users/{id}/keys/{first_id}/rotate?grace_secs=0"),
            Some(first_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let second_key = rotated["key"].as_str().expect("new key");
    let second_id = rotated["id"].as_str().expect("new id");
    assert_ne!(second_key, first_key);
    assert_eq!(
        api.call("GET", "/api/v1/users/me", Some(first_key), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.call("GET", "/api/v1/users/me", Some(second_key), None)
            .await
            .0,
        StatusCode::OK
    );

    let path = format!("/api/v1/users/{id}/keys/{second_id}");
    assert_eq!(
        api.admin("DELETE", &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.admin("DELETE", &path, None).await.0,
        StatusCode::NO_CONTENT,
        "idempotent"
    );
    assert_eq!(
        api.call("GET", "/api/v1/users/me", Some(second_key), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = api
        .admin(
            "DELETE",
            &format!("/api/v1/users/{id}/keys/k_missing"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn users_cannot_touch_other_users() {
    let api = Api::start().await;
    let erin = api.create_user("erin").await;
    let frank = api.create_user("frank").await;
    let erin_id = erin["id"].as_str().expect("id");
    let frank_id = frank["id"].as_str().expect("id");
    let erin_key = api.issue_key(erin_id).await;
    for (method, path) in [
        ("GET", format!("/api/v1/users/{frank_id}")),
        ("GET", format!("/api/v1/users/{frank_id}/keys")),
        ("POST", format!("/api/v1/users/{frank_id}/keys")),
        ("PATCH", format!("/api/v1/users/{erin_id}")),
        ("GET", "/api/v1/audit".to_string()),
    ] {
        let (status, _) = api
            .call(method, &path, Some(&erin_key), Some(json!({"name": "x"})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
}

#[tokio::test]
async fn suspending_and_deleting_a_user_disables_their_keys() {
    let api = Api::start().await;
    let (id, key) = api.user_with_key("gina").await;

    let (status, changed) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"status": "suspended", "name": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["status"], "suspended");
    assert_eq!(changed["name"], Value::Null);
    assert_eq!(
        api.call("GET", "/api/v1/users/me", Some(&key), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        api.admin("DELETE", &format!("/api/v1/users/{id}"), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, deleted) = api.admin("GET", &format!("/api/v1/users/{id}"), None).await;
    assert_eq!(deleted["status"], "deleted");
    let (status, body) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_code(&body), "user_deleted");
}

#[tokio::test]
async fn changes_are_audited_without_secrets() {
    let api = Api::start().await;
    let (_, key) = api.user_with_key("hank").await;
    let (status, audit) = api.admin("GET", "/api/v1/audit", None).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"user.created") && actions.contains(&"api_key.created"),
        "{actions:?}"
    );
    let text = audit.to_string();
    assert!(!text.contains(&key));
    assert!(!text.contains(ADMIN_KEY));
}

#[tokio::test]
async fn health_and_metrics_answer_without_a_key() {
    let api = Api::start().await;
    let (status, health) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["checks"]["database"]["status"], "ok");
    assert_eq!(
        api.call("GET", "/api/v1/ready", None, None).await.0,
        StatusCode::OK
    );
    let (status, metrics) = api.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics
        .as_str()
        .expect("text")
        .contains("tollgate_http_requests_total"));
    let (status, body) = api.call("GET", "/api/v1/nowhere", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn health_tells_only_admins_why_a_dependency_is_down() {
    let api = Api::start_with(|config| config.redis.url = "redis://127.0.0.1:1".into()).await;
    let (status, public) = api.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(public["status"], "degraded");
    assert_eq!(public["checks"]["redis"], json!({"status": "down"}));

    let (status, detailed) = api.admin("GET", "/api/v1/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detailed["checks"]["redis"]["status"], "down");
    assert!(
        detailed["checks"]["redis"]["error"].is_string(),
        "{detailed}"
    );
}

#[tokio::test]
async fn unknown_methods_share_one_metric_label() {
    let api = Api::start().await;
    for method in ["FOO123", "FOO124", "BREW"] {
        api.call(method, "/api/v1/health", None, None).await;
    }
    let (_, metrics) = api.call("GET", "/metrics", None, None).await;
    let metrics = metrics.as_str().expect("text");
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
    assert!(!metrics.contains("FOO12"), "{metrics}");
    assert!(!metrics.contains("BREW"), "{metrics}");
}

#[tokio::test]
async fn a_settings_object_sent_as_an_array_is_refused() {
    let api = Api::start().await;
    let (status, body) = api
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "gold", "rate_limits": [5, 60]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_body");
    let user = api.create_user("bob").await;
    let path = format!("/api/v1/users/{}", user["id"].as_str().expect("id"));
    let (status, body) = api
        .admin("PATCH", &path, Some(json!({"quotas": [1000]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_body");

    let (status, group) = api
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "gold", "rate_limits": {"requests_per_second": 5}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_eq!(group["rate_limits"]["requests_per_second"], 5);
    let (status, user) = api
        .admin("PATCH", &path, Some(json!({"quotas": null})))
        .await;
    assert_eq!(status, StatusCode::OK, "{user}");
}
