//! Second factors through the HTTP application: the calls the MFA tests share, with codes
//! computed from the secret in the `otpauth://` URI, as an authenticator app would.

use axum::http::StatusCode;
use serde_json::{json, Value};
use totp_rs::Totp;

use super::accounts::{login, with_token, PASSWORD};
use super::app::{Answer, Api, LOCAL_PEER};

pub const STEP_SECS: u64 = 30;

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The code an authenticator shows `steps` time steps from now.
pub fn code(totp: &Totp, steps: i64) -> String {
    let at = unix_now().saturating_add_signed(steps * STEP_SECS as i64);
    totp.generate(at).to_string()
}

/// `POST /api/v1/users/me/mfa/totp` with the session `token`; the authenticator of its URI.
pub async fn enrol(api: &Api, token: &str) -> (Answer, Totp) {
    let answer = with_token(api, "POST", "/api/v1/users/me/mfa/totp", token, None).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let uri = answer.body["otpauth_uri"].as_str().expect("otpauth_uri");
    let totp = Totp::from_url(uri).unwrap_or_else(|e| panic!("{uri} does not parse: {e}"));
    (answer, totp)
}

pub async fn confirm(api: &Api, token: &str, code: &str) -> Answer {
    with_token(
        api,
        "POST",
        "/api/v1/users/me/mfa/totp/confirm",
        token,
        Some(json!({ "code": code, "password": PASSWORD })),
    )
    .await
}

/// Enrols and confirms a TOTP with the session `token`; the authenticator and backup codes.
pub async fn enabled_totp(api: &Api, token: &str) -> (Totp, Vec<String>) {
    let (_, totp) = enrol(api, token).await;
    let confirmed = confirm(api, token, &code(&totp, 0)).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let codes = confirmed.body["backup_codes"]
        .as_array()
        .expect("backup codes")
        .iter()
        .map(|code| code.as_str().expect("a code").to_string())
        .collect();
    (totp, codes)
}

/// The first step of a login that must ask for the second factor; its challenge token.
pub async fn mfa_token(api: &Api, username: &str) -> String {
    let first = login(api, username, PASSWORD).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["mfa_required"], true, "{}", first.body);
    assert!(first.body.get("access_token").is_none(), "{}", first.body);
    first.body["mfa_token"]
        .as_str()
        .expect("mfa_token")
        .to_string()
}

pub async fn second_step(api: &Api, body: Value) -> Answer {
    second_step_from(api, LOCAL_PEER, body).await
}

pub async fn second_step_from(api: &Api, peer: &str, body: Value) -> Answer {
    api.answer_from(peer, "POST", "/api/v1/auth/mfa", &[], Some(body))
        .await
}

pub async fn mfa_state(api: &Api, token: &str) -> Value {
    let answer = with_token(api, "GET", "/api/v1/users/me/mfa", token, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

pub fn access(answer: &Answer) -> &str {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["access_token"].as_str().expect("access_token")
}
