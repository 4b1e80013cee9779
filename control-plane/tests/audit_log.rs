//! The audit log through the admin API, on SQLite and Postgres: each admin change records the
//! object before and after with no secret in it, and the log filters by actor, action (exact
//! or prefix), target, tenant and time, refusing bad filters by name.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::app::{error_code, Api};
use support::{against_both_databases, TestDatabase};

against_both_databases!(
    admin_changes_record_the_object_before_and_after_without_secrets,
    the_log_filters_by_actor_action_target_tenant_and_time,
);

/// The entries `query` selects, newest first.
async fn entries(api: &Api, query: &str) -> Vec<Value> {
    let (status, page) = api
        .admin("GET", &format!("/api/v1/audit?per_page=200&{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().expect("items").clone()
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect()
}

async fn admin_changes_record_the_object_before_and_after_without_secrets(db: TestDatabase) {
    let api = Api::start_on(Arc::new(db), |_| {}).await;
    let (status, _) = api
        .admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"id": "t-acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let user = api
        .create_user_with(
            json!({"username": "ada", "password": "correct horse battery", "tenant_id": "t-acme"}),
        )
        .await;
    let id = user["id"].as_str().expect("id");
    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"role": "admin", "password": "another horse battery"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let key = api.issue_key(id).await;
    let (_, group) = api
        .admin("POST", "/api/v1/groups", Some(json!({"name": "team"})))
        .await;
    let group_id = group["id"].as_str().expect("group id");
    let (status, _) = api
        .admin("DELETE", &format!("/api/v1/groups/{group_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let about_user = entries(&api, &format!("target={id}")).await;
    assert_eq!(actions(&about_user), ["user.updated", "user.created"]);
    let updated = &about_user[0]["details"];
    assert_eq!(updated["before"]["role"], "user", "{updated}");
    assert_eq!(updated["after"]["role"], "admin", "{updated}");
    assert_eq!(updated["password_changed"], true, "{updated}");
    assert_eq!(
        about_user[0]["tenant_id"],
        Value::Null,
        "an admin of the tenant is not the tenant's staff's to read about"
    );
    assert_eq!(about_user[1]["tenant_id"], "t-acme", "created as its user");
    let created = &about_user[1]["details"];
    assert_eq!(created["after"]["username"], "ada", "{created}");
    assert!(created.get("before").is_none(), "{created}");

    let deleted = entries(&api, &format!("target={group_id}&action=group.deleted")).await;
    assert_eq!(deleted[0]["details"]["before"]["name"], "team");
    assert!(deleted[0]["details"].get("after").is_none());

    let issued = entries(&api, "action=api_key.created").await;
    assert_eq!(issued[0]["details"]["after"]["user_id"], id);
    let log = entries(&api, "")
        .await
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    for secret in [
        key.as_str(),
        "correct horse",
        "another horse",
        "argon2",
        "password_hash",
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

async fn the_log_filters_by_actor_action_target_tenant_and_time(db: TestDatabase) {
    let api = Api::start_on(Arc::new(db), |_| {}).await;
    let (status, _) = api
        .admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"id": "t-acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let acme = api
        .create_user_with(json!({"username": "ann", "tenant_id": "t-acme"}))
        .await;
    let acme_id = acme["id"].as_str().expect("id");
    let other = api.create_user("bob").await;
    let other_id = other["id"].as_str().expect("id");
    api.issue_key(other_id).await;
    let (_, me) = api.admin("GET", "/api/v1/users/me", None).await;
    let admin_id = me["id"].as_str().expect("admin id");

    let users_created = entries(&api, "action=user.*").await;
    assert_eq!(
        actions(&users_created),
        ["user.created", "user.created", "user.created"],
        "ann, bob and the bootstrap admin"
    );
    let ann_created = users_created[1]["at"].as_str().expect("at");
    let keys_since = entries(&api, &format!("action=api_key.created&since={ann_created}")).await;
    assert_eq!(
        actions(&keys_since),
        ["api_key.created"],
        "bob's, not the admin's"
    );
    assert_eq!(
        entries(&api, "action=user").await.len(),
        0,
        "exact unless `*`"
    );
    let mine = entries(&api, &format!("actor={admin_id}&since={ann_created}")).await;
    assert_eq!(
        actions(&mine),
        ["api_key.created", "user.created", "user.created"]
    );
    let before_ann = entries(&api, &format!("until={ann_created}&action=user.*")).await;
    assert_eq!(before_ann.len(), 1, "only the admin's own creation");
    assert_eq!(before_ann[0]["actor_user_id"], Value::Null);
    assert_eq!(entries(&api, "actor=u_nobody").await.len(), 0);
    let acme_only = entries(&api, "tenant=t-acme&action=user.*").await;
    assert_eq!(acme_only.len(), 1);
    assert_eq!(acme_only[0]["target"], acme_id);
    assert_eq!(entries(&api, &format!("target={other_id}")).await.len(), 1);

    let (_, paged) = api
        .admin("GET", "/api/v1/audit?action=user.*&per_page=1&page=2", None)
        .await;
    assert_eq!(paged["total"], 3);
    assert_eq!(paged["items"].as_array().map(Vec::len), Some(1));

    for (query, field) in [
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        (
            "since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
            "until",
        ),
        ("action=us*er", "action"),
        ("actor=", "actor"),
        ("tenant=", "tenant"),
    ] {
        let (status, body) = api
            .admin("GET", &format!("/api/v1/audit?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(error_code(&body), "validation_failed");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
}
