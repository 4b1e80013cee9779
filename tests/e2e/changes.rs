//! Every admin call that changes what the filter caches about a principal reaches Envoy within
//! a second of its answer, while Envoy holds the principal in its caches. One row per call
//! (and per kind of principal, where a call ends sessions as well).

use std::time::Duration;

use serde_json::{json, Value};
use tollgate_e2e::http::{client, send, Answer};
use tollgate_e2e::{ControlPlaneOptions, EnvoyOptions, Gateway};

const PASSWORD: &str = "correct horse battery";
/// A rotated signing key signs this long after it is published.
const KEY_PUBLISH_DELAY: Duration = Duration::from_secs(1);

/// Who a row caches on Envoy before its change.
enum Cached {
    /// A user, created from this body, presenting an API key.
    KeyOf(Value),
    /// A user with an API key, member of a group created from this body.
    MemberOf(Value),
    /// A user presenting a session's access token.
    Session,
}

/// A principal Envoy has cached.
struct Principal {
    user: String,
    key_id: String,
    /// The header and value its requests present.
    credential: (&'static str, String),
    /// The group it is a member of, when cached as one.
    group: String,
    /// The refresh token of its session, when cached with one.
    refresh_token: String,
}

/// What requests present after the change.
enum Presents {
    /// The cached principal's own credential.
    Own,
    /// A session token from a new login, once a rotated signing key has begun to sign.
    NewSession,
}

/// One mutating endpoint.
struct Row {
    endpoint: &'static str,
    cached: Cached,
    /// Makes the change through the admin API.
    change: fn(&Gateway, &Principal),
    presents: Presents,
    /// Whether Envoy's answer shows the change.
    refreshed: fn(&Answer) -> bool,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            endpoint: "PATCH /api/v1/users/{id} (status)",
            cached: Cached::KeyOf(json!({})),
            change: |gateway, principal| {
                change_user(gateway, principal, json!({"status": "suspended"}));
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "user_suspended",
        },
        Row {
            endpoint: "PATCH /api/v1/users/{id} (tenant)",
            cached: Cached::KeyOf(json!({"tenant_id": "t_before"})),
            change: |gateway, principal| {
                change_user(gateway, principal, json!({"tenant_id": "t_after"}));
            },
            presents: Presents::Own,
            refreshed: |answer| seen_header(answer, "x-tollgate-tenant-id") == "t_after",
        },
        Row {
            endpoint: "PATCH /api/v1/users/{id} (ip_allowlist)",
            cached: Cached::KeyOf(json!({"ip_allowlist": ["127.0.0.0/8"]})),
            change: |gateway, principal| {
                change_user(gateway, principal, json!({"ip_allowlist": ["10.0.0.0/8"]}));
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "ip_not_allowed",
        },
        Row {
            endpoint: "PATCH /api/v1/users/{id} (rate_limits)",
            cached: Cached::KeyOf(
                json!({"rate_limits": {"requests_per_minute": 60, "mode": "local"}}),
            ),
            change: |gateway, principal| {
                let limits = json!({"rate_limits": {"requests_per_minute": 50}});
                change_user(gateway, principal, limits);
            },
            presents: Presents::Own,
            refreshed: |answer| limit_header(answer) == "50",
        },
        Row {
            endpoint: "PATCH /api/v1/users/{id} (quotas)",
            cached: Cached::KeyOf(json!({"quotas": {"monthly_requests": 100}})),
            change: |gateway, principal| {
                wait_until_used(gateway, principal, 1);
                change_user(
                    gateway,
                    principal,
                    json!({"quotas": {"monthly_requests": 1}}),
                );
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "quota_exceeded",
        },
        Row {
            endpoint: "DELETE /api/v1/users/{id}",
            cached: Cached::KeyOf(json!({})),
            change: |gateway, principal| {
                let path = format!("/api/v1/users/{}", principal.user);
                admin(gateway, "DELETE", &path, None, 204);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.status == 401,
        },
        Row {
            endpoint: "PATCH /api/v1/users/{id} (password)",
            cached: Cached::Session,
            change: |gateway, principal| {
                let password = json!({"password": "a brand new passphrase"});
                change_user(gateway, principal, password);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "PATCH /api/v1/users/{id} (suspended, then active again)",
            cached: Cached::Session,
            change: |gateway, principal| {
                change_user(gateway, principal, json!({"status": "suspended"}));
                change_user(gateway, principal, json!({"status": "active"}));
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "DELETE /api/v1/users/{id} (signed in)",
            cached: Cached::Session,
            change: |gateway, principal| {
                let path = format!("/api/v1/users/{}", principal.user);
                admin(gateway, "DELETE", &path, None, 204);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "POST /api/v1/groups/{id}/members",
            cached: Cached::KeyOf(json!({})),
            change: |gateway, principal| {
                let group = create_group(gateway, json!({}));
                let path = format!("/api/v1/groups/{group}/members");
                admin(
                    gateway,
                    "POST",
                    &path,
                    Some(json!({"user_id": principal.user})),
                    201,
                );
            },
            presents: Presents::Own,
            refreshed: |answer| !seen_header(answer, "x-tollgate-groups").is_empty(),
        },
        Row {
            endpoint: "DELETE /api/v1/groups/{id}/members/{user_id}",
            cached: Cached::MemberOf(json!({})),
            change: |gateway, principal| {
                let path = format!(
                    "/api/v1/groups/{}/members/{}",
                    principal.group, principal.user
                );
                admin(gateway, "DELETE", &path, None, 204);
            },
            presents: Presents::Own,
            refreshed: |answer| seen_header(answer, "x-tollgate-groups").is_empty(),
        },
        Row {
            endpoint: "PATCH /api/v1/groups/{id}",
            cached: Cached::MemberOf(
                json!({"rate_limits": {"requests_per_minute": 30, "mode": "local"}}),
            ),
            change: |gateway, principal| {
                let path = format!("/api/v1/groups/{}", principal.group);
                let limits = json!({"rate_limits": {"requests_per_minute": 20}});
                admin(gateway, "PATCH", &path, Some(limits), 200);
            },
            presents: Presents::Own,
            refreshed: |answer| limit_header(answer) == "20",
        },
        Row {
            endpoint: "DELETE /api/v1/groups/{id}",
            cached: Cached::MemberOf(json!({})),
            change: |gateway, principal| {
                let path = format!("/api/v1/groups/{}", principal.group);
                admin(gateway, "DELETE", &path, None, 204);
            },
            presents: Presents::Own,
            refreshed: |answer| seen_header(answer, "x-tollgate-groups").is_empty(),
        },
        Row {
            endpoint: "DELETE /api/v1/users/{id}/keys/{key_id}",
            cached: Cached::KeyOf(json!({})),
            change: |gateway, principal| {
                admin(gateway, "DELETE", &key_path(principal), None, 204);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "invalid_api_key",
        },
        Row {
            endpoint: "POST /api/v1/users/{id}/keys/{key_id}/rotate",
            cached: Cached::KeyOf(json!({})),
            change: |gateway, principal| {
                let path = format!("{}/rotate?grace_secs=0", key_path(principal));
                admin(gateway, "POST", &path, None, 201);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "invalid_api_key",
        },
        Row {
            endpoint: "PATCH /api/v1/users/{id}/keys/{key_id}",
            cached: Cached::KeyOf(json!({})),
            change: |gateway, principal| {
                let limits = json!({"rate_limits": {"requests_per_minute": 40, "mode": "local"}});
                admin(gateway, "PATCH", &key_path(principal), Some(limits), 200);
            },
            presents: Presents::Own,
            refreshed: |answer| limit_header(answer) == "40",
        },
        Row {
            endpoint: "POST /api/v1/auth/logout",
            cached: Cached::Session,
            change: |gateway, principal| {
                let (name, value) = &principal.credential;
                let logout = send(
                    client()
                        .post(gateway.control_plane.url("/api/v1/auth/logout"))
                        .header(*name, value),
                );
                assert_eq!(logout.status, 204, "logout: {}", logout.text);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "POST /api/v1/users/me/password (from another session)",
            cached: Cached::Session,
            change: |gateway, principal| {
                let (token, _) = login(gateway, &principal.user);
                let changed = send(
                    client()
                        .post(gateway.control_plane.url("/api/v1/users/me/password"))
                        .bearer_auth(token)
                        .json(&json!({"current_password": PASSWORD,
                            "new_password": "a brand new passphrase"})),
                );
                assert_eq!(changed.status, 200, "password change: {}", changed.text);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "DELETE /api/v1/users/me/sessions/{id} (from another session)",
            cached: Cached::Session,
            change: |gateway, principal| {
                let (token, _) = login(gateway, &principal.user);
                let sessions = send(
                    client()
                        .get(gateway.control_plane.url("/api/v1/users/me/sessions"))
                        .bearer_auth(&token),
                );
                let cached = sessions.body["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|item| item["current"] == false))
                    .and_then(|item| item["id"].as_str())
                    .unwrap_or_else(|| panic!("the cached session: {}", sessions.text))
                    .to_string();
                let path = format!("/api/v1/users/me/sessions/{cached}");
                let ended = send(
                    client()
                        .delete(gateway.control_plane.url(&path))
                        .bearer_auth(&token),
                );
                assert_eq!(ended.status, 204, "end session: {}", ended.text);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "DELETE /api/v1/users/me/sessions",
            cached: Cached::Session,
            change: |gateway, principal| {
                let (name, value) = &principal.credential;
                let ended = send(
                    client()
                        .delete(gateway.control_plane.url("/api/v1/users/me/sessions"))
                        .header(*name, value),
                );
                assert_eq!(ended.status, 204, "log out everywhere: {}", ended.text);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "POST /api/v1/users/{id}/password-reset",
            cached: Cached::Session,
            change: |gateway, principal| {
                let path = format!("/api/v1/users/{}/password-reset", principal.user);
                admin(gateway, "POST", &path, Some(json!({})), 200);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "POST /api/v1/auth/refresh (a replaced refresh token again)",
            cached: Cached::Session,
            change: |gateway, principal| {
                let first = refresh(gateway, &principal.refresh_token);
                assert_eq!(first.status, 200, "refresh: {}", first.text);
                let reused = refresh(gateway, &principal.refresh_token);
                assert_eq!(reused.status, 401, "reused refresh: {}", reused.text);
            },
            presents: Presents::Own,
            refreshed: |answer| answer.error_code() == "session_revoked",
        },
        Row {
            endpoint: "POST /api/v1/auth/signing-keys/rotate",
            cached: Cached::Session,
            change: |gateway, _| {
                admin(
                    gateway,
                    "POST",
                    "/api/v1/auth/signing-keys/rotate",
                    None,
                    201,
                );
            },
            presents: Presents::NewSession,
            refreshed: |answer| answer.status == 200,
        },
    ]
}

#[test]
fn every_change_to_a_cached_principal_reaches_envoy_within_one_second() {
    let gateway = Gateway::start_with(ControlPlaneOptions {
        env: vec![(
            "TOLLGATE_SESSIONS__KEY_PUBLISH_DELAY_SECS".into(),
            KEY_PUBLISH_DELAY.as_secs().to_string(),
        )],
        ..Default::default()
    });
    for tenant in ["t_before", "t_after"] {
        let created = gateway.control_plane.admin(
            "POST",
            "/api/v1/tenants",
            Some(json!({"id": tenant, "name": tenant})),
        );
        assert_eq!(created.status, 201, "{}", created.text);
    }
    for (number, row) in rows().into_iter().enumerate() {
        let principal = cache(&gateway, &format!("changed_{number}"), &row.cached);
        let before = request(&gateway, &principal.credential);
        assert_eq!(before.status, 200, "{}: {}", row.endpoint, before.text);
        (row.change)(&gateway, &principal);
        let credential = match row.presents {
            Presents::Own => {
                assert!(
                    !(row.refreshed)(&before),
                    "{}: Envoy showed the change before it was made",
                    row.endpoint
                );
                principal.credential.clone()
            }
            Presents::NewSession => {
                std::thread::sleep(KEY_PUBLISH_DELAY + Duration::from_millis(100));
                let (token, _) = login(&gateway, &principal.user);
                ("authorization", format!("Bearer {token}"))
            }
        };
        let took = gateway.envoy.until(
            Duration::from_secs(1),
            || request(&gateway, &credential),
            row.refreshed,
        );
        println!("{}: reached Envoy in {took:?}", row.endpoint);
    }
}

/// Creates the row's principal and has Envoy cache it.
fn cache(gateway: &Gateway, username: &str, cached: &Cached) -> Principal {
    let cp = &gateway.control_plane;
    let mut body = match cached {
        Cached::KeyOf(body) => body.clone(),
        Cached::MemberOf(_) | Cached::Session => json!({}),
    };
    body["username"] = json!(username);
    body["password"] = json!(PASSWORD);
    let user = cp.create_user_with(body);
    let (key_id, key) = cp.create_key(&user);
    let group = match cached {
        Cached::MemberOf(group) => {
            let group = create_group(gateway, group.clone());
            let path = format!("/api/v1/groups/{group}/members");
            admin(gateway, "POST", &path, Some(json!({"user_id": user})), 201);
            group
        }
        Cached::KeyOf(_) | Cached::Session => String::new(),
    };
    let (credential, refresh_token) = match cached {
        Cached::Session => {
            let (token, refresh_token) = login(gateway, &user);
            (("authorization", format!("Bearer {token}")), refresh_token)
        }
        Cached::KeyOf(_) | Cached::MemberOf(_) => (("x-api-key", key), String::new()),
    };
    let principal = Principal {
        user,
        key_id,
        credential,
        group,
        refresh_token,
    };
    gateway.envoy.until(
        Duration::from_secs(2),
        || request(gateway, &principal.credential),
        |answer| answer.status == 200,
    );
    gateway.envoy.wait_for_worker_ticks();
    principal
}

fn request(gateway: &Gateway, (name, value): &(&'static str, String)) -> Answer {
    gateway.envoy.get("/", &[(name, value)])
}

fn admin(gateway: &Gateway, method: &str, path: &str, body: Option<Value>, status: u16) {
    let answer = gateway.control_plane.admin(method, path, body);
    assert_eq!(answer.status, status, "{method} {path}: {}", answer.text);
}

fn change_user(gateway: &Gateway, principal: &Principal, body: Value) {
    let path = format!("/api/v1/users/{}", principal.user);
    admin(gateway, "PATCH", &path, Some(body), 200);
}

fn create_group(gateway: &Gateway, mut body: Value) -> String {
    body["name"] = json!(format!("group_{}", chrono::Utc::now().timestamp_micros()));
    let answer = gateway
        .control_plane
        .admin("POST", "/api/v1/groups", Some(body));
    assert_eq!(answer.status, 201, "create group: {}", answer.text);
    answer.body["id"].as_str().expect("group id").to_string()
}

fn key_path(principal: &Principal) -> String {
    format!("/api/v1/users/{}/keys/{}", principal.user, principal.key_id)
}

/// Logs the user in by id; returns the access and refresh tokens.
fn login(gateway: &Gateway, user: &str) -> (String, String) {
    let cp = &gateway.control_plane;
    let username = cp.admin("GET", &format!("/api/v1/users/{user}"), None).body["username"]
        .as_str()
        .expect("username")
        .to_string();
    let answer = send(
        client()
            .post(cp.url("/api/v1/auth/login"))
            .json(&json!({"username": username, "password": PASSWORD})),
    );
    assert_eq!(answer.status, 200, "login: {}", answer.text);
    let token = |name: &str| answer.body[name].as_str().expect(name).to_string();
    (token("access_token"), token("refresh_token"))
}

fn refresh(gateway: &Gateway, refresh_token: &str) -> Answer {
    send(
        client()
            .post(gateway.control_plane.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": refresh_token})),
    )
}

/// Waits until the user's reported requests reach `at_least`.
fn wait_until_used(gateway: &Gateway, principal: &Principal, at_least: u64) {
    let path = format!("/api/v1/users/{}/quota", principal.user);
    let used = || {
        let answer = gateway.control_plane.admin("GET", &path, None);
        answer.body["quotas"][0]["used"].as_u64().unwrap_or(0)
    };
    let started = std::time::Instant::now();
    while used() < at_least {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "usage not reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A header the upstream received, or "".
fn seen_header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer.body["headers"][name].as_str().unwrap_or_default()
}

/// The `X-RateLimit-Limit` Envoy answered with, or "".
fn limit_header(answer: &Answer) -> &str {
    answer
        .headers
        .get("x-ratelimit-limit")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

#[test]
fn each_envoy_follows_the_change_feed_with_one_watch_from_its_sync_service() {
    let gateway = Gateway::start();
    gateway.control_plane.assert_one_watch_per_envoy(1);
    let _second = gateway.another_envoy(EnvoyOptions::default());
    gateway.control_plane.assert_one_watch_per_envoy(2);
}
