//! Accounts with passwords through the HTTP application: the calls the local-account and
//! login-attempt tests share.

use axum::http::StatusCode;
use serde_json::{json, Value};

use tollgate::config::Config;

use super::app::{error_code, Answer, Api, LOCAL_PEER};

pub const PASSWORD: &str = "correct horse battery";
pub const NEW_PASSWORD: &str = "a brand new passphrase";
pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// The metric counts every password verification in this process, so the tests that log in
/// take turns.
pub static PASSWORD_WORK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn user_with_password(api: &Api, username: &str) -> String {
    let user = api
        .create_user_with(json!({"username": username, "password": PASSWORD}))
        .await;
    user["id"].as_str().expect("id").to_string()
}

/// A login from `peer` with `user_agent`.
pub async fn login_from(
    api: &Api,
    peer: &str,
    user_agent: &str,
    username: &str,
    password: &str,
) -> Answer {
    api.answer_from(
        peer,
        "POST",
        "/api/v1/auth/login",
        &[("user-agent", user_agent)],
        Some(json!({"username": username, "password": password})),
    )
    .await
}

pub async fn login(api: &Api, username: &str, password: &str) -> Answer {
    login_from(api, LOCAL_PEER, "curl/8.5.0", username, password).await
}

/// The access token of a login that must succeed.
pub async fn access_token(api: &Api, username: &str, password: &str) -> String {
    let answer = login(api, username, password).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["access_token"]
        .as_str()
        .expect("access token")
        .to_string()
}

/// A call with the session's access token.
pub async fn with_token(
    api: &Api,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Answer {
    let bearer = format!("Bearer {token}");
    api.answer_from(
        LOCAL_PEER,
        method,
        path,
        &[("authorization", &bearer)],
        body,
    )
    .await
}

pub async fn change_password(api: &Api, token: &str, current: &str, new: &str) -> Answer {
    with_token(
        api,
        "POST",
        "/api/v1/users/me/password",
        token,
        Some(json!({"current_password": current, "new_password": new})),
    )
    .await
}

pub fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(error_code(&answer.body), code, "{}", answer.body);
}

/// Attempts at an account back off after two failures (1 s, then 2 s...) and the fourth in a
/// row locks it for 10 minutes.
pub fn backing_off_then_locking(config: &mut Config) {
    config.login.max_failures = 3;
    config.login.backoff_after_failures = 2;
    config.login.backoff_secs = 1;
    config.login.lockout_secs = 600;
    config.login.max_lockout_secs = 600;
}
