//! API keys through Envoy: who gets through, what the upstream sees, what is refused.

use tollgate_e2e::{ControlPlaneOptions, EnvoyOptions, Gateway};

#[test]
fn a_valid_key_reaches_the_upstream_as_its_user_without_the_key() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user_id = cp.create_user("alice");
    let (key_id, key) = cp.create_key(&user_id);

    let answer = gateway.envoy.get_with_key("/v1/things?x=1", &key);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let seen = &answer.body["headers"];
    assert_eq!(answer.body["path"], "/v1/things?x=1");
    assert_eq!(seen["x-tollgate-user-id"], user_id.as_str());
    assert_eq!(seen["x-tollgate-key-id"], key_id.as_str());
    assert_eq!(seen["x-tollgate-auth-method"], "api_key");
    assert!(
        seen.get("x-api-key").is_none(),
        "the key reached the upstream"
    );
    assert!(!answer.text.contains(&key), "the key reached the upstream");
}

#[test]
fn a_bearer_key_works_and_client_sent_tollgate_headers_are_dropped() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (user_id, key) = cp.create_user_and_key("bob");

    let bearer = format!("Bearer {key}");
    let answer = gateway.envoy.get(
        "/",
        &[
            ("authorization", &bearer),
            ("x-tollgate-user-id", "u_someone_else"),
            ("x-tollgate-tenant-id", "t_spoofed"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    let seen = &answer.body["headers"];
    assert_eq!(seen["x-tollgate-user-id"], user_id.as_str());
    assert!(
        seen.get("x-tollgate-tenant-id").is_none(),
        "spoofed tenant passed"
    );
    assert!(
        seen.get("authorization").is_none(),
        "the bearer key reached the upstream"
    );
}

#[test]
fn header_names_with_underscores_are_refused_by_envoy() {
    let gateway = Gateway::start();
    let (_, key) = gateway.control_plane.create_user_and_key("uma");

    let spoofed = gateway.envoy.get(
        "/",
        &[("x-api-key", &key), ("x_tollgate_groups", "g_admins")],
    );
    assert_eq!(spoofed.status, 400, "{}", spoofed.text);
    let plain = gateway.envoy.get_with_key("/", &key);
    assert_eq!(plain.status, 200, "{}", plain.text);
}

#[test]
fn tollgate_headers_spelled_with_underscores_are_dropped_where_envoy_lets_them_in() {
    let gateway = Gateway::start_with_envoy(
        ControlPlaneOptions::default(),
        EnvoyOptions {
            allow_header_underscores: true,
            ..EnvoyOptions::default()
        },
    );
    let (user_id, key) = gateway.control_plane.create_user_and_key("ursula");

    let answer = gateway.envoy.get(
        "/",
        &[
            ("x-api-key", &key),
            ("x_tollgate_user_id", "u_admin"),
            ("x_tollgate_groups", "g_admins"),
            ("x-tollgate_tenant_id", "t_other"),
            ("x_other_header", "kept"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    let seen = &answer.body["headers"];
    assert_eq!(seen["x_other_header"], "kept", "Envoy let underscores in");
    assert_eq!(seen["x-tollgate-user-id"], user_id.as_str());
    for spoofed in [
        "x_tollgate_user_id",
        "x_tollgate_groups",
        "x-tollgate_tenant_id",
    ] {
        assert!(seen.get(spoofed).is_none(), "{spoofed} passed: {seen}");
    }
}

#[test]
fn a_request_without_a_key_is_refused_with_the_json_error() {
    let gateway = Gateway::start();
    let answer = gateway.envoy.get("/", &[]);
    answer.assert_refused(401, "missing_credentials");
    assert!(answer.body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert_eq!(answer.header("content-type"), "application/json");
}

#[test]
fn unknown_and_revoked_keys_are_refused_alike() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user_id = cp.create_user("carol");
    let (key_id, key) = cp.create_key(&user_id);
    assert_eq!(cp.revoke_key(&user_id, &key_id).status, 204);

    let revoked = gateway.envoy.get_with_key("/", &key);
    let forged = format!("tg_{user_id}_{}", "A".repeat(40));
    let unknown = gateway.envoy.get_with_key("/", &forged);
    for answer in [&revoked, &unknown] {
        answer.assert_refused(401, "invalid_api_key");
    }
    assert_eq!(
        revoked.text, unknown.text,
        "revoked and unknown keys must look alike"
    );
}

#[test]
fn a_suspended_users_key_is_forbidden() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (user_id, key) = cp.create_user_and_key("dave");
    let suspend = cp.patch_user(&user_id, serde_json::json!({"status": "suspended"}));
    assert_eq!(suspend.status, 200, "{}", suspend.text);

    let answer = gateway.envoy.get_with_key("/", &key);
    answer.assert_refused(403, "user_suspended");
}

#[test]
fn resolved_keys_are_cached_in_envoy_so_repeat_requests_skip_the_control_plane() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key("erin");
    let unknown = "tg_not_a_real_key_but_well_formed_enough_0123456789";

    for _ in 0..20 {
        assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
        assert_eq!(gateway.envoy.get_with_key("/", unknown).status, 401);
    }
    let found = cp.metric("tollgate_key_lookups_total", "result=\"found\"");
    let not_found = cp.metric("tollgate_key_lookups_total", "result=\"not_found\"");
    // Two workers may each miss once before the shared cache is written.
    assert!(
        (1.0..=2.0).contains(&found),
        "positive answers fetched {found} times"
    );
    assert!(
        (1.0..=2.0).contains(&not_found),
        "negative answers fetched {not_found} times"
    );
}

#[test]
fn keys_and_users_survive_a_control_plane_restart() {
    let mut gateway = Gateway::start();
    let (_, key) = gateway.control_plane.create_user_and_key("frank");
    gateway.control_plane.stop();
    gateway.control_plane.resume();
    let me = gateway.control_plane.get("/api/v1/users/me", Some(&key));
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
}
