//! Tenants through the admin API: their settings, what their users inherit and may use to log
//! in, their statistics, and their deletion; and the user fields and listings that came with
//! them (enterprise fields, groups on the user object, filters, soft delete and restore).

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

use support::app::{error_code, key_principal, Api};
use support::{against_both_databases, TestDatabase};

against_both_databases!(a_tenant_with_users_is_deleted_only_with_them);

const PASSWORD: &str = "correct horse battery";

fn id(object: &Value) -> String {
    object["id"].as_str().expect("id").to_string()
}

/// The usernames `GET /api/v1/users?{query}` lists, in its order.
async fn usernames(api: &Api, query: &str) -> Vec<String> {
    let (status, page) = api
        .admin("GET", &format!("/api/v1/users?{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|user| user["username"].as_str().expect("username").to_string())
        .collect()
}

async fn create_tenant(api: &Api, body: Value) -> Value {
    let (status, tenant) = api.admin("POST", "/api/v1/tenants", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    tenant
}

#[tokio::test]
async fn tenants_are_created_validated_changed_and_unique() {
    let api = Api::start().await;
    let tenant = create_tenant(&api, json!({"id": "acme", "name": "Acme Corp"})).await;
    assert_eq!(tenant["default_role"], "user");
    assert_eq!(tenant["login_methods"], json!([]));
    let generated = create_tenant(&api, json!({"name": "Globex"})).await;
    assert!(id(&generated).starts_with("t_"), "{generated}");

    let (status, body) = api
        .admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"id": "acme", "name": "Again"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "tenant_exists");
    for (bad, field) in [
        (json!({"id": "Not A Slug", "name": "x"}), "id"),
        (json!({"name": ""}), "name"),
        (
            json!({"name": "x", "default_role": "admin"}),
            "default_role",
        ),
        (
            json!({"name": "x", "login_methods": ["telepathy"]}),
            "login_methods",
        ),
        (
            json!({"name": "x", "default_group_id": "g_nothere"}),
            "default_group_id",
        ),
        (
            json!({"name": "x", "quotas": {"reset_day": 31}}),
            "quotas.reset_day",
        ),
    ] {
        let (status, body) = api
            .admin("POST", "/api/v1/tenants", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(field), "{bad}: {message}");
    }
    let (_, list) = api.admin("GET", "/api/v1/tenants", None).await;
    assert_eq!(list["total"], 2, "nothing refused was kept");

    let (status, changed) = api
        .admin(
            "PATCH",
            "/api/v1/tenants/acme",
            Some(json!({"name": "Acme", "mfa_required": true, "login_methods": ["local"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["login_methods"], json!(["local"]));
    let (status, _) = api.admin("GET", "/api/v1/tenants/nothere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_new_user_of_a_tenant_gets_its_default_role_and_group_and_inherits_its_limits() {
    let api = Api::start().await;
    let (_, group) = api
        .admin("POST", "/api/v1/groups", Some(json!({"name": "everyone"})))
        .await;
    create_tenant(
        &api,
        json!({
            "id": "acme", "name": "Acme", "default_role": "auditor",
            "default_group_id": id(&group),
            "rate_limits": {"requests_per_minute": 77},
            "quotas": {"monthly_requests": 1234},
        }),
    )
    .await;
    let user = api
        .create_user_with(json!({"username": "newcomer", "tenant_id": "acme"}))
        .await;
    assert_eq!(user["role"], "auditor");
    assert_eq!(user["groups"], json!([id(&group)]));

    let key = api.issue_key(&id(&user)).await;
    let principal = key_principal(&api.filter, &key).await.expect("principal");
    let per_minute: Vec<u64> = principal
        .rate_limits
        .iter()
        .filter(|limit| limit.window_seconds == 60)
        .map(|limit| limit.requests)
        .collect();
    assert_eq!(per_minute, [77], "{principal:?}");
    let (_, quota) = api
        .admin("GET", &format!("/api/v1/users/{}/quota", id(&user)), None)
        .await;
    assert_eq!(quota["quotas"][0]["limit"], 1234, "{quota}");

    // A user's own setting wins over the tenant's.
    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{}", id(&user)),
            Some(json!({"quotas": {"monthly_requests": 5}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, quota) = api
        .admin("GET", &format!("/api/v1/users/{}/quota", id(&user)), None)
        .await;
    assert_eq!(quota["quotas"][0]["limit"], 5, "{quota}");
}

#[tokio::test]
async fn a_tenant_decides_its_users_login_methods_and_second_factor() {
    let api = Api::start().await;
    create_tenant(
        &api,
        json!({"id": "strict", "name": "Strict", "login_methods": ["ldap"]}),
    )
    .await;
    api.create_user_with(json!({"username": "ann", "password": PASSWORD, "tenant_id": "strict"}))
        .await;
    let login = json!({"username": "ann", "password": PASSWORD});
    let (status, body) = api
        .call("POST", "/api/v1/auth/login", None, Some(login.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "login_method_not_allowed");
    let wrong = json!({"username": "ann", "password": "not the password"});
    let (status, body) = api
        .call("POST", "/api/v1/auth/login", None, Some(wrong))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the method is told only after the password: {body}"
    );

    let (status, _) = api
        .admin(
            "PATCH",
            "/api/v1/tenants/strict",
            Some(json!({"login_methods": [], "mfa_required": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .call("POST", "/api/v1/auth/login", None, Some(login))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["mfa_enrolment_required"], true, "{body}");
}

async fn a_tenant_with_users_is_deleted_only_with_them(db: TestDatabase) {
    let api = Api::start_on(Arc::new(db), |_| {}).await;
    create_tenant(&api, json!({"id": "gone", "name": "Gone"})).await;
    let user = api
        .create_user_with(json!({"username": "leaver", "tenant_id": "gone"}))
        .await;
    let key = api.issue_key(&id(&user)).await;
    let (_, group) = api
        .admin(
            "POST",
            "/api/v1/groups",
            Some(json!({"name": "gone-team", "tenant_id": "gone"})),
        )
        .await;

    let (status, body) = api.admin("DELETE", "/api/v1/tenants/gone", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "tenant_not_empty");
    let (status, tenant) = api.admin("GET", "/api/v1/tenants/gone", None).await;
    assert_eq!(status, StatusCode::OK, "nothing was deleted");
    assert_eq!(tenant["statistics"]["users"], 1);
    assert_eq!(tenant["statistics"]["keys"], 1);

    let (status, _) = api
        .admin("DELETE", "/api/v1/tenants/gone?cascade=true", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.admin("GET", "/api/v1/tenants/gone", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, user) = api
        .admin("GET", &format!("/api/v1/users/{}", id(&user)), None)
        .await;
    assert_eq!(user["status"], "deleted");
    assert!(
        key_principal(&api.filter, &key).await.is_none(),
        "the key went too"
    );
    let (status, _) = api
        .admin("GET", &format!("/api/v1/groups/{}", id(&group)), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the tenant's groups went with it"
    );
    let (status, body) = api
        .admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"id": "gone", "name": "Again"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a deleted tenant's id is not reused: {body}"
    );
    let (status, restored) = api
        .admin(
            "POST",
            &format!("/api/v1/users/{}/restore", id(&user)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(
        restored["tenant_id"],
        Value::Null,
        "restored outside the deleted tenant"
    );
}

#[tokio::test]
async fn users_carry_enterprise_fields_and_groups_and_are_filtered_and_sorted() {
    let api = Api::start().await;
    create_tenant(&api, json!({"id": "acme", "name": "Acme"})).await;
    let (_, group) = api
        .admin("POST", "/api/v1/groups", Some(json!({"name": "engineers"})))
        .await;
    let grace = api
        .create_user_with(json!({
            "username": "grace", "tenant_id": "acme", "role": "auditor",
            "organization": "Acme", "department": "Engineering", "employee_id": "E-42",
            "groups": [id(&group)],
        }))
        .await;
    assert_eq!(grace["department"], "Engineering");
    assert_eq!(grace["groups"], json!([id(&group)]));
    api.create_user_with(json!({"username": "alan", "department": "Research"}))
        .await;

    assert_eq!(usernames(&api, "q=engineering").await, ["grace"]);
    assert_eq!(usernames(&api, "q=e-42").await, ["grace"]);
    assert_eq!(usernames(&api, "tenant_id=acme").await, ["grace"]);
    assert_eq!(usernames(&api, "role=auditor").await, ["grace"]);
    assert_eq!(
        usernames(&api, &format!("group={}", id(&group))).await,
        ["grace"]
    );
    assert!(usernames(&api, "source=local")
        .await
        .contains(&"alan".to_string()));
    assert!(usernames(&api, "source=ldap").await.is_empty());
    let sorted = usernames(&api, "sort=-username").await;
    let mut expected = sorted.clone();
    expected.sort_by_key(|name| std::cmp::Reverse(name.to_lowercase()));
    assert_eq!(sorted, expected);
    let (status, body) = api.admin("GET", "/api/v1/users?sort=shoe-size", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, changed) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{}", id(&grace)),
            Some(json!({"groups": [], "department": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["groups"], json!([]));
    assert_eq!(changed["department"], Value::Null);
    let (_, members) = api
        .admin(
            "GET",
            &format!("/api/v1/groups/{}/members", id(&group)),
            None,
        )
        .await;
    assert_eq!(members["total"], 0);
}

#[tokio::test]
async fn a_deleted_user_loses_keys_and_sessions_and_comes_back_without_them() {
    let api = Api::start().await;
    let (user_id, access_token) = api.logged_in_user("dora").await;
    let key = api.issue_key(&user_id).await;
    let (status, _) = api
        .admin("DELETE", &format!("/api/v1/users/{user_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, keys) = api
        .admin("GET", &format!("/api/v1/users/{user_id}/keys"), None)
        .await;
    assert!(
        keys["items"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|key| key["status"] == "revoked"),
        "{keys}"
    );
    let (status, _) = api
        .call_with_session("GET", "/api/v1/users/me", &access_token)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{user_id}"),
            Some(json!({"name": "D"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, restored) = api
        .admin("POST", &format!("/api/v1/users/{user_id}/restore"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["status"], "active");
    assert!(
        key_principal(&api.filter, &key).await.is_none(),
        "the old key stays revoked"
    );
    let (status, body) = api
        .admin("POST", &format!("/api/v1/users/{user_id}/restore"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "user_not_deleted");
    let (_, audit) = api.admin("GET", "/api/v1/audit", None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["target"] == user_id.as_str())
        .map(|entry| entry["action"].as_str().expect("action"))
        .collect();
    assert!(
        actions.contains(&"user.deleted") && actions.contains(&"user.restored"),
        "{actions:?}"
    );
}
