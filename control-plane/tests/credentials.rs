//! One request, one meaning at both doors: the admin API reads and judges a credential as the
//! filter does. Each test sends a request to the admin API and checks what the filter makes of
//! the same headers (its credential parser, its expiry rule, the `LookupKey` answer it gets).

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use support::app::{error_code, key_principal, Api, ADMIN_KEY};
use tollgate_filter_core::credential::{extract, CredentialError, Presented, SESSION_COOKIE};
use tollgate_filter_core::gate::key_expired;
use tollgate_filter_core::local_digest::LocalDigester;

const ME: &str = "/api/v1/users/me";

/// What the filter reads from these headers.
fn filter_reads(headers: &[(&str, &str)]) -> Result<Presented, CredentialError> {
    let max_credential_bytes = 8192;
    extract(headers, max_credential_bytes, &LocalDigester::new([7; 16]))
}

fn filter_reads_a_key(headers: &[(&str, &str)]) -> bool {
    matches!(filter_reads(headers), Ok(Presented::ApiKey(_)))
}

fn filter_reads_a_session(headers: &[(&str, &str)]) -> bool {
    matches!(filter_reads(headers), Ok(Presented::Session { .. }))
}

/// Asserts that the admin API refuses these headers as it refuses a missing credential.
async fn assert_unauthenticated(api: &Api, headers: &[(&str, &str)]) {
    let (status, body) = api.call_with_headers("GET", ME, headers, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {body}");
    assert_eq!(error_code(&body), "unauthenticated");
}

#[tokio::test]
async fn a_session_wins_over_an_api_key_sent_with_it() {
    let api = Api::start().await;
    let (_, token) = api.logged_in_user("ivy").await;
    let bearer = format!("Bearer {token}");
    let both = [("x-api-key", ADMIN_KEY), ("authorization", bearer.as_str())];

    assert!(matches!(
        filter_reads(&both),
        Ok(Presented::Session {
            alongside_api_key: true,
            ..
        })
    ));
    let (status, me) = api.call_with_headers("GET", ME, &both, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "ivy", "the session, not the admin's key");
    let (status, body) = api
        .call_with_headers("GET", "/api/v1/users", &both, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn a_session_token_in_x_api_key_is_read_as_a_key() {
    let api = Api::start().await;
    let (_, token) = api.logged_in_user("jack").await;
    let headers = [("x-api-key", token.as_str())];

    assert!(filter_reads_a_key(&headers));
    assert_unauthenticated(&api, &headers).await;
}

#[tokio::test]
async fn a_key_sent_twice_is_refused_even_when_both_are_the_same() {
    let api = Api::start().await;
    let admin_bearer = format!("Bearer {ADMIN_KEY}");
    for headers in [
        [("x-api-key", ADMIN_KEY), ("x-api-key", ADMIN_KEY)],
        [
            ("authorization", admin_bearer.as_str()),
            ("authorization", admin_bearer.as_str()),
        ],
    ] {
        assert_eq!(filter_reads(&headers), Err(CredentialError::Invalid));
        assert_unauthenticated(&api, &headers).await;
    }
}

#[tokio::test]
async fn x_api_key_wins_over_a_bearer_key() {
    let api = Api::start().await;
    let headers = [
        ("x-api-key", ADMIN_KEY),
        ("authorization", "Bearer tg_not_a_key_of_anyone"),
    ];

    assert!(filter_reads_a_key(&headers));
    let (status, me) = api.call_with_headers("GET", ME, &headers, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "admin");
}

#[tokio::test]
async fn the_session_cookie_authenticates_only_when_no_key_is_sent() {
    let api = Api::start().await;
    let (_, token) = api.logged_in_user("kate").await;
    let cookie = format!("theme=dark; {SESSION_COOKIE}={token}");
    let cookie_only = [("cookie", cookie.as_str())];

    assert!(filter_reads_a_session(&cookie_only));
    let (status, me) = api.call_with_headers("GET", ME, &cookie_only, None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "kate");

    let with_key = [("cookie", cookie.as_str()), ("x-api-key", ADMIN_KEY)];
    assert!(filter_reads_a_key(&with_key));
    let (_, me) = api.call_with_headers("GET", ME, &with_key, None).await;
    assert_eq!(me["username"], "admin");

    let twice = format!("{SESSION_COOKIE}={token}; {SESSION_COOKIE}={token}");
    let two_cookies = [("cookie", twice.as_str())];
    assert_eq!(filter_reads(&two_cookies), Err(CredentialError::Missing));
    assert_unauthenticated(&api, &two_cookies).await;
}

#[tokio::test]
async fn an_expired_key_is_refused_at_both_doors_from_its_expiry_second() {
    let api = Api::start().await;
    let user = api.create_user("liam").await;
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let issued = api
        .issue_key_with(
            user["id"].as_str().expect("id"),
            json!({"name": "short-lived", "expires_at": expires_at}),
        )
        .await;
    let key = issued["key"].as_str().expect("key");
    let now_ms = || chrono::Utc::now().timestamp_millis();

    let principal = key_principal(&api.filter, key).await.expect("principal");
    assert_eq!(principal.key_expires_at, expires_at.timestamp());
    assert!(!key_expired(principal.key_expires_at, now_ms()));
    assert_eq!(api.call("GET", ME, Some(key), None).await.0, StatusCode::OK);

    let until_expiry_ms = principal.key_expires_at * 1000 - now_ms();
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(until_expiry_ms).unwrap_or(0),
    ))
    .await;

    let principal = key_principal(&api.filter, key).await.expect("principal");
    assert!(key_expired(principal.key_expires_at, now_ms()));
    assert_unauthenticated(&api, &[("x-api-key", key)]).await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_at_both_doors() {
    let api = Api::start().await;
    let (user_id, key) = api.user_with_key("mia").await;
    let key_id = key_principal(&api.filter, &key)
        .await
        .expect("principal")
        .key_id;

    let revoke = format!("/api/v1/users/{user_id}/keys/{key_id}");
    assert_eq!(
        api.admin("DELETE", &revoke, None).await.0,
        StatusCode::NO_CONTENT
    );

    assert!(
        key_principal(&api.filter, &key).await.is_none(),
        "the filter refuses it as unknown"
    );
    assert_unauthenticated(&api, &[("x-api-key", &key)]).await;
}
