//! Clients that keep failing to authenticate are held back: a login name is locked after
//! repeated failures, a client address after too many failed logins and refused admin-API
//! credentials; both are answered 429 `too_many_attempts` with `Retry-After`, before any
//! password is checked.

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use support::app::{error_code, password_verifications, retry_after_secs, Answer, Api, ADMIN_KEY};
use tollgate::config::Config;

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "wrong horse battery";

/// The metric counts every password verification in this process, so the tests that log in
/// take turns.
static PASSWORD_WORK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A peer of its own for each `n`.
fn client(n: u8) -> String {
    format!("192.0.2.{n}:50000")
}

/// Locks a name after `max_failures`, for `lockout_secs`; addresses have a budget to spare.
async fn api_locking_after(max_failures: u32, lockout_secs: u32) -> Api {
    Api::start_with(|config: &mut Config| {
        config.login.max_failures = max_failures;
        config.login.lockout_secs = lockout_secs;
        config.login.max_lockout_secs = lockout_secs;
    })
    .await
}

/// Addresses may fail `budget` times, and then once an hour; names have failures to spare.
async fn api_with_address_budget(budget: u32) -> Api {
    Api::start_with(|config: &mut Config| {
        config.login.address_failures_burst = budget;
        config.login.address_failures_per_hour = 1;
    })
    .await
}

async fn user_with_password(api: &Api, username: &str) {
    api.create_user_with(json!({"username": username, "password": PASSWORD}))
        .await;
}

async fn login_from(api: &Api, from: &str, username: &str, password: &str) -> Answer {
    api.answer_from(
        from,
        "POST",
        "/api/v1/auth/login",
        &[],
        Some(json!({"username": username, "password": password})),
    )
    .await
}

async fn login(api: &Api, username: &str, password: &str) -> Answer {
    login_from(api, &client(1), username, password).await
}

fn assert_refused(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(error_code(&answer.body), "invalid_credentials");
}

/// Asserts a 429 `too_many_attempts` and returns its `Retry-After`.
fn assert_held_back(answer: &Answer) -> u64 {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_eq!(error_code(&answer.body), "too_many_attempts");
    retry_after_secs(answer)
}

#[tokio::test]
async fn wrong_passwords_lock_the_name_and_then_the_right_one_is_refused_alike() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = api_locking_after(3, 600).await;
    user_with_password(&api, "erin").await;

    // A name that matches no user locks the same way, so a lock reveals no account.
    for username in ["erin", "nobody"] {
        for _ in 0..3 {
            assert_refused(&login(&api, username, WRONG).await);
        }
        let wrong = login(&api, username, WRONG).await;
        let right = login(&api, username, PASSWORD).await;
        let retry_after = assert_held_back(&wrong);
        assert!((599..=600).contains(&retry_after), "{retry_after}");
        assert_held_back(&right);
        assert_eq!(right.body, wrong.body, "{username}");
    }
    let from_elsewhere = login_from(&api, &client(2), "erin", PASSWORD).await;
    assert_held_back(&from_elsewhere);
}

#[tokio::test]
async fn a_lock_ends_after_the_lockout() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = api_locking_after(2, 1).await;
    user_with_password(&api, "fred").await;
    for _ in 0..2 {
        assert_refused(&login(&api, "fred", WRONG).await);
    }
    let retry_after = assert_held_back(&login(&api, "fred", PASSWORD).await);

    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    let answer = login(&api, "fred", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn a_successful_login_forgets_the_failures() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = api_locking_after(3, 600).await;
    user_with_password(&api, "gwen").await;
    for _ in 0..2 {
        assert_refused(&login(&api, "gwen", WRONG).await);
    }
    assert_eq!(login(&api, "gwen", PASSWORD).await.status, StatusCode::OK);

    for _ in 0..3 {
        assert_refused(&login(&api, "gwen", WRONG).await);
    }
    assert_held_back(&login(&api, "gwen", WRONG).await);
}

#[tokio::test]
async fn an_address_that_fails_across_names_is_held_back_and_others_are_not() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = api_with_address_budget(3).await;
    for username in ["hana", "ivan", "jill", "kurt"] {
        user_with_password(&api, username).await;
    }
    let guesser = client(10);
    for username in ["hana", "ivan", "jill"] {
        assert_refused(&login_from(&api, &guesser, username, WRONG).await);
    }

    let retry_after = assert_held_back(&login_from(&api, &guesser, "kurt", PASSWORD).await);
    assert!((3599..=3600).contains(&retry_after), "{retry_after}");
    let neighbour = login_from(&api, &client(11), "kurt", PASSWORD).await;
    assert_eq!(neighbour.status, StatusCode::OK, "{}", neighbour.body);
}

#[tokio::test]
async fn a_held_back_attempt_checks_no_password() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(|config: &mut Config| {
        config.login.max_failures = 1;
        config.login.address_failures_burst = 2;
        config.login.address_failures_per_hour = 1;
    })
    .await;
    user_with_password(&api, "lena").await;
    user_with_password(&api, "mark").await;

    let before = password_verifications(&api).await;
    assert_refused(&login(&api, "lena", WRONG).await);
    assert_eq!(password_verifications(&api).await, before + 1);

    // Locked name, from an address with budget left.
    assert_held_back(&login_from(&api, &client(20), "lena", PASSWORD).await);
    assert_refused(&login(&api, "mark", WRONG).await);
    // Address over budget, name not locked.
    assert_held_back(&login(&api, "nina", WRONG).await);
    assert_eq!(password_verifications(&api).await, before + 2);
}

/// `GET /api/v1/users/me` from `peer` with these headers.
async fn me_from(api: &Api, peer: &str, headers: &[(&str, &str)]) -> Answer {
    api.answer_from(peer, "GET", "/api/v1/users/me", headers, None)
        .await
}

#[tokio::test]
async fn refused_admin_credentials_are_held_back_per_address() {
    let api = api_with_address_budget(3).await;
    let guesser = client(30);

    // Requests that present no credential guess nothing and spend no budget.
    for _ in 0..5 {
        let answer = me_from(&api, &guesser, &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    for headers in [
        ("x-api-key", "tg_u_guessed0123456789abcdefghijklmnopqrstuv"),
        ("authorization", "Bearer guessed-key"),
        (
            "authorization",
            "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln",
        ),
    ] {
        let answer = me_from(&api, &guesser, &[headers]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    }

    let held_back = me_from(&api, &guesser, &[("x-api-key", ADMIN_KEY)]).await;
    let retry_after = assert_held_back(&held_back);
    assert!((3599..=3600).contains(&retry_after), "{retry_after}");
    let elsewhere = me_from(&api, &client(31), &[("x-api-key", ADMIN_KEY)]).await;
    assert_eq!(elsewhere.status, StatusCode::OK, "{}", elsewhere.body);
}
