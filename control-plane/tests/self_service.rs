//! Self-registration, email verification and password reset by email, against a real SMTP
//! server on loopback whose received messages the tests read.

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;
use support::accounts::{access_token, assert_error, login, PASSWORD, PASSWORD_WORK};
use support::app::{error_message, Answer, Api, LOCAL_PEER};
use support::smtp::{link_token, SmtpServer};
use support::TestDatabase;
use tollgate::config::Config;
use tollgate::domain::ids::UserId;
use tollgate::identity::email_links::{EmailLinks, LinkPurpose};

const SECRET: &str = "a server secret of at least thirty-two characters";
const LINKS: &str = "https://console.gateway.test/";

async fn self_service(smtp: &SmtpServer, adjust: impl FnOnce(&mut Config)) -> Api {
    self_service_on(TestDatabase::sqlite().await, smtp, adjust).await
}

async fn self_service_on(
    db: TestDatabase,
    smtp: &SmtpServer,
    adjust: impl FnOnce(&mut Config),
) -> Api {
    Api::start_on(Arc::new(db), |config: &mut Config| {
        smtp.configure(config);
        config.self_service.registration = true;
        config.self_service.password_reset = true;
        config.self_service.links_base_url = LINKS.into();
        config.security.key_hash_secret = Some(SECRET.into());
        adjust(config);
    })
    .await
}

async fn post(api: &Api, path: &str, body: serde_json::Value) -> Answer {
    api.answer_from(LOCAL_PEER, "POST", path, &[], Some(body))
        .await
}

async fn register(api: &Api, username: &str, email: &str) -> Answer {
    post(
        api,
        "/api/v1/auth/register",
        json!({"username": username, "email": email, "password": PASSWORD}),
    )
    .await
}

#[tokio::test]
async fn a_registered_account_logs_in_once_the_mailed_link_verifies_its_address() {
    registration_and_verification(TestDatabase::sqlite().await).await;
}

#[tokio::test]
async fn a_registered_account_logs_in_once_verified_on_postgres() {
    registration_and_verification(TestDatabase::postgres().await).await;
}

async fn registration_and_verification(db: TestDatabase) {
    let _turn = PASSWORD_WORK.lock().await;
    let smtp = SmtpServer::start();
    let api = self_service_on(db, &smtp, |_| {}).await;

    let registered = register(&api, "newcomer", "New.Comer@Example.com").await;
    assert_eq!(
        registered.status,
        StatusCode::ACCEPTED,
        "{}",
        registered.body
    );
    assert_error(
        &login(&api, "newcomer", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "email_not_verified",
    );
    // A wrong password learns nothing about the account.
    assert_error(
        &login(&api, "newcomer", "not the password at all").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );

    let messages = smtp.wait_for("new.comer@example.com", 1).await;
    assert_eq!(messages.len(), 1, "one message");
    assert!(messages[0].contains("Subject: Confirm your email address"));
    assert!(messages[0].contains("https://console.gateway.test/verify-email?token="));
    assert!(
        !messages[0].contains(PASSWORD),
        "the password is never mailed"
    );
    let token = link_token(&messages[0], "verify-email");

    let verified = post(&api, "/api/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.body);
    assert_eq!(verified.body["status"], "verified");
    assert_eq!(
        login(&api, "NewComer", PASSWORD).await.status,
        StatusCode::OK
    );
    let again = post(&api, "/api/v1/auth/verify-email", json!({"token": token})).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a second open changes nothing"
    );

    let (_, users) = api.admin("GET", "/api/v1/users?q=newcomer", None).await;
    assert_eq!(users["total"], 1);
    assert_eq!(users["items"][0]["role"], "user");
    assert_eq!(users["items"][0]["email"], "new.comer@example.com");
    let (_, audit) = api.admin("GET", "/api/v1/audit?per_page=100", None).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    assert!(actions.contains(&"user.registered"), "{actions:?}");
    assert!(actions.contains(&"user.email_verified"), "{actions:?}");
}

#[tokio::test]
async fn a_taken_address_answers_like_a_free_one_and_its_owner_is_told() {
    let _turn = PASSWORD_WORK.lock().await;
    let smtp = SmtpServer::start();
    let api = self_service(&smtp, |_| {}).await;
    api.create_user_with(json!({"username": "owner", "email": "owner@example.com"}))
        .await;

    let taken = register(&api, "intruder", "Owner@example.com").await;
    assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.body);
    assert_eq!(taken.body, json!({"status": "verification_sent"}));
    let messages = smtp.wait_for("owner@example.com", 1).await;
    assert_eq!(messages.len(), 1);
    assert!(messages[0].contains("already registered"));
    assert!(
        !messages[0].contains("token="),
        "no link for the taken address"
    );
    let (_, users) = api.admin("GET", "/api/v1/users?q=intruder", None).await;
    assert_eq!(users["total"], 0, "nothing was created");

    let name_taken = register(&api, "OWNER", "someone.else@example.com").await;
    assert_error(&name_taken, StatusCode::CONFLICT, "username_taken");
    let weak = post(
        &api,
        "/api/v1/auth/register",
        json!({"username": "weak", "email": "weak@example.com", "password": "password1"}),
    )
    .await;
    assert_error(&weak, StatusCode::BAD_REQUEST, "validation_failed");
    assert!(error_message(&weak.body).contains("common"));
}

