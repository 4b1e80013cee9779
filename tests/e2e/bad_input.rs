//! Hostile and broken credentials through real Envoy: each gets its documented refusal, none
//! reaches the upstream, and none disturbs the filter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use sha2::Sha256;
use tollgate_e2e::http::{client, send, Answer};
use tollgate_e2e::{ControlPlane, ControlPlaneOptions, Gateway};

const PASSWORD: &str = "correct horse battery";

fn get_raw(gateway: &Gateway, name: &str, value: &[u8]) -> Answer {
    let value = HeaderValue::from_bytes(value).expect("a sendable header value");
    send(client().get(gateway.envoy.url("/")).header(name, value))
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn expect_refusal(gateway: &Gateway, what: &str, answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text);
    assert_eq!(answer.error_code(), code, "{what}: {}", answer.text);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: no message"
    );
    let _ = gateway;
}

#[test]
fn malformed_and_foreign_api_keys_are_refused_like_unknown_ones() {
    let gateway = Gateway::start();
    let before = gateway.envoy.upstream_requests();
    let huge = "k".repeat(9 * 1024);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("huge", huge.into_bytes()),
        ("non-ASCII", "tg_ключ_123".as_bytes().to_vec()),
        ("raw bytes", vec![b't', b'g', 0xff, 0xfe]),
        ("malformed", b"tg_!!_%%".to_vec()),
        (
            "other prefix",
            b"imgproxy_u_abc_0123456789abcdefghijklmnopqrstuv".to_vec(),
        ),
        ("with spaces", b"tg key with spaces".to_vec()),
    ];
    let mut bodies = Vec::new();
    for (what, value) in &cases {
        let answer = get_raw(&gateway, "x-api-key", value);
        expect_refusal(&gateway, what, &answer, 401, "invalid_api_key");
        bodies.push(answer.text);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "refusals differ: {bodies:?}"
    );
    assert_eq!(
        gateway.envoy.upstream_requests(),
        before,
        "a refused request went upstream"
    );
}

#[test]
fn forged_session_tokens_are_refused() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    cp.create_user_with(json!({"username": "victim", "password": PASSWORD}));
    let real = cp.login("victim", PASSWORD);
    let parts: Vec<&str> = real.split('.').collect();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
    let jwks = cp.get("/.well-known/jwks.json", None).body;
    let public_key = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().expect("x"))
        .expect("public key bytes");

    let none = format!(
        "{}.{}.",
        segment(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let hs256_header = segment(&json!({"alg": "HS256", "kid": header["kid"], "typ": "JWT"}));
    let signing_input = format!("{hs256_header}.{}", parts[1]);
    let mut mac = Hmac::<Sha256>::new_from_slice(&public_key).expect("hmac");
    mac.update(signing_input.as_bytes());
    let hs256 = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    let wrong_kid = format!(
        "{}.{}.{}",
        segment(&json!({"alg": "EdDSA", "kid": "sk_someone_else", "typ": "JWT"})),
        parts[1],
        parts[2]
    );
    claims["sub"] = json!("u_admin_impostor");
    let tampered = format!("{}.{}.{}", parts[0], segment(&claims), parts[2]);
    let garbage = "eyJhbGciOiJFZERTQSJ9.e30.AAAA".to_string();

    let before = gateway.envoy.upstream_requests();
    for (what, token) in [
        ("alg none", none),
        ("HS256 with the public key", hs256),
        ("wrong kid", wrong_kid),
        ("tampered payload", tampered),
        ("garbage", garbage),
    ] {
        let answer = gateway
            .envoy
            .get("/", &[("authorization", &format!("Bearer {token}"))]);
        expect_refusal(&gateway, what, &answer, 401, "invalid_session");
    }
    assert_eq!(gateway.envoy.upstream_requests(), before);
    let still_good = gateway
        .envoy
        .get("/", &[("authorization", &format!("Bearer {real}"))]);
    assert_eq!(
        still_good.status, 200,
        "the filter was disturbed: {}",
        still_good.text
    );
}

#[test]
fn a_token_minted_for_another_audience_is_refused() {
    let gateway = Gateway::start();
    gateway
        .control_plane
        .create_user_with(json!({"username": "elsewhere", "password": PASSWORD}));
    // A second control plane on the same data and keys, issuing for another audience.
    let other = ControlPlane::start_sharing(
        &gateway.control_plane,
        ControlPlaneOptions::with_env(&[("TOLLGATE_SESSIONS__AUDIENCE", "another-service")]),
    );
    let foreign = other.login("elsewhere", PASSWORD);
    let answer = gateway
        .envoy
        .get("/", &[("authorization", &format!("Bearer {foreign}"))]);
    expect_refusal(&gateway, "other audience", &answer, 401, "invalid_session");
}

#[test]
fn client_sent_identity_headers_never_pass_without_a_credential() {
    let gateway = Gateway::start();
    let before = gateway.envoy.upstream_requests();
    let answer = gateway.envoy.get(
        "/",
        &[
            ("x-tollgate-user-id", "u_admin"),
            ("x-tollgate-auth-method", "api_key"),
        ],
    );
    expect_refusal(
        &gateway,
        "forged identity",
        &answer,
        401,
        "missing_credentials",
    );
    assert_eq!(gateway.envoy.upstream_requests(), before);
}

#[test]
fn the_filter_never_traps_on_bad_input() {
    let gateway = Gateway::start();
    for value in [
        &b""[..],
        &[0x80; 100][..],
        "🔑".as_bytes(),
        &b"Bearer"[..],
        &b"Bearer ."[..],
        &b"bearer a.b"[..],
    ] {
        let answer = get_raw(&gateway, "authorization", value);
        assert!(answer.status == 401, "{value:?}: {}", answer.text);
    }
    let log = gateway.envoy.log();
    assert!(!log.contains("panicked") && !log.contains("trap"), "{log}");
    assert_eq!(gateway.envoy.stat("wasm.tollgate.vm_reload"), 0);
}
