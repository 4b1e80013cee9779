//! Local accounts through the HTTP application: the password policy, names that ignore case,
//! changing one's password, an admin's reset, and imported password hashes.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use support::accounts::{
    access_token, assert_error, change_password, login, user_with_password, with_token,
    NEW_PASSWORD, PASSWORD, PASSWORD_WORK,
};
use support::app::{error_code, error_message, password_verifications, Api};
use support::TestDatabase;
use tollgate::config::Config;
use tollgate::store::UserStore;

#[tokio::test]
async fn policy_violations_name_the_rule_and_change_nothing() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(|config: &mut Config| {
        config.passwords.min_length = 10;
        config.passwords.required_classes =
            serde_json::from_value(json!(["digit"])).expect("classes");
    })
    .await;
    for (password, rule) in [
        ("short1", "min_length"),
        ("no digits in here", "digit"),
        ("password123", "common"),
        ("hello dora 12", "not_username"),
        ("explorer 1234", "not_email"),
    ] {
        let (status, body) = api
            .admin(
                "POST",
                "/api/v1/users",
                Some(json!({"username": "dora", "email": "explorer@example.com", "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{password}: {body}");
        assert_eq!(error_code(&body), "validation_failed");
        assert_eq!(body["error"]["rule"], rule, "{password}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains(rule)),
            "{body}"
        );
    }
    let (_, list) = api.admin("GET", "/api/v1/users?q=dora", None).await;
    assert_eq!(list["total"], 0, "{list}");

    let id = api
        .create_user_with(json!({"username": "dora", "password": "a good passphrase 4"}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, body) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"password": "qwerty123456"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["rule"], "common");
    assert_eq!(
        login(&api, "dora", "a good passphrase 4").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn names_ignore_case_at_login_and_clash_at_creation() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start().await;
    api.create_user_with(
        json!({"username": "Alice", "email": "Alice@Example.com", "password": PASSWORD}),
    )
    .await;

    for (username, email, code) in [
        ("alice", "other@example.com", "username_taken"),
        ("ALICE", "other@example.com", "username_taken"),
        ("alicia", "alice@example.COM", "email_taken"),
    ] {
        let (status, body) = api
            .admin(
                "POST",
                "/api/v1/users",
                Some(json!({"username": username, "email": email})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{username}: {body}");
        assert_eq!(error_code(&body), code);
    }
    for spelling in ["alice", "ALICE", "Alice"] {
        let token = access_token(&api, spelling, PASSWORD).await;
        let me = with_token(&api, "GET", "/api/v1/users/me", &token, None).await;
        assert_eq!(me.body["username"], "Alice", "{}", me.body);
    }
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_and_keeps_this_one() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start().await;
    user_with_password(&api, "erin").await;
    let current = access_token(&api, "erin", PASSWORD).await;
    let other = access_token(&api, "erin", PASSWORD).await;

    let wrong = change_password(&api, &current, "not my password", NEW_PASSWORD).await;
    assert_error(&wrong, StatusCode::FORBIDDEN, "invalid_current_password");
    let weak = change_password(&api, &current, PASSWORD, "password").await;
    assert_error(&weak, StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(weak.body["error"]["rule"], "common");
    let me = with_token(&api, "GET", "/api/v1/users/me", &other, None).await;
    assert_eq!(me.status, StatusCode::OK, "refusals changed nothing");

    let changed = change_password(&api, &current, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let me = with_token(&api, "GET", "/api/v1/users/me", &other, None).await;
    assert_error(&me, StatusCode::UNAUTHORIZED, "unauthenticated");
    let me = with_token(&api, "GET", "/api/v1/users/me", &current, None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);

    assert_error(
        &login(&api, "erin", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    access_token(&api, "erin", NEW_PASSWORD).await;
}

#[tokio::test]
async fn after_an_admin_reset_a_login_may_only_change_the_password() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start().await;
    let id = user_with_password(&api, "fred").await;
    let before = access_token(&api, "fred", PASSWORD).await;

    let (status, reset) = api
        .admin(
            "POST",
            &format!("/api/v1/users/{id}/password-reset"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    assert_eq!(reset["password_change_required"], true);
    let temporary = reset["temporary_password"]
        .as_str()
        .expect("a generated password")
        .to_string();
    let me = with_token(&api, "GET", "/api/v1/users/me", &before, None).await;
    assert_eq!(
        me.status,
        StatusCode::UNAUTHORIZED,
        "the reset ended sessions"
    );

    let answer = login(&api, "fred", &temporary).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["password_change_required"], true);
    let limited = answer.body["access_token"].as_str().expect("token");
    let refresh = answer.body["refresh_token"].as_str().expect("refresh");
    for (method, path) in [
        ("GET", "/api/v1/users/me"),
        ("GET", "/api/v1/users/me/sessions"),
        ("GET", &format!("/api/v1/users/{id}")),
    ] {
        let refused = with_token(&api, method, path, limited, None).await;
        assert_error(&refused, StatusCode::FORBIDDEN, "password_change_required");
    }
    let kept = change_password(&api, limited, &temporary, &temporary).await;
    assert_error(&kept, StatusCode::BAD_REQUEST, "validation_failed");
    assert_eq!(kept.body["error"]["rule"], "reused", "{}", kept.body);
    let still = with_token(&api, "GET", "/api/v1/users/me", limited, None).await;
    assert_error(&still, StatusCode::FORBIDDEN, "password_change_required");
    let changed = change_password(&api, limited, &temporary, NEW_PASSWORD).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["password_change_required"], false);

    let (status, refreshed) = api.refresh(refresh).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert!(refreshed.get("password_change_required").is_none());
    let full = refreshed["access_token"].as_str().expect("token");
    let me = with_token(&api, "GET", "/api/v1/users/me", full, None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
}

/// The password hash stored for `username`, read from the database.
async fn stored_hash(store: &dyn UserStore, username: &str) -> String {
    store
        .user_by_username(username)
        .await
        .expect("the user")
        .password_hash
        .expect("a hash")
}

#[tokio::test]
async fn an_imported_bcrypt_hash_logs_in_and_becomes_argon2id() {
    let _turn = PASSWORD_WORK.lock().await;
    let db = Arc::new(TestDatabase::sqlite().await);
    let api = Api::start_on(db.clone(), |_| {}).await;
    let imported = bcrypt::hash(PASSWORD, 10).expect("bcrypt");
    api.create_user_with(json!({"username": "gwen", "password_hash": imported}))
        .await;
    let (status, body) = api
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "hank", "password_hash": "$1$md5$notsupported"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    assert_error(
        &login(&api, "gwen", "not the password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    let store = db.open().await;
    assert_eq!(
        stored_hash(&store, "gwen").await,
        imported,
        "a failed login keeps it"
    );
    access_token(&api, "gwen", PASSWORD).await;
    let upgraded = stored_hash(&store, "gwen").await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{upgraded}"
    );
    access_token(&api, "gwen", PASSWORD).await;
    assert_eq!(
        stored_hash(&store, "gwen").await,
        upgraded,
        "re-hashed once"
    );
}

#[tokio::test]
async fn hashes_costlier_than_the_bounds_are_refused_at_import_and_match_nothing_if_stored() {
    let _turn = PASSWORD_WORK.lock().await;
    let db = Arc::new(TestDatabase::sqlite().await);
    let api = Api::start_on(db.clone(), |_| {}).await;
    let bcrypt_31 = "$2b$31$......................21jzCB1r6pN6rp5O2Ev0ejjTAboskKm";
    let argon2 = tollgate::identity::password::hash_password(
        PASSWORD,
        &tollgate::identity::password::Argon2Settings::default(),
    )
    .expect("hash");
    let costly_argon2 = [
        argon2.replacen("m=19456", "m=4194304", 1),
        argon2.replacen("t=2", "t=100000", 1),
        argon2.replacen("p=1", "p=255", 1),
    ];
    for (username, hash) in std::iter::once(("ivy", bcrypt_31.to_string()))
        .chain(costly_argon2.iter().map(|hash| ("ivy", hash.clone())))
    {
        let (status, body) = api
            .admin(
                "POST",
                "/api/v1/users",
                Some(json!({"username": username, "password_hash": hash})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{hash}: {body}");
        assert_eq!(error_code(&body), "validation_failed");
        assert!(error_message(&body).contains("password_hash"), "{body}");
    }
    let (status, body) = api
        .admin(
            "POST",
            "/api/v1/users",
            Some(json!({"username": "ivy", "password_hash": "$3$not-a-hash"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("$2x$"), "{body}");
    let bcrypt_12 = bcrypt::hash(PASSWORD, 12).expect("bcrypt");
    api.create_user_with(json!({"username": "ivy", "password_hash": bcrypt_12}))
        .await;
    api.create_user_with(json!({"username": "jack", "password_hash": argon2}))
        .await;

    // Written straight into the database, a costly hash is not run: the login is refused.
    let store = db.open().await;
    let jack = store.user_by_username("jack").await.expect("jack");
    let audit = tollgate::changes::audit::AuditEntry::new(None, "test", "jack", json!({}));
    store
        .replace_password_hash(&jack.id, &argon2, &costly_argon2[0], &audit)
        .await
        .expect("stored");
    let before = password_verifications(&api).await;
    let started = Instant::now();
    assert_error(
        &login(&api, "jack", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        password_verifications(&api).await,
        before + 1,
        "one verification, like any refusal"
    );
    assert_eq!(stored_hash(&store, "jack").await, costly_argon2[0]);
}

/// On both databases: a name no user can have (here with a capital dotted I, which Postgres
/// folds to an `i`) finds no user, costs the decoy's verification and is refused like an
/// unknown user; emails are stored lowercased, so they clash alike on both.
#[tokio::test]
async fn names_only_ascii_find_users_and_emails_are_stored_lowercased_on_both_databases() {
    let _turn = PASSWORD_WORK.lock().await;
    for db in [TestDatabase::sqlite().await, TestDatabase::postgres().await] {
        let api = Api::start_on(Arc::new(db), |config: &mut Config| {
            config.login.backoff_secs = 0;
        })
        .await;
        let created = api
            .create_user_with(
                json!({"username": "kim", "email": "KIM@Example.COM", "password": PASSWORD}),
            )
            .await;
        assert_eq!(created["email"], "kim@example.com", "{created}");
        access_token(&api, "KIM", PASSWORD).await;
        let before = password_verifications(&api).await;
        assert_error(
            &login(&api, "k\u{130}m", PASSWORD).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        );
        assert_eq!(password_verifications(&api).await, before + 1);

        api.create_user_with(json!({"username": "zoe", "email": "ZO\u{cb}@example.com"}))
            .await;
        let (status, body) = api
            .admin(
                "POST",
                "/api/v1/users",
                Some(json!({"username": "zoe2", "email": "zo\u{eb}@example.com"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(error_code(&body), "email_taken");
    }
}
