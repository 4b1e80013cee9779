//! Sessions through Envoy: tokens verified inside the filter, logout felt within a second.

use std::time::Duration;

use serde_json::{json, Map, Value};
use tollgate_e2e::ldap::{Slapd, PEOPLE, SERVICE_DN, SERVICE_PASSWORD};
use tollgate_e2e::{ControlPlaneOptions, Gateway};

const PASSWORD: &str = "correct horse battery";

fn user_with_password(gateway: &Gateway, username: &str) -> String {
    gateway
        .control_plane
        .create_user_with(json!({"username": username, "password": PASSWORD}))
}

#[test]
fn a_session_token_reaches_the_upstream_as_its_user() {
    let gateway = Gateway::start();
    let user_id = user_with_password(&gateway, "alice");
    let token = gateway.control_plane.login("alice", PASSWORD);
    let bearer = format!("Bearer {token}");

    let answer = gateway
        .envoy
        .get("/v1/things", &[("authorization", &bearer)]);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let seen = &answer.body["headers"];
    assert_eq!(seen["x-tollgate-user-id"], user_id.as_str());
    assert_eq!(seen["x-tollgate-auth-method"], "session");
    assert!(
        seen.get("authorization").is_none(),
        "the token reached the upstream"
    );
    gateway.envoy.wait_for_stat_exactly(
        "wasmcustom.tollgate.requests.allowed.session",
        1,
        Duration::from_secs(2),
    );
}

#[test]
fn a_session_wins_over_an_api_key_and_the_pair_is_counted() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    user_with_password(&gateway, "bob");
    let (_, other_key) = cp.create_user_and_key("other");
    let bearer = format!("Bearer {}", cp.login("bob", PASSWORD));

    let answer = gateway.envoy.get(
        "/",
        &[("authorization", &bearer), ("x-api-key", &other_key)],
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["headers"]["x-tollgate-auth-method"], "session");
    assert!(answer.body["headers"].get("x-api-key").is_none());
    gateway.envoy.wait_for_stat_exactly(
        "wasmcustom.tollgate.requests.dual_credentials",
        1,
        Duration::from_secs(2),
    );
}

#[test]
fn the_session_cookie_never_reaches_the_upstream_whatever_authenticated() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    user_with_password(&gateway, "dora");
    let token = cp.login("dora", PASSWORD);
    let (_, key) = cp.create_user_and_key("ed");
    let cookie = format!("theme=dark; tollgate_session={token}; lang=en");
    let bearer_key = format!("Bearer {key}");
    let bearer_token = format!("Bearer {token}");

    for (header, credential, method) in [
        ("x-api-key", key.as_str(), "api_key"),
        ("authorization", bearer_key.as_str(), "api_key"),
        ("authorization", bearer_token.as_str(), "session"),
    ] {
        let answer = gateway
            .envoy
            .get("/", &[(header, credential), ("cookie", &cookie)]);
        assert_eq!(answer.status, 200, "{}", answer.text);
        let seen = &answer.body["headers"];
        assert_eq!(seen["x-tollgate-auth-method"], method);
        assert_eq!(seen["cookie"], "theme=dark; lang=en", "with {header}");
        assert!(
            !answer.text.contains(&token),
            "the session token reached the upstream with {header}"
        );
    }
}

#[test]
fn logout_is_refused_on_envoy_within_one_second() {
    let gateway = Gateway::start();
    user_with_password(&gateway, "carol");
    let token = gateway.control_plane.login("carol", PASSWORD);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        gateway.envoy.get("/", &[("authorization", &bearer)]).status,
        200
    );

    let logout = tollgate_e2e::http::send(
        tollgate_e2e::http::client()
            .post(gateway.control_plane.url("/api/v1/auth/logout"))
            .header("authorization", &bearer),
    );
    assert_eq!(logout.status, 204, "{}", logout.text);
    let took = gateway.envoy.until(
        Duration::from_secs(1),
        || gateway.envoy.get("/", &[("authorization", &bearer)]),
        |answer| answer.status == 401,
    );
    gateway.envoy.wait_for_worker_ticks();
    let answer = gateway.envoy.get("/", &[("authorization", &bearer)]);
    assert_eq!(answer.error_code(), "session_revoked");
    println!("logout reached Envoy in {took:?}");
}

