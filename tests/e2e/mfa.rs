//! Logins with a second factor through Envoy: the session a TOTP code completes is accepted
//! by the filter with the same identity as a password-only session, and a session that may
//! only enrol a second factor is refused.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tollgate_e2e::http::{client, send};
use tollgate_e2e::Gateway;
use totp_rs::Totp;

const PASSWORD: &str = "correct horse battery";

/// The code an authenticator shows `steps` time steps (30 s) from now.
fn code(totp: &Totp, steps: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    totp.generate(now + steps * 30).to_string()
}

/// The `x-tollgate-*` headers the upstream saw for a GET through Envoy as `bearer`.
fn identity_seen(gateway: &Gateway, bearer: &str) -> Vec<(String, Value)> {
    let answer = gateway.envoy.get("/", &[("authorization", bearer)]);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let headers = answer.body["headers"].as_object().expect("headers");
    let mut identity: Vec<(String, Value)> = headers
        .iter()
        .filter(|(name, _)| name.starts_with("x-tollgate-"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    identity.sort_by(|a, b| a.0.cmp(&b.0));
    identity
}

#[test]
fn a_session_completed_with_a_totp_code_reaches_the_upstream_like_a_password_session() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user_id = cp.create_user_with(json!({"username": "mo", "password": PASSWORD}));
    let local = format!("Bearer {}", cp.login("mo", PASSWORD));
    let enrolled = cp.post_with_token("/api/v1/users/me/mfa/totp", &local, json!({}));
    assert_eq!(enrolled.status, 201, "{}", enrolled.text);
    let uri = enrolled.body["otpauth_uri"].as_str().expect("otpauth_uri");
    let totp = Totp::from_url(uri).expect("an otpauth URI");
    let confirmed = cp.post_with_token(
        "/api/v1/users/me/mfa/totp/confirm",
        &local,
        json!({"code": code(&totp, 0), "password": PASSWORD}),
    );
    assert_eq!(confirmed.status, 200, "{}", confirmed.text);

    let first = cp.login_answer("mo", PASSWORD);
    assert_eq!(first.body["mfa_required"], true, "{}", first.text);
    let second = send(
        client()
            .post(cp.url("/api/v1/auth/mfa"))
            .json(&json!({"mfa_token": first.body["mfa_token"], "code": code(&totp, 1)})),
    );
    assert_eq!(second.status, 200, "{}", second.text);
    let after_mfa = second.bearer();

    let seen = identity_seen(&gateway, &after_mfa);
    assert!(
        seen.contains(&("x-tollgate-user-id".into(), json!(user_id))),
        "{seen:?}"
    );
    assert_eq!(seen, identity_seen(&gateway, &local));
}

#[test]
fn a_session_that_must_enrol_a_second_factor_is_refused_by_envoy() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    cp.create_user_with(json!({"username": "nel", "password": PASSWORD, "mfa_required": true}));
    let login = cp.login_answer("nel", PASSWORD);
    assert_eq!(login.status, 200, "{}", login.text);
    assert_eq!(login.body["mfa_enrolment_required"], true, "{}", login.text);
    let answer = gateway
        .envoy
        .get("/", &[("authorization", &login.bearer())]);
    answer.assert_refused(401, "invalid_session");
}
