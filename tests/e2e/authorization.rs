//! Who may call what from where: allowlists, forwarded addresses, scopes, expiry, freshness.

use std::time::Duration;

use serde_json::json;
use tollgate_e2e::{ControlPlaneOptions, Gateway};

#[test]
fn an_allowlist_refuses_other_addresses_and_admits_its_own() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let outsider = cp.create_user_with(
        json!({"username": "outsider", "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32"]}),
    );
    let insider =
        cp.create_user_with(json!({"username": "insider", "ip_allowlist": ["127.0.0.0/8"]}));
    let (_, outsider_key) = cp.create_key(&outsider);
    let (_, insider_key) = cp.create_key(&insider);

    let refused = gateway.envoy.get_with_key("/", &outsider_key);
    refused.assert_refused(403, "ip_not_allowed");
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let spoofed = gateway.envoy.get(
        "/",
        &[
            ("x-api-key", &outsider_key),
            ("x-forwarded-for", "10.1.2.3"),
        ],
    );
    assert_eq!(spoofed.status, 403, "{}", spoofed.text);
    assert_eq!(gateway.envoy.get_with_key("/", &insider_key).status, 200);
}

#[test]
fn trusted_hops_make_the_forwarded_address_count() {
    let gateway = Gateway::start_with_filter_config(r#"{"trusted_hops":1}"#);
    let cp = &gateway.control_plane;
    let user = cp
        .create_user_with(json!({"username": "behind_proxy", "ip_allowlist": ["203.0.113.0/24"]}));
    let (_, key) = cp.create_key(&user);
    let via_proxy = gateway.envoy.get(
        "/",
        &[
            ("x-api-key", &key),
            ("x-forwarded-for", "198.51.100.7, 203.0.113.9"),
        ],
    );
    assert_eq!(via_proxy.status, 200, "{}", via_proxy.text);
    let elsewhere = gateway.envoy.get(
        "/",
        &[
            ("x-api-key", &key),
            ("x-forwarded-for", "203.0.113.9, 198.51.100.7"),
        ],
    );
    assert_eq!(elsewhere.error_code(), "ip_not_allowed");
    let garbage = gateway.envoy.get(
        "/",
        &[("x-api-key", &key), ("x-forwarded-for", "not-an-address")],
    );
    garbage.assert_refused(400, "invalid_forwarded_for");
}

#[test]
fn the_upstream_learns_the_peer_as_the_client_address_whatever_the_client_claims() {
    let gateway = Gateway::start();
    let (_, key) = gateway.control_plane.create_user_and_key("direct");

    let answer = gateway.envoy.get(
        "/",
        &[
            ("x-api-key", &key),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-tollgate-client-ip", "6.6.6.6"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["headers"]["x-tollgate-client-ip"], "127.0.0.1");
}

#[test]
fn behind_a_trusted_proxy_the_upstream_learns_the_address_it_vouches_for() {
    let gateway = Gateway::start_with_filter_config(r#"{"trusted_hops":1}"#);
    let (_, key) = gateway.control_plane.create_user_and_key("proxied");

    let answer = gateway.envoy.get(
        "/",
        &[
            ("x-api-key", &key),
            ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
            ("x-tollgate-client-ip", "6.6.6.6"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.body["headers"]["x-tollgate-client-ip"],
        "203.0.113.9"
    );
}

#[test]
fn scopes_limit_a_key_to_its_routes() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user = cp.create_user("scoped");
    let (_, key) = cp.create_key_with(
        &user,
        json!({"name": "images", "scopes": ["GET /v1/images"]}),
    );
    assert_eq!(
        gateway
            .envoy
            .get_with_key("/v1/images/42?size=s", &key)
            .status,
        200
    );
    for path in ["/v1/imagesX", "/v1/videos", "/v1/images/../admin"] {
        let answer = gateway.envoy.get_with_key(path, &key);
        assert_eq!(answer.status, 403, "{path}: {}", answer.text);
        assert_eq!(answer.error_code(), "scope_denied", "{path}");
    }
}

#[test]
fn an_expired_key_is_refused_as_expired() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user = cp.create_user("shortlived");
    let expires_at = rfc3339_in(2);
    let (_, key) = cp.create_key_with(&user, json!({"name": "brief", "expires_at": expires_at}));
    assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
    std::thread::sleep(Duration::from_millis(2100));
    let answer = gateway.envoy.get_with_key("/", &key);
    answer.assert_refused(401, "api_key_expired");
}

/// An RFC 3339 time `seconds` from now.
fn rfc3339_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn revoking_a_cached_key_takes_effect_within_one_second() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user = cp.create_user("revoked_soon");
    let (key_id, key) = cp.create_key(&user);
    for _ in 0..5 {
        assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
    }
    assert_eq!(cp.revoke_key(&user, &key_id).status, 204);
    let took = gateway
        .envoy
        .until_with_key(&key, Duration::from_secs(1), |answer| answer.status == 401);
    println!("revocation reached Envoy in {took:?}");
}

#[test]
fn suspending_a_user_takes_effect_within_one_second_and_reactivating_restores() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (user, key) = cp.create_user_and_key("suspended_soon");
    assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
    let suspend = cp.patch_user(&user, json!({"status": "suspended"}));
    assert_eq!(suspend.status, 200, "{}", suspend.text);
    gateway
        .envoy
        .until_with_key(&key, Duration::from_secs(1), |answer| {
            answer.status == 403 && answer.error_code() == "user_suspended"
        });
    let reactivate = cp.patch_user(&user, json!({"status": "active"}));
    assert_eq!(reactivate.status, 200, "{}", reactivate.text);
    gateway
        .envoy
        .until_with_key(&key, Duration::from_secs(1), |answer| answer.status == 200);
}

#[test]
fn cached_principals_serve_past_their_ttl_while_the_control_plane_is_away() {
    let mut gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[(
        "TOLLGATE_FILTER__POSITIVE_CACHE_TTL_SECS",
        "1",
    )]));
    let (_, key) = gateway.control_plane.create_user_and_key("stale_ok");
    assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);
    gateway.control_plane.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let answer = gateway.envoy.get_with_key("/", &key);
    assert_eq!(answer.status, 200, "stale entry refused: {}", answer.text);
    gateway.envoy.wait_for_stat(
        "wasmcustom.tollgate.lookups.failed",
        1,
        Duration::from_secs(2),
    );
}

#[test]
fn a_fail_open_route_admits_unknown_credentials_only_while_the_control_plane_is_away() {
    let mut gateway = Gateway::start_with_filter_config(r#"{"fail_open_routes":["GET /status"]}"#);
    let known_unknown = [("x-api-key", "tg_unknown_key_0123456789abcdefghijklmnop")];
    assert_eq!(gateway.envoy.get("/status", &known_unknown).status, 401);
    gateway.control_plane.stop();
    let unknown = [("x-api-key", "tg_never_seen_key_0123456789abcdefghijklm")];
    let open = gateway.envoy.get("/status", &unknown);
    assert_eq!(open.status, 200, "{}", open.text);
    assert_eq!(open.body["headers"]["x-tollgate-auth-method"], "unverified");
    assert!(open.body["headers"].get("x-tollgate-user-id").is_none());
    let closed = gateway.envoy.get("/private", &unknown);
    closed.assert_refused(503, "control_plane_unavailable");
}
