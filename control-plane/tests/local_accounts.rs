//! Local accounts through the HTTP application: the password policy, names that ignore case,
//! changing one's password, an admin's reset, imported bcrypt hashes, backoff, lockout and
//! unlock, the audit of every attempt, the sessions a person sees and ends, and the login
//! methods offered.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::app::{
    error_code, error_message, password_verifications, retry_after_secs, Answer, Api, LOCAL_PEER,
};
use support::TestDatabase;
use tollgate::config::Config;
use tollgate::store::UserStore;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// The metric counts every password verification in this process, so the tests that log in
/// take turns.
static PASSWORD_WORK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn user_with_password(api: &Api, username: &str) -> String {
    let user = api
        .create_user_with(json!({"username": username, "password": PASSWORD}))
        .await;
    user["id"].as_str().expect("id").to_string()
}

/// A login from `peer` with `user_agent`.
async fn login_from(
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

async fn login(api: &Api, username: &str, password: &str) -> Answer {
    login_from(api, LOCAL_PEER, "curl/8.5.0", username, password).await
}

/// The access token of a login that must succeed.
async fn access_token(api: &Api, username: &str, password: &str) -> String {
    let answer = login(api, username, password).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["access_token"]
        .as_str()
        .expect("access token")
        .to_string()
}

/// A call with the session's access token.
async fn with_token(
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

async fn change_password(api: &Api, token: &str, current: &str, new: &str) -> Answer {
    with_token(
        api,
        "POST",
        "/api/v1/users/me/password",
        token,
        Some(json!({"current_password": current, "new_password": new})),
    )
    .await
}

fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(error_code(&answer.body), code, "{}", answer.body);
}

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

#[tokio::test]
async fn failures_back_off_then_lock_until_an_admin_unlocks() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(|config: &mut Config| {
        config.login.max_failures = 3;
        config.login.backoff_after_failures = 2;
        config.login.backoff_secs = 1;
        config.login.lockout_secs = 600;
        config.login.max_lockout_secs = 600;
    })
    .await;
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

/// Attempts per name in the timing comparison; the fastest of each counts, as the machine's
/// other work only ever adds time.
const TIMED_ATTEMPTS: usize = 3;

#[tokio::test]
async fn an_unknown_user_costs_the_same_hash_and_gets_the_same_answer_as_a_wrong_password() {
    let _turn = PASSWORD_WORK.lock().await;
    let api = Api::start_with(|config: &mut Config| config.login.backoff_secs = 0).await;
    user_with_password(&api, "jack").await;
    // The decoy hash is made on first use; time the attempts after it.
    login(&api, "warming", PASSWORD).await;

    let mut answers = Vec::new();
    let mut fastest = Vec::new();
    for username in ["jack", "nobody"] {
        let mut took = Vec::new();
        for _ in 0..TIMED_ATTEMPTS {
            let before = password_verifications(&api).await;
            let started = Instant::now();
            let answer = login(&api, username, "not the password").await;
            took.push(started.elapsed());
            assert_eq!(
                password_verifications(&api).await,
                before + 1,
                "{username}: one Argon2id verification"
            );
            answers.push((answer.status, answer.body));
        }
        fastest.push(took.into_iter().min().expect("timed").as_secs_f64());
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