#[test]
fn a_rotated_signing_key_reaches_envoy_before_it_signs() {
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[(
        "TOLLGATE_SESSIONS__KEY_PUBLISH_DELAY_SECS",
        "1",
    )]));
    user_with_password(&gateway, "dave");
    let old = format!("Bearer {}", gateway.control_plane.login("dave", PASSWORD));
    let rotated = gateway
        .control_plane
        .admin("POST", "/api/v1/auth/signing-keys/rotate", None);
    assert_eq!(rotated.status, 201, "{}", rotated.text);
    std::thread::sleep(Duration::from_millis(1100));
    let new = format!("Bearer {}", gateway.control_plane.login("dave", PASSWORD));
    assert_ne!(old, new);
    for bearer in [&old, &new] {
        let answer = gateway.envoy.get("/", &[("authorization", bearer)]);
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
}

#[test]
fn the_login_cookie_is_a_session_and_never_reaches_the_upstream() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user_id = user_with_password(&gateway, "erin");
    let login = tollgate_e2e::http::send(
        tollgate_e2e::http::client()
            .post(cp.url("/api/v1/auth/login"))
            .json(&json!({"username": "erin", "password": PASSWORD})),
    );
    let set_cookie = login
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    let session = set_cookie
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let cookie = format!("theme=dark; {session}");

    let me = tollgate_e2e::http::send(
        tollgate_e2e::http::client()
            .get(cp.url("/api/v1/users/me"))
            .header("cookie", &cookie),
    );
    assert_eq!(me.status, 200, "{}", me.text);

    let answer = gateway.envoy.get("/", &[("cookie", &cookie)]);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.body["headers"]["x-tollgate-user-id"],
        user_id.as_str()
    );
    assert_eq!(answer.body["headers"]["cookie"], "theme=dark");
}

#[test]
fn a_password_change_ends_the_other_sessions_on_envoy_within_one_second() {
    let gateway = Gateway::start();
    user_with_password(&gateway, "fay");
    let changing = format!("Bearer {}", gateway.control_plane.login("fay", PASSWORD));
    let other = format!("Bearer {}", gateway.control_plane.login("FAY", PASSWORD));
    for bearer in [&changing, &other] {
        let answer = gateway.envoy.get("/", &[("authorization", bearer)]);
        assert_eq!(answer.status, 200, "{}", answer.text);
    }

    let changed = gateway.control_plane.post_with_token(
        "/api/v1/users/me/password",
        &changing,
        json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
    );
    assert_eq!(changed.status, 200, "{}", changed.text);
    let took = gateway.envoy.until(
        Duration::from_secs(1),
        || gateway.envoy.get("/", &[("authorization", &other)]),
        |answer| answer.status == 401,
    );
    gateway.envoy.wait_for_worker_ticks();
    let refused = gateway.envoy.get("/", &[("authorization", &other)]);
    assert_eq!(refused.error_code(), "session_revoked");
    let kept = gateway.envoy.get("/", &[("authorization", &changing)]);
    assert_eq!(
        kept.status, 200,
        "the changing session lives on: {}",
        kept.text
    );
    println!("the password change reached Envoy in {took:?}");
}

