//! Logins, refresh, logout and signing keys, through the HTTP application.

mod support;

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::app::{error_code, error_message, token_part, Api};
use tollgate::proto::v1::filter_service_server::FilterService;
use tollgate::proto::v1::{invalidation, WatchChangesRequest};

const PASSWORD: &str = "correct horse battery";

async fn user_with_password(api: &Api, username: &str) -> String {
    let user = api
        .create_user_with(json!({"username": username, "password": PASSWORD}))
        .await;
    user["id"].as_str().expect("id").to_string()
}

async fn login(api: &Api, username: &str, password: &str) -> (StatusCode, Value) {
    api.call(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password, "method": "local"})),
    )
    .await
}

#[tokio::test]
async fn a_password_login_gives_a_session_that_authenticates() {
    let api = Api::start().await;
    let user_id = user_with_password(&api, "alice").await;
    let (status, tokens) = login(&api, "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = tokens["access_token"].as_str().expect("access token");
    assert!(tokens["refresh_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("tgr_")));

    let header = token_part(access, 0);
    assert_eq!(header["alg"], "EdDSA");
    let claims = token_part(access, 1);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["iss"], "tollgate");
    assert_eq!(claims["aud"], "tollgate");
    assert!(claims["sid"].as_str().is_some_and(|s| s.starts_with("s_")));

    let (_, jwks) = api.call("GET", "/.well-known/jwks.json", None, None).await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(keys
        .iter()
        .any(|k| k["kid"] == header["kid"] && k["alg"] == "EdDSA" && k["kty"] == "OKP"));
    assert!(
        keys.iter().all(|k| k.get("d").is_none()),
        "a private key was published"
    );

    let (status, me) = api
        .call_with_session("GET", "/api/v1/users/me", access)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "alice");
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_are_refused_alike() {
    let api = Api::start().await;
    user_with_password(&api, "bob").await;
    api.create_user("nopassword").await;
    let (wrong_status, wrong) = login(&api, "bob", "not the password").await;
    let (unknown_status, unknown) = login(&api, "nobody", PASSWORD).await;
    let (no_password_status, no_password) = login(&api, "nopassword", PASSWORD).await;
    for status in [wrong_status, unknown_status, no_password_status] {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, no_password);
    assert_eq!(error_code(&wrong), "invalid_credentials");

    let (status, body) = api
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "bob", "password": PASSWORD, "method": "kerberos"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "validation_failed");
}

#[tokio::test]
async fn a_suspended_user_cannot_log_in_and_cannot_tell_a_right_password_from_a_wrong_one() {
    let api = Api::start().await;
    let id = user_with_password(&api, "carol").await;
    api.admin(
        "PATCH",
        &format!("/api/v1/users/{id}"),
        Some(json!({"status": "suspended"})),
    )
    .await;
    let right = login(&api, "carol", PASSWORD).await;
    let wrong = login(&api, "carol", "not the password").await;
    let unknown = login(&api, "nobody", PASSWORD).await;
    assert_eq!(right.0, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&right.1), "invalid_credentials");
    assert_eq!(right, wrong);
    assert_eq!(right, unknown);
}

#[tokio::test]
async fn a_refresh_token_works_once() {
    let api = Api::start().await;
    user_with_password(&api, "dave").await;
    let (_, first) = login(&api, "dave", PASSWORD).await;
    let refresh = first["refresh_token"].as_str().expect("refresh");
    let (status, second) = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(
        token_part(second["access_token"].as_str().expect("access"), 1)["sid"],
        token_part(first["access_token"].as_str().expect("access"), 1)["sid"]
    );

    let (status, again) = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&again), "invalid_refresh_token");
}

