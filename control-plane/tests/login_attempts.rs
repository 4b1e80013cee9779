//! Login attempts and sessions through the HTTP application: backoff, lockout and unlock,
//! the same answer for an unknown user as for a wrong password, the audit of every attempt,
//! the sessions a person sees and ends, and the login methods offered.

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::accounts::{
    access_token, assert_error, backing_off_then_locking, login, login_from, user_with_password,
    with_token, FIREFOX, PASSWORD, PASSWORD_WORK,
};
use support::app::{error_code, password_verifications, retry_after_secs, Api};
use tollgate::config::Config;

#[tokio::test]
async fn failures_back_off_then_lock_until_an_admin_unlocks() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(backing_off_then_locking).await;
    let id = user_with_password(&api, "ivy").await;
    for _ in 0..2 {
        assert_error(
            &login(&api, "ivy", "wrong").await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        );
    }
    let waiting_wrong = login(&api, "ivy", "wrong").await;
    let waiting_right = login(&api, "IVY", PASSWORD).await;
    assert_error(
        &waiting_wrong,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
    );
    assert_eq!(retry_after_secs(&waiting_wrong), 1);
    assert_eq!(
        (waiting_right.status, &waiting_right.body),
        (waiting_wrong.status, &waiting_wrong.body),
        "the same whether or not the password was right"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error(
        &login(&api, "ivy", "wrong").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    let locked = login(&api, "ivy", PASSWORD).await;
    assert_error(&locked, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    assert!(retry_after_secs(&locked) > 500, "{:?}", locked.headers);

    let (status, held) = api
        .admin("GET", &format!("/api/v1/users/{id}/lockout"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["failures"], 0, "the lock took the failures: {held}");
    assert!(held["locked_until"].is_string(), "{held}");

    let (_, token) = api.logged_in_user("someone").await;
    let by_user = with_token(
        &api,
        "DELETE",
        &format!("/api/v1/users/{id}/lockout"),
        &token,
        None,
    )
    .await;
    assert_error(&by_user, StatusCode::FORBIDDEN, "forbidden");
    let (status, _) = api
        .admin("DELETE", &format!("/api/v1/users/{id}/lockout"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, held) = api
        .admin("GET", &format!("/api/v1/users/{id}/lockout"), None)
        .await;
    assert_eq!(held["locked_until"], Value::Null, "{held}");
    access_token(&api, "ivy", PASSWORD).await;
}

/// Attempts per name in the timing comparison; the fastest of each counts, as the machine's
/// other work only ever adds time.
const TIMED_ATTEMPTS: usize = 5;

#[tokio::test]
async fn an_unknown_user_costs_the_same_hash_and_gets_the_same_answer_as_a_wrong_password() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(|config: &mut Config| config.login.backoff_secs = 0).await;
    user_with_password(&api, "jack").await;
    // The decoy hash is made on first use; time the attempts after it.
    login(&api, "warming", PASSWORD).await;

    // The names take turns, so that both are timed under the same load.
    let names = ["jack", "nobody"];
    let mut answers = Vec::new();
    let mut fastest = [f64::INFINITY; 2];
    for _ in 0..TIMED_ATTEMPTS {
        for (name, fastest) in names.iter().zip(&mut fastest) {
            let before = password_verifications(&api).await;
            let started = Instant::now();
            let answer = login(&api, name, "not the password").await;
            *fastest = fastest.min(started.elapsed().as_secs_f64());
            assert_eq!(
                password_verifications(&api).await,
                before + 1,
                "{name}: one Argon2id verification"
            );
            answers.push((answer.status, answer.body));
        }
    }
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    assert_eq!(answers[0].0, StatusCode::UNAUTHORIZED);
    let (wrong, unknown) = (fastest[0], fastest[1]);
    assert!(
        unknown > wrong / 2.0 && unknown < wrong * 2.0,
        "wrong password {wrong:.3} s, unknown user {unknown:.3} s"
    );
}

#[tokio::test]
async fn every_attempt_is_audited_with_method_address_and_user_agent() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(|config: &mut Config| config.login.max_failures = 1).await;
    let id = user_with_password(&api, "kate").await;
    let peer = "192.0.2.44:5000";
    login_from(&api, peer, FIREFOX, "kate", PASSWORD).await;
    login_from(&api, peer, FIREFOX, "kate", "wrong").await;
    login_from(&api, peer, FIREFOX, "nobody", "wrong").await;
    login_from(&api, peer, FIREFOX, "kate", "wrong").await;

    let (_, audit) = api.admin("GET", "/api/v1/audit?per_page=50", None).await;
    let attempts: Vec<(&str, &str, &str)> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|entry| {
            entry["details"]["address"] == "192.0.2.44"
                && entry["action"]
                    .as_str()
                    .is_some_and(|action| action.starts_with("login."))
        })
        .map(|entry| {
            assert_eq!(entry["details"]["method"], "local", "{entry}");
            assert_eq!(entry["details"]["user_agent"], FIREFOX, "{entry}");
            (
                entry["action"].as_str().unwrap_or_default(),
                entry["target"].as_str().unwrap_or_default(),
                entry["details"]["result"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        vec![
            ("login.refused", "unknown", "locked"),
            ("login.failed", "unknown", "invalid_credentials"),
            ("login.failed", id.as_str(), "invalid_credentials"),
        ],
        "newest first, after the success"
    );
    assert!(
        audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|entry| entry["action"] == "session.created"
                && entry["details"]["result"] == "succeeded"
                && entry["details"]["address"] == "192.0.2.44"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_person_sees_their_sessions_ends_one_or_all_and_the_cap_ends_the_oldest() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(|config: &mut Config| config.sessions.max_per_user = 2).await;
    user_with_password(&api, "liam").await;
    let session = |user_agent: &'static str| {
        let api = &api;
        async move {
            let answer = login_from(api, "198.51.100.7:6000", user_agent, "liam", PASSWORD).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            answer.body["access_token"]
                .as_str()
                .expect("token")
                .to_string()
        }
    };
    let oldest = session("curl/8.5.0").await;
    let middle = session("curl/8.5.0").await;
    let newest = session(FIREFOX).await;
    let me = with_token(&api, "GET", "/api/v1/users/me", &oldest, None).await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "the cap ended the oldest"
    );

    let listed = with_token(&api, "GET", "/api/v1/users/me/sessions", &newest, None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["total"], 2);
    let items = listed.body["items"].as_array().expect("items");
    assert_eq!(items[0]["current"], true);
    assert_eq!(items[0]["device"], "Firefox 128.0 on Linux");
    assert_eq!(items[0]["address"], "198.51.100.7");
    assert_eq!(items[0]["method"], "local");
    assert!(items[0]["created_at"].is_string() && items[0]["last_used_at"].is_string());
    assert_eq!(items[1]["current"], false);
    let middle_id = items[1]["id"].as_str().expect("id").to_string();

    let (_, stranger) = api.logged_in_user("stranger").await;
    let path = format!("/api/v1/users/me/sessions/{middle_id}");
    let not_theirs = with_token(&api, "DELETE", &path, &stranger, None).await;
    assert_error(&not_theirs, StatusCode::NOT_FOUND, "not_found");
    let ended = with_token(&api, "DELETE", &path, &newest, None).await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.body);
    let me = with_token(&api, "GET", "/api/v1/users/me", &middle, None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    let again = with_token(&api, "DELETE", &path, &newest, None).await;
    assert_error(&again, StatusCode::NOT_FOUND, "not_found");

    let everywhere = with_token(&api, "DELETE", "/api/v1/users/me/sessions", &newest, None).await;
    assert_eq!(everywhere.status, StatusCode::NO_CONTENT);
    let me = with_token(&api, "GET", "/api/v1/users/me", &newest, None).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    let me = with_token(&api, "GET", "/api/v1/users/me", &stranger, None).await;
    assert_eq!(me.status, StatusCode::OK, "another user's session lives on");
}

#[tokio::test]
async fn the_login_methods_are_those_enabled() {
    let api = Api::start().await;
    let (status, methods) = api.call("GET", "/api/v1/auth/methods", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        methods,
        json!({"methods": [{"id": "local", "kind": "password",
            "name": "Username and password", "login_url": "/api/v1/auth/login"}]})
    );

    let api = Api::start_with(|config: &mut Config| config.auth.local.enabled = false).await;
    let (_, methods) = api.call("GET", "/api/v1/auth/methods", None, None).await;
    assert_eq!(methods, json!({"methods": []}));
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": PASSWORD, "method": "local"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
}