#[test]
fn a_session_that_must_change_its_password_is_refused_by_envoy() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user_id = user_with_password(&gateway, "gus");
    let reset = cp.admin(
        "POST",
        &format!("/api/v1/users/{user_id}/password-reset"),
        Some(json!({"password": "a temporary passphrase"})),
    );
    assert_eq!(reset.status, 200, "{}", reset.text);
    let login = cp.login_answer("gus", "a temporary passphrase");
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["password_change_required"], true);
    let limited = login.bearer();
    let answer = gateway.envoy.get("/", &[("authorization", &limited)]);
    answer.assert_refused(401, "invalid_session");

    let changed = gateway.control_plane.post_with_token(
        "/api/v1/users/me/password",
        &limited,
        json!({"current_password": "a temporary passphrase", "new_password": PASSWORD}),
    );
    assert_eq!(changed.status, 200, "{}", changed.text);
    let full = format!("Bearer {}", cp.login("gus", PASSWORD));
    let answer = gateway.envoy.get("/", &[("authorization", &full)]);
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[test]
fn a_login_past_the_session_cap_ends_the_oldest_on_envoy_within_one_second() {
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[(
        "TOLLGATE_SESSIONS__MAX_PER_USER",
        "1",
    )]));
    user_with_password(&gateway, "hugo");
    let oldest = format!("Bearer {}", gateway.control_plane.login("hugo", PASSWORD));
    assert_eq!(
        gateway.envoy.get("/", &[("authorization", &oldest)]).status,
        200
    );

    let newest = format!("Bearer {}", gateway.control_plane.login("hugo", PASSWORD));
    let took = gateway.envoy.until(
        Duration::from_secs(1),
        || gateway.envoy.get("/", &[("authorization", &oldest)]),
        |answer| answer.status == 401,
    );
    gateway.envoy.wait_for_worker_ticks();
    let refused = gateway.envoy.get("/", &[("authorization", &oldest)]);
    assert_eq!(refused.error_code(), "session_revoked");
    let kept = gateway.envoy.get("/", &[("authorization", &newest)]);
    assert_eq!(kept.status, 200, "{}", kept.text);
    println!("the session cap reached Envoy in {took:?}");
}

/// The `x-tollgate-*` headers the upstream saw for a request with `token`.
fn identity_headers(gateway: &Gateway, token: &str) -> Map<String, Value> {
    let bearer = format!("Bearer {token}");
    let answer = gateway.envoy.get("/", &[("authorization", &bearer)]);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let headers = answer.body["headers"].as_object().expect("headers");
    headers
        .iter()
        .filter(|(name, _)| name.starts_with("x-tollgate-"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[test]
fn an_ldap_session_reaches_the_upstream_like_a_local_one() {
    let slapd = Slapd::start();
    slapd.add_person(
        "erin",
        "erin's directory password",
        "erin@example.org",
        "Erin",
    );
    let url = slapd.url();
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[
        ("TOLLGATE_AUTH__LDAP__ENABLED", "true"),
        ("TOLLGATE_AUTH__LDAP__URL", &url),
        ("TOLLGATE_AUTH__LDAP__BIND_DN", SERVICE_DN),
        ("TOLLGATE_AUTH__LDAP__BIND_PASSWORD", SERVICE_PASSWORD),
        ("TOLLGATE_AUTH__LDAP__USER_BASE", PEOPLE),
    ]));
    let cp = &gateway.control_plane;
    user_with_password(&gateway, "frank");
    let local = identity_headers(&gateway, &cp.login("frank", PASSWORD));
    let ldap_token = cp.login_with("erin", "erin's directory password", "ldap");
    let ldap = identity_headers(&gateway, &ldap_token);

    let erin = cp.admin("GET", "/api/v1/users?q=erin", None);
    let erin_id = erin.body["items"]
        .as_array()
        .expect("users")
        .iter()
        .find(|user| user["username"] == "erin")
        .map(|user| user["id"].clone())
        .expect("erin was created at her first login");
    assert_eq!(ldap["x-tollgate-user-id"], erin_id);
    assert_eq!(ldap["x-tollgate-auth-method"], "session");
    let names = |headers: &Map<String, Value>| headers.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ldap), names(&local), "{ldap:?} / {local:?}");
    for (name, value) in &local {
        if name != "x-tollgate-user-id" && name != "x-tollgate-key-id" {
            assert_eq!(&ldap[name], value, "{name}");
        }
    }
}