#[tokio::test]
async fn a_reused_refresh_token_ends_the_whole_session() {
    let api = Api::start().await;
    user_with_password(&api, "reuser").await;
    let (_, first) = login(&api, "reuser", PASSWORD).await;
    let stolen = first["refresh_token"].as_str().expect("refresh");
    let refresh = |token: &str| {
        api.call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": token})),
        )
    };
    let (status, second) = refresh(stolen).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = refresh(stolen).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "invalid_refresh_token");
    // The legitimate holder's newer tokens die with the session.
    let (status, _) = refresh(second["refresh_token"].as_str().expect("refresh")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let access = second["access_token"].as_str().expect("access");
    let (status, _) = api
        .call_with_session("GET", "/api/v1/users/me", access)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, audit) = api.admin("GET", "/api/v1/audit", None).await;
    assert!(audit.to_string().contains("session.refresh_token_reused"));
    let (_, refreshed) = api
        .admin("GET", "/api/v1/audit?action=session.refresh*", None)
        .await;
    let sorted = |field: fn(&Value) -> &Value| {
        let mut values: Vec<String> = refreshed["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|entry| field(entry).as_str().map(str::to_string))
            .collect();
        values.sort();
        values
    };
    assert_eq!(
        sorted(|entry| &entry["action"]),
        [
            "session.refresh_refused",
            "session.refresh_refused",
            "session.refresh_token_reused",
            "session.refreshed"
        ]
    );
    assert_eq!(
        sorted(|entry| &entry["details"]["result"]),
        ["ended", "unknown"]
    );
}

