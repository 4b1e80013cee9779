//! Who reaches the admin API from where, beyond their role: the user's IP allowlist, a key's
//! scopes, and the origin of changes the session cookie authenticates.

mod support;

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::app::{error_code, Api, LOCAL_PEER};

const OUTSIDE: &str = "192.0.2.1:5000";
const INSIDE: &str = "10.1.2.3:5000";

/// A key of `user_id` with these scopes, issued by the admin.
async fn scoped_key(api: &Api, user_id: &str, scopes: &[&str]) -> String {
    let issued = api
        .issue_key_with(user_id, json!({"name": "scoped", "scopes": scopes}))
        .await;
    issued["key"].as_str().expect("key").to_string()
}

fn id(object: &Value) -> String {
    object["id"].as_str().expect("id").to_string()
}

async fn key_count(api: &Api, user_id: &str) -> u64 {
    let (_, keys) = api
        .admin("GET", &format!("/api/v1/users/{user_id}/keys"), None)
        .await;
    keys["total"].as_u64().expect("total")
}

#[tokio::test]
async fn a_key_scoped_to_data_routes_cannot_reach_the_admin_api() {
    let api = Api::start().await;
    let user = id(&api.create_user("reporter").await);
    let key = scoped_key(&api, &user, &["GET /v1/reports"]).await;

    let (status, body) = api.call("GET", "/api/v1/users/me", Some(&key), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "scope_denied");
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/v1/users/{user}/keys"),
            Some(&key),
            Some(json!({"name": "unscoped"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "scope_denied");
    assert_eq!(key_count(&api, &user).await, 1, "no key was issued");
}

#[tokio::test]
async fn an_admins_scoped_key_reaches_only_what_its_scopes_name() {
    let api = Api::start().await;
    let admin = id(&api
        .create_user_with(json!({"username": "ops", "role": "admin"}))
        .await);
    let reader = scoped_key(&api, &admin, &["GET /api/v1/users"]).await;
    let everything = scoped_key(&api, &admin, &["admin:*"]).await;
    let prefix = scoped_key(&api, &admin, &["/api/v1/"]).await;

    let (status, _) = api.call("GET", "/api/v1/users", Some(&reader), None).await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, body) in [
        ("POST", "/api/v1/users", Some(json!({"username": "sneaky"}))),
        ("GET", "/api/v1/audit", None),
        ("DELETE", &format!("/api/v1/users/{admin}"), None),
    ] {
        let (status, answer) = api.call(method, path, Some(&reader), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(error_code(&answer), "scope_denied", "{method} {path}");
    }
    for (number, key) in [everything, prefix].iter().enumerate() {
        let body = json!({"username": format!("created_{number}")});
        let (status, answer) = api
            .call("POST", "/api/v1/users", Some(key), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (_, users) = api.admin("GET", "/api/v1/users", None).await;
    assert!(!users.to_string().contains("sneaky"), "{users}");
}

#[tokio::test]
async fn a_scoped_key_issues_and_rotates_only_keys_within_its_scopes() {
    let api = Api::start().await;
    let user = id(&api.create_user("delegator").await);
    let keys_path = format!("/api/v1/users/{user}/keys");
    let unscoped = api.issue_key_with(&user, json!({"name": "full"})).await;
    let scoped = api
        .issue_key_with(
            &user,
            json!({"name": "delegating", "scopes": [format!("* {keys_path}"), "GET /v1/reports"]}),
        )
        .await;
    let key = scoped["key"].as_str().expect("key");
    let create = |scopes: Option<Value>| {
        let mut body = json!({"name": "child"});
        if let Some(scopes) = scopes {
            body["scopes"] = scopes;
        }
        api.call("POST", &keys_path, Some(key), Some(body))
    };

    for wider in [
        None,
        Some(json!([])),
        Some(json!(["/v1/"])),
        Some(json!(["GET /v1/reports", "/v1/admin"])),
        Some(json!(["POST /v1/reports"])),
        Some(json!(["admin:*"])),
    ] {
        let (status, body) = create(wider.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{wider:?}: {body}");
        assert_eq!(error_code(&body), "scopes_too_wide", "{wider:?}");
    }
    let (status, body) = create(Some(json!(["v1/reports"]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    assert_eq!(key_count(&api, &user).await, 2, "nothing was issued");

    let (status, child) = create(Some(json!(["GET /v1/reports/daily"]))).await;
    assert_eq!(status, StatusCode::CREATED, "{child}");
    assert_eq!(child["scopes"], json!(["GET /v1/reports/daily"]));

    let rotate = |key_id: &Value| format!("{keys_path}/{}/rotate", key_id.as_str().expect("id"));
    let (status, body) = api
        .call("POST", &rotate(&unscoped["id"]), Some(key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "scopes_too_wide");
    let (status, body) = api
        .call("POST", &rotate(&child["id"]), Some(key), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scopes"], child["scopes"]);
}

#[tokio::test]
async fn the_allowlist_holds_on_the_admin_api_for_keys_and_sessions() {
    let api = Api::start().await;
    let (user, token) = api
        .logged_in_user_with(json!({"username": "pinned", "ip_allowlist": ["10.0.0.0/8"]}))
        .await;
    let key = api.issue_key(&user).await;
    let bearer = format!("Bearer {token}");
    let keys_path = format!("/api/v1/users/{user}/keys");
    let credentials = [
        ("x-api-key", key.as_str()),
        ("authorization", bearer.as_str()),
    ];

    for credential in credentials {
        let outside = api
            .answer_from(OUTSIDE, "GET", "/api/v1/users/me", &[credential], None)
            .await;
        assert_eq!(outside.status, StatusCode::FORBIDDEN, "{}", credential.0);
        assert_eq!(error_code(&outside.body), "ip_not_allowed");
        let new_key = Some(json!({"name": "from outside"}));
        let outside = api
            .answer_from(OUTSIDE, "POST", &keys_path, &[credential], new_key)
            .await;
        assert_eq!(outside.status, StatusCode::FORBIDDEN, "{}", credential.0);
        let inside = api
            .answer_from(INSIDE, "GET", "/api/v1/users/me", &[credential], None)
            .await;
        assert_eq!(
            inside.status,
            StatusCode::OK,
            "{}: {}",
            credential.0,
            inside.body
        );
    }
    assert_eq!(key_count(&api, &user).await, 1, "no key was issued");
}

/// The key of a new user who may call from 10.0.0.0/8 only.
async fn pinned_key(api: &Api) -> String {
    let user = api
        .create_user_with(json!({"username": "pinned", "ip_allowlist": ["10.0.0.0/8"]}))
        .await;
    api.issue_key(&id(&user)).await
}

async fn me_via(api: &Api, key: &str, peer: &str, forwarded_for: &str) -> (StatusCode, Value) {
    let headers = [("x-api-key", key), ("x-forwarded-for", forwarded_for)];
    let answer = api
        .answer_from(peer, "GET", "/api/v1/users/me", &headers, None)
        .await;
    (answer.status, answer.body)
}

#[tokio::test]
async fn without_trusted_proxies_x_forwarded_for_changes_nothing() {
    let api = Api::start().await;
    let key = pinned_key(&api).await;

    assert_eq!(
        me_via(&api, &key, OUTSIDE, "10.1.1.1").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        me_via(&api, &key, INSIDE, "192.0.2.7").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn behind_trusted_proxies_the_address_they_vouch_for_is_checked() {
    let api = Api::start_with(|config| config.http.trusted_hops = 1).await;
    let key = pinned_key(&api).await;

    // The proxy appends the address it saw; what the client wrote before it counts for nothing.
    let (status, body) = me_via(&api, &key, LOCAL_PEER, "10.9.9.9, 192.0.2.7").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(&body), "ip_not_allowed");
    let (status, body) = me_via(&api, &key, LOCAL_PEER, "192.0.2.7, 10.1.1.1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = me_via(&api, &key, LOCAL_PEER, "not-an-address").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_forwarded_for");
}

#[tokio::test]
async fn behind_trusted_proxies_failures_count_against_the_client_not_the_proxy() {
    let api = Api::start_with(|config| {
        config.http.trusted_hops = 1;
        config.login.address_failures_burst = 2;
    })
    .await;
    let api = &api;
    let guess = |client: &'static str| async move {
        let headers = [("x-api-key", "tg_guessed"), ("x-forwarded-for", client)];
        api.answer_from(LOCAL_PEER, "GET", "/api/v1/users/me", &headers, None)
            .await
            .status
    };

    for _ in 0..2 {
        assert_eq!(guess("192.0.2.7").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(guess("192.0.2.7").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        guess("198.51.100.8").await,
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxy keeps its own budget"
    );
}

const OWN_HOST: (&str, &str) = ("host", "127.0.0.1:8090");

/// A new admin, logged in: their id and their session's `Cookie` header.
async fn admin_session(api: &Api, username: &str) -> (String, String) {
    let (id, token) = api
        .logged_in_user_with(json!({"username": username, "role": "admin"}))
        .await;
    (id, format!("tollgate_session={token}"))
}

/// Changes a session cookie can authenticate without a body, each with its status on success;
/// logout comes last.
async fn bodiless_changes(api: &Api, user: &str) -> Vec<(String, StatusCode)> {
    let key = api.issue_key_with(user, json!({"name": "rotated"})).await;
    vec![
        (
            format!("/api/v1/users/{user}/keys/{}/rotate", id(&key)),
            StatusCode::CREATED,
        ),
        (
            "/api/v1/auth/signing-keys/rotate".to_string(),
            StatusCode::CREATED,
        ),
        ("/api/v1/auth/logout".to_string(), StatusCode::NO_CONTENT),
    ]
}

async fn post_with_cookie(
    api: &Api,
    path: &str,
    cookie: &str,
    proof: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut headers = vec![OWN_HOST, ("cookie", cookie)];
    headers.extend_from_slice(proof);
    api.call_with_headers("POST", path, &headers, None).await
}

#[tokio::test]
async fn cookie_authenticated_changes_from_other_origins_are_refused() {
    let api = Api::start().await;
    let (user, cookie) = admin_session(&api, "clicked").await;
    let refused: [&[(&str, &str)]; 6] = [
        &[],
        &[("origin", "http://127.0.0.1:9999")],
        &[("origin", "https://127.0.0.1:8090.evil.example")],
        &[("origin", "null")],
        &[("x-tollgate-csrf", "yes")],
        &[
            ("origin", "http://127.0.0.1:9999"),
            ("x-tollgate-csrf", "1"),
        ],
    ];
    for (path, _) in bodiless_changes(&api, &user).await {
        for proof in refused {
            let (status, body) = post_with_cookie(&api, &path, &cookie, proof).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} {proof:?}: {body}");
            assert_eq!(error_code(&body), "origin_not_allowed", "{path} {proof:?}");
        }
    }
    let (status, _) = api
        .call_with_headers("GET", "/api/v1/users/me", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "reads need no origin; the session lives on"
    );
    let (_, keys) = api
        .admin("GET", &format!("/api/v1/users/{user}/keys"), None)
        .await;
    assert_eq!(
        keys["items"][0]["status"], "active",
        "the key was not rotated"
    );
}

#[tokio::test]
async fn cookie_authenticated_changes_from_the_control_plane_s_own_pages_pass() {
    let api = Api::start_with(|config| {
        config.http.allowed_origins = vec!["https://admin.example.com".into()];
    })
    .await;
    let accepted: [&[(&str, &str)]; 3] = [
        &[("origin", "http://127.0.0.1:8090")],
        &[("origin", "https://admin.example.com")],
        &[("x-tollgate-csrf", "1")],
    ];
    for (number, proof) in accepted.into_iter().enumerate() {
        let (user, cookie) = admin_session(&api, &format!("admin_{number}")).await;
        for (path, success) in bodiless_changes(&api, &user).await {
            let (status, body) = post_with_cookie(&api, &path, &cookie, proof).await;
            assert_eq!(status, success, "{path} {proof:?}: {body}");
        }
    }
}

#[tokio::test]
async fn changes_authenticated_by_a_header_need_no_origin() {
    let api = Api::start().await;
    let (user, cookie) = admin_session(&api, "scripted").await;
    let token = cookie.trim_start_matches("tollgate_session=");
    let bearer = format!("Bearer {token}");
    for (path, success) in bodiless_changes(&api, &user).await {
        let (status, body) = api
            .call_with_headers(
                "POST",
                &path,
                &[("authorization", &bearer), ("origin", "http://elsewhere")],
                None,
            )
            .await;
        assert_eq!(status, success, "{path}: {body}");
    }
}