#[tokio::test]
async fn tampered_expired_and_misdirected_links_are_refused() {
    let _turn = PASSWORD_WORK.lock().await;
    let smtp = SmtpServer::start();
    let api = self_service(&smtp, |_| {}).await;
    register(&api, "linked", "linked@example.com").await;
    let messages = smtp.wait_for("linked@example.com", 1).await;
    let token = link_token(&messages[0], "verify-email");
    let verify = |token: String| {
        let api = &api;
        async move { post(api, "/api/v1/auth/verify-email", json!({"token": token})).await }
    };

    let mut tampered = token.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert_error(
        &verify(tampered).await,
        StatusCode::BAD_REQUEST,
        "invalid_link",
    );

    let (_, users) = api.admin("GET", "/api/v1/users?q=linked", None).await;
    let user = UserId::from_string(users["items"][0]["id"].as_str().expect("id").into());
    let links = EmailLinks::new(SECRET.as_bytes());
    let expired = links.issue(LinkPurpose::VerifyEmail, &user, "linked@example.com", -1);
    assert_error(
        &verify(expired).await,
        StatusCode::BAD_REQUEST,
        "link_expired",
    );
    let other_address = links.issue(LinkPurpose::VerifyEmail, &user, "else@example.com", 60);
    assert_error(
        &verify(other_address).await,
        StatusCode::BAD_REQUEST,
        "invalid_link",
    );
    let wrong_purpose = links.issue(LinkPurpose::ResetPassword, &user, "linked@example.com", 60);
    assert_error(
        &verify(wrong_purpose).await,
        StatusCode::BAD_REQUEST,
        "invalid_link",
    );
    assert_error(
        &login(&api, "linked", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "email_not_verified",
    );
    assert_eq!(verify(token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_reset_link_sets_a_new_password_once_and_ends_every_session() {
    let _turn = PASSWORD_WORK.lock().await;
    let smtp = SmtpServer::start();
    let api = self_service(&smtp, |_| {}).await;
    api.create_user_with(
        json!({"username": "forgetful", "email": "forgetful@example.com", "password": PASSWORD}),
    )
    .await;
    let old_session = access_token(&api, "forgetful", PASSWORD).await;

    let unknown = post(
        &api,
        "/api/v1/auth/password-reset",
        json!({"email": "nobody@example.com"}),
    )
    .await;
    let known = post(
        &api,
        "/api/v1/auth/password-reset",
        json!({"email": "Forgetful@example.com"}),
    )
    .await;
    assert_eq!(known.status, StatusCode::ACCEPTED);
    assert_eq!(unknown.status, known.status);
    assert_eq!(unknown.body, known.body, "an unknown address answers alike");
    let messages = smtp.wait_for("forgetful@example.com", 1).await;
    assert_eq!(messages.len(), 1);
    assert!(smtp.wait_for("nobody@example.com", 0).await.is_empty());
    let token = link_token(&messages[0], "reset-password");
    let confirm = |password: &str| {
        let (api, token) = (&api, token.clone());
        let body = json!({"token": token, "new_password": password});
        async move { post(api, "/api/v1/auth/password-reset/confirm", body).await }
    };

    let weak = confirm("forgetful123").await;
    assert_error(&weak, StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(weak.body["error"]["rule"], "not_username");
    let reset = confirm("a fresh and long passphrase").await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);

    let (status, _) = api
        .call_with_session("GET", "/api/v1/users/me", &old_session)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old session ended");
    assert_error(
        &login(&api, "forgetful", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    assert_eq!(
        login(&api, "forgetful", "a fresh and long passphrase")
            .await
            .status,
        StatusCode::OK
    );
    assert_error(
        &confirm("yet another long passphrase").await,
        StatusCode::BAD_REQUEST,
        "invalid_link",
    );
}

#[tokio::test]
async fn budgets_bound_the_mail_a_client_causes_and_a_recipient_gets() {
    let _turn = PASSWORD_WORK.lock().await;
    let smtp = SmtpServer::start();
    let api = self_service(&smtp, |config| {
        config.self_service.mails_per_address_per_hour = 3;
        config.self_service.mails_per_recipient_per_hour = 1;
    })
    .await;
    api.create_user_with(
        json!({"username": "target", "email": "target@example.com", "password": PASSWORD}),
    )
    .await;
    let ask = || {
        post(
            &api,
            "/api/v1/auth/password-reset",
            json!({"email": "target@example.com"}),
        )
    };
    for _ in 0..3 {
        assert_eq!(ask().await.status, StatusCode::ACCEPTED);
    }
    let over = ask().await;
    assert_error(&over, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
    assert_eq!(over.headers["retry-after"], "1200");
    let from_elsewhere = api
        .answer_from(
            "192.0.2.9:5000",
            "POST",
            "/api/v1/auth/password-reset",
            &[],
            Some(json!({"email": "target@example.com"})),
        )
        .await;
    assert_eq!(from_elsewhere.status, StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        smtp.wait_for("target@example.com", 2).await.len(),
        1,
        "the recipient got one message however often it was asked for"
    );
}

#[tokio::test]
async fn a_stopped_smtp_server_changes_no_answer_and_everything_is_off_by_default() {
    let _turn = PASSWORD_WORK.lock().await;
    let mut smtp = SmtpServer::start();
    let api = self_service(&smtp, |_| {}).await;
    api.create_user_with(
        json!({"username": "mailless", "email": "mailless@example.com", "password": PASSWORD}),
    )
    .await;
    smtp.stop();
    let failures = || async {
        let (_, metrics) = api.call("GET", "/metrics", None, None).await;
        let text = metrics.as_str().unwrap_or_default().to_string();
        text.lines()
            .find_map(|line| line.strip_prefix("tollgate_mail_failures_total "))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = failures().await;
    let answer = post(
        &api,
        "/api/v1/auth/password-reset",
        json!({"email": "mailless@example.com"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while failures().await == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the undeliverable message was tried, then counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let plain = Api::start().await;
    for (path, body) in [
        (
            "/api/v1/auth/register",
            json!({"username": "x", "email": "x@example.com", "password": PASSWORD}),
        ),
        (
            "/api/v1/auth/password-reset",
            json!({"email": "x@example.com"}),
        ),
    ] {
        assert_error(
            &post(&plain, path, body).await,
            StatusCode::FORBIDDEN,
            "self_service_disabled",
        );
    }
}

#[test]
fn self_service_needs_a_mail_server_and_a_link_base() {
    let mut config = Config::default();
    config.self_service.registration = true;
    let error = config.clone().validate().expect_err("no mail").to_string();
    assert!(error.contains("self_service.registration"), "{error}");
    config.mail.smtp_host = "smtp.example.com".into();
    config.mail.from = "no-reply@example.com".into();
    let error = config.clone().validate().expect_err("no links").to_string();
    assert!(error.contains("self_service.links_base_url"), "{error}");
    config.self_service.links_base_url = "https://console.example.com".into();
    config.clone().validate().expect("valid");
    config.mail.security = "none".into();
    let error = config
        .validate()
        .expect_err("plain text off-host")
        .to_string();
    assert!(error.contains("mail.security"), "{error}");
}