#[tokio::test]
async fn logout_ends_the_session_and_its_tokens() {
    let api = Api::start().await;
    user_with_password(&api, "erin").await;
    let (_, tokens) = login(&api, "erin", PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access");
    let refresh = tokens["refresh_token"].as_str().expect("refresh");
    let (status, _) = api
        .call_with_session("POST", "/api/v1/auth/logout", access)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api
        .call_with_session("GET", "/api/v1/users/me", access)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, audit) = api.admin("GET", "/api/v1/audit", None).await;
    assert!(audit.to_string().contains("session.ended"));
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let api = Api::start().await;
    user_with_password(&api, "frank").await;
    let (_, tokens) = login(&api, "frank", PASSWORD).await;
    let access = tokens["access_token"].as_str().expect("access");
    let parts: Vec<&str> = access.split('.').collect();

    let mut claims = token_part(access, 1);
    claims["role"] = json!("admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);
    for forged in [tampered.as_str(), unsigned.as_str(), "a.b.c"] {
        let (status, body) = api
            .call_with_session("GET", "/api/v1/users/me", forged)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{forged}");
        assert_eq!(error_code(&body), "unauthenticated");
    }
}

#[tokio::test]
async fn a_rotated_signing_key_is_published_first_and_old_tokens_keep_working() {
    let api = Api::start_with(|config| config.sessions.key_publish_delay_secs = 0).await;
    user_with_password(&api, "grace").await;
    let (_, before) = login(&api, "grace", PASSWORD).await;
    let old_token = before["access_token"].as_str().expect("access");
    let old_kid = token_part(old_token, 0)["kid"].clone();

    let (status, rotated) = api
        .admin("POST", "/api/v1/auth/signing-keys/rotate", None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rotated}");
    let (_, jwks) = api.call("GET", "/.well-known/jwks.json", None, None).await;
    let kids: Vec<&Value> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(
        kids.contains(&&old_kid) && kids.contains(&&rotated["kid"]),
        "{jwks}"
    );

    let (_, after) = login(&api, "grace", PASSWORD).await;
    let new_token = after["access_token"].as_str().expect("access");
    assert_eq!(token_part(new_token, 0)["kid"], rotated["kid"]);
    for token in [old_token, new_token] {
        let (status, _) = api
            .call_with_session("GET", "/api/v1/users/me", token)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn rs256_sessions_work_when_configured() {
    let api = Api::start_with(|config| config.sessions.algorithm = "RS256".into()).await;
    user_with_password(&api, "heidi").await;
    let (status, tokens) = login(&api, "heidi", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access");
    assert_eq!(token_part(access, 0)["alg"], "RS256");
    let (status, _) = api
        .call_with_session("GET", "/api/v1/users/me", access)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn allowlists_are_validated_and_stored_normalised() {
    let api = Api::start().await;
    let user = api
        .create_user_with(json!({"username": "ivan", "ip_allowlist": ["192.168.1.0/24", "2001:DB8::/32", "10.0.0.1"]}))
        .await;
    assert_eq!(
        user["ip_allowlist"],
        json!(["192.168.1.0/24", "2001:db8::/32", "10.0.0.1"])
    );
    let (status, body) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{}", user["id"].as_str().expect("id")),
            Some(json!({"ip_allowlist": ["10.0.0.1/8"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("10.0.0.1/8"));
}

/// The sessions whose tokens an Envoy that starts now is told to refuse.
async fn sessions_refused_by_envoy(api: &Api) -> Vec<String> {
    let request = WatchChangesRequest {
        initial: true,
        ..WatchChangesRequest::default()
    };
    let answer = api
        .filter
        .watch_changes(tonic::Request::new(request))
        .await
        .expect("watch")
        .into_inner();
    answer
        .invalidations
        .into_iter()
        .filter_map(|change| match change.subject {
            Some(invalidation::Subject::SessionId(id)) => Some(id),
            _ => None,
        })
        .collect()
}

fn session_id(tokens: &Value) -> String {
    let access = tokens["access_token"].as_str().expect("access");
    token_part(access, 1)["sid"]
        .as_str()
        .expect("sid")
        .to_string()
}

/// Asserts that the session of `tokens` is over at both doors: its access token is refused by
/// the admin API and named to Envoy, and its refresh token renews nothing.
async fn assert_ended(api: &Api, tokens: &Value) {
    let access = tokens["access_token"].as_str().expect("access");
    let (status, _) = api
        .call_with_session("GET", "/api/v1/users/me", access)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(sessions_refused_by_envoy(api)
        .await
        .contains(&session_id(tokens)));
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": tokens["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "invalid_refresh_token");
}

#[tokio::test]
async fn a_password_change_ends_every_session_of_the_user() {
    let api = Api::start().await;
    let id = user_with_password(&api, "judy").await;
    let (_, first) = login(&api, "judy", PASSWORD).await;
    let (_, second) = login(&api, "judy", PASSWORD).await;
    let new_password = "a brand new passphrase";
    let (status, body) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"password": new_password})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for tokens in [&first, &second] {
        assert_ended(&api, tokens).await;
    }
    let (status, _) = login(&api, "judy", new_password).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_reactivated_user_s_old_sessions_stay_ended() {
    let api = Api::start().await;
    let id = user_with_password(&api, "kim").await;
    let (_, tokens) = login(&api, "kim", PASSWORD).await;
    for status in ["suspended", "active"] {
        let (answer, body) = api
            .admin(
                "PATCH",
                &format!("/api/v1/users/{id}"),
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!(answer, StatusCode::OK, "{body}");
    }
    assert_ended(&api, &tokens).await;
}

#[tokio::test]
async fn deleting_a_user_ends_their_sessions_at_envoy_too() {
    let api = Api::start().await;
    let id = user_with_password(&api, "leo").await;
    let (_, tokens) = login(&api, "leo", PASSWORD).await;
    let (status, _) = api
        .admin("DELETE", &format!("/api/v1/users/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_ended(&api, &tokens).await;
}

#[tokio::test]
async fn other_changes_to_a_user_leave_their_sessions_alone() {
    let api = Api::start().await;
    let id = user_with_password(&api, "mia").await;
    let (_, tokens) = login(&api, "mia", PASSWORD).await;
    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"name": "Mia", "role": "admin"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let access = tokens["access_token"].as_str().expect("access");
    let (status, _) = api
        .call_with_session("GET", "/api/v1/users/me", access)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!sessions_refused_by_envoy(&api)
        .await
        .contains(&session_id(&tokens)));
}
