//! Logins with `"method": "ldap"` against a real slapd started for each test, through the
//! HTTP application: login, group mapping, the sync, refusals, the directory down, and TLS.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};
use support::accounts::{assert_error, login, PASSWORD};
use support::app::{Answer, Api, LOCAL_PEER};
use support::{against_both_databases, TestDatabase};
use tollgate::config::{Config, LdapGroupsConfig, LdapMethodConfig, OnUnavailableConfig};
use tollgate::identity::ldap::BindPassword;
use tollgate_e2e::ldap::{Slapd, GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD};

const ALICE_PASSWORD: &str = "alice's directory password";

/// LDAP logins against `slapd` over plain `ldap://`, groups found by a search, the
/// directory group `engineers` mapped to the Tollgate group `engineering`.
fn ldap_config(slapd: &Slapd) -> LdapMethodConfig {
    LdapMethodConfig {
        enabled: true,
        url: slapd.url(),
        bind_dn: SERVICE_DN.into(),
        bind_password: Some(BindPassword::new(SERVICE_PASSWORD)),
        user_base: PEOPLE.into(),
        groups: LdapGroupsConfig {
            search_base: Some(GROUPS.into()),
            ..LdapGroupsConfig::default()
        },
        group_map: [(Slapd::group_dn("engineers"), "engineering".to_string())].into(),
        ..LdapMethodConfig::default()
    }
}

/// A directory with alice, a member of `engineers` (with dave, who is not in it).
fn directory_with_alice() -> Slapd {
    let slapd = Slapd::start();
    slapd.add_person(
        "alice",
        ALICE_PASSWORD,
        "alice@example.org",
        "Alice Example",
    );
    slapd.add_group("engineers", &["alice", "dave"]);
    slapd
}

async fn app_with(slapd: &Slapd, adjust: impl FnOnce(&mut LdapMethodConfig)) -> Api {
    let mut ldap = ldap_config(slapd);
    adjust(&mut ldap);
    Api::start_with(|config: &mut Config| config.auth.ldap = ldap).await
}

async fn ldap_login(api: &Api, username: &str, password: &str) -> Answer {
    api.answer_from(
        LOCAL_PEER,
        "POST",
        "/api/v1/auth/login",
        &[],
        Some(json!({"username": username, "password": password, "method": "ldap"})),
    )
    .await
}

/// The access token of an LDAP login that must succeed.
async fn ldap_session(api: &Api, username: &str, password: &str) -> Value {
    let answer = ldap_login(api, username, password).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn me(api: &Api, tokens: &Value) -> Value {
    let access = tokens["access_token"].as_str().expect("access token");
    let (status, me) = api
        .call_with_session("GET", "/api/v1/users/me", access)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me
}

async fn create_group(api: &Api, name: &str) -> String {
    let (status, group) = api
        .admin("POST", "/api/v1/groups", Some(json!({"name": name})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    group["id"].as_str().expect("id").to_string()
}

async fn user(api: &Api, id: &str) -> Value {
    let (status, user) = api.admin("GET", &format!("/api/v1/users/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    user
}

/// Waits (up to 10 s) until the admin API shows `done` for the user.
async fn until_user(api: &Api, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let user = user(api, id).await;
        if done(&user) {
            return user;
        }
        assert!(Instant::now() < deadline, "never {what}: {user}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn groups_of(user: &Value) -> Vec<String> {
    user["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|id| id.as_str().expect("group id").to_string())
        .collect()
}

against_both_databases!(a_directory_login_creates_the_user_and_follows_its_groups);

async fn a_directory_login_creates_the_user_and_follows_its_groups(db: TestDatabase) {
    let slapd = directory_with_alice();
    let ldap = ldap_config(&slapd);
    let api = Api::start_on(Arc::new(db), |config| config.auth.ldap = ldap).await;
    let engineering = create_group(&api, "engineering").await;
    let contractors = create_group(&api, "contractors").await;

    let (_, methods) = api.call("GET", "/api/v1/auth/methods", None, None).await;
    assert!(
        methods.to_string().contains(
            r#"{"id":"ldap","kind":"password","login_url":"/api/v1/auth/login","name":"Directory account"}"#
        ),
        "{methods}"
    );

    let tokens = ldap_session(&api, "alice", ALICE_PASSWORD).await;
    let alice = me(&api, &tokens).await;
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["email"], "alice@example.org");
    assert_eq!(alice["name"], "Alice Example");
    assert_eq!(alice["role"], "user");
    assert_eq!(groups_of(&alice), vec![engineering.clone()]);
    let id = alice["id"].as_str().expect("id").to_string();
    let access = tokens["access_token"].as_str().expect("access");
    let (_, sessions) = api
        .call_with_session("GET", "/api/v1/users/me/sessions", access)
        .await;
    assert_eq!(sessions["items"][0]["method"], "ldap", "{sessions}");

    // A group the directory does not manage keeps its members; a mapped one follows the
    // directory at the next login.
    let (status, _) = api
        .admin(
            "POST",
            &format!("/api/v1/groups/{contractors}/members"),
            Some(json!({"user_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n",
        Slapd::group_dn("engineers"),
        Slapd::person_dn("alice")
    ));
    slapd.add_group("staff", &["alice"]);
    let tokens = ldap_session(&api, "ALICE", ALICE_PASSWORD).await;
    assert_eq!(groups_of(&me(&api, &tokens).await), vec![contractors]);

    // The directory's password is no local password.
    let local = login(&api, "alice", ALICE_PASSWORD).await;
    assert_error(&local, StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn groups_come_from_the_member_of_attribute_unless_a_group_search_is_configured() {
    let slapd = directory_with_alice();
    let api = app_with(&slapd, |ldap| ldap.groups = LdapGroupsConfig::default()).await;
    let engineering = create_group(&api, "engineering").await;
    let tokens = ldap_session(&api, "alice", ALICE_PASSWORD).await;
    assert_eq!(groups_of(&me(&api, &tokens).await), vec![engineering]);
}

#[tokio::test]
async fn wrong_passwords_unknown_names_injections_and_empty_passwords_are_refused_alike() {
    // Alice is the only person: a filter an injected name widened would find her alone, and
    // her password would open it.
    let mut slapd = directory_with_alice();
    let api = app_with(&slapd, |_| {}).await;

    for (username, password) in [
        ("alice", "not alice's password"),
        ("nobody", ALICE_PASSWORD),
        ("*)(uid=*", ALICE_PASSWORD),
        ("*", ALICE_PASSWORD),
        ("alice)(|(uid=*", ALICE_PASSWORD),
        ("alice", ""),
    ] {
        let answer = ldap_login(&api, username, password).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_credentials");
        assert_eq!(
            answer.body["error"]["message"], "the username or password is wrong",
            "{username:?}"
        );
    }
    let (_, users) = api.admin("GET", "/api/v1/users", None).await;
    assert_eq!(users["total"], 1, "only the admin exists: {users}");

    // An empty password is refused before the directory is asked: with it down, the answer
    // is still 401, not 503.
    slapd.stop();
    let empty = ldap_login(&api, "alice", "").await;
    assert_error(&empty, StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn the_sync_follows_changed_attributes_and_suspends_people_the_directory_dropped() {
    let slapd = directory_with_alice();
    slapd.add_person("bob", "bob's password", "bob@example.org", "Bob");
    slapd.add_person("carol", "carol's password", "carol@example.org", "Carol");
    let api = app_with(&slapd, |ldap| {
        ldap.sync_interval_secs = 1;
        ldap.disabled_filter = Some("(description=disabled)".into());
    })
    .await;
    let alice = me(&api, &ldap_session(&api, "alice", ALICE_PASSWORD).await).await;
    let bob_tokens = ldap_session(&api, "bob", "bob's password").await;
    let bob = me(&api, &bob_tokens).await;
    let carol = me(&api, &ldap_session(&api, "carol", "carol's password").await).await;

    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: mail\nmail: alice@new.example.org\n",
        Slapd::person_dn("alice")
    ));
    slapd.delete(&Slapd::person_dn("bob"));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: description\ndescription: disabled\n",
        Slapd::person_dn("carol")
    ));

    let alice_id = alice["id"].as_str().expect("id");
    let bob_id = bob["id"].as_str().expect("id");
    let synced = until_user(&api, alice_id, "synced", |user| {
        user["email"] == "alice@new.example.org"
    })
    .await;
    assert_eq!(synced["status"], "active");
    let carol_id = carol["id"].as_str().expect("id");
    for id in [bob_id, carol_id] {
        until_user(&api, id, "suspended", |user| user["status"] == "suspended").await;
    }

    // Bob's session ended with the suspension, and his password opens nothing any more.
    let access = bob_tokens["access_token"].as_str().expect("access");
    let (status, _) = api
        .call_with_session("GET", "/api/v1/users/me", access)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refresh = bob_tokens["refresh_token"].as_str().expect("refresh");
    assert_eq!(api.refresh(refresh).await.0, StatusCode::UNAUTHORIZED);
    slapd.add_person("bob", "bob's password", "bob@example.org", "Bob");
    let again = ldap_login(&api, "bob", "bob's password").await;
    assert_error(&again, StatusCode::UNAUTHORIZED, "invalid_credentials");
}

#[tokio::test]
async fn a_user_suspended_here_stays_refused_whatever_the_directory_says() {
    let slapd = directory_with_alice();
    let api = app_with(&slapd, |_| {}).await;
    let alice = me(&api, &ldap_session(&api, "alice", ALICE_PASSWORD).await).await;
    let id = alice["id"].as_str().expect("id");
    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/users/{id}"),
            Some(json!({"status": "suspended"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let answer = ldap_login(&api, "alice", ALICE_PASSWORD).await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(user(&api, id).await["status"], "suspended");
}

#[tokio::test]
async fn a_directory_login_does_not_take_over_a_local_account() {
    let slapd = directory_with_alice();
    let api = app_with(&slapd, |_| {}).await;
    api.create_user_with(json!({"username": "Alice", "password": PASSWORD}))
        .await;

    let answer = ldap_login(&api, "alice", ALICE_PASSWORD).await;
    assert_error(&answer, StatusCode::CONFLICT, "account_conflict");
    let local = login(&api, "alice", PASSWORD).await;
    assert_eq!(local.status, StatusCode::OK, "{}", local.body);
}

#[tokio::test]
async fn with_the_directory_down_ldap_logins_answer_503_and_local_logins_work() {
    let mut slapd = directory_with_alice();
    let api = app_with(&slapd, |_| {}).await;
    api.create_user_with(json!({"username": "carol", "password": PASSWORD}))
        .await;
    ldap_session(&api, "alice", ALICE_PASSWORD).await;

    slapd.stop();
    let answer = ldap_login(&api, "alice", ALICE_PASSWORD).await;
    assert_error(&answer, StatusCode::SERVICE_UNAVAILABLE, "ldap_unavailable");
    let local = login(&api, "carol", PASSWORD).await;
    assert_eq!(local.status, StatusCode::OK, "{}", local.body);

    slapd.resume();
    ldap_session(&api, "alice", ALICE_PASSWORD).await;
}

#[tokio::test]
async fn with_the_cache_enabled_the_last_accepted_password_works_while_the_directory_is_down() {
    let mut slapd = directory_with_alice();
    slapd.add_person("bob", "bob's password", "bob@example.org", "Bob");
    let api = app_with(&slapd, |ldap| {
        ldap.on_unavailable = OnUnavailableConfig::Cached;
        ldap.cached_max_age_secs = 3600;
    })
    .await;
    let tokens = ldap_session(&api, "alice", ALICE_PASSWORD).await;
    let alice = me(&api, &tokens).await;

    slapd.stop();
    let cached = ldap_session(&api, "alice", ALICE_PASSWORD).await;
    assert_eq!(me(&api, &cached).await["id"], alice["id"]);
    let wrong = ldap_login(&api, "alice", "not alice's password").await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_credentials");
    // Bob never logged in: there is nothing to check his password against.
    let bob = ldap_login(&api, "bob", "bob's password").await;
    assert_error(&bob, StatusCode::SERVICE_UNAVAILABLE, "ldap_unavailable");
}

#[tokio::test]
async fn a_cached_verifier_older_than_its_maximum_age_opens_nothing() {
    let mut slapd = directory_with_alice();
    let api = app_with(&slapd, |ldap| {
        ldap.on_unavailable = OnUnavailableConfig::Cached;
        ldap.cached_max_age_secs = 1;
    })
    .await;
    ldap_session(&api, "alice", ALICE_PASSWORD).await;

    slapd.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stale = ldap_login(&api, "alice", ALICE_PASSWORD).await;
    assert_error(&stale, StatusCode::SERVICE_UNAVAILABLE, "ldap_unavailable");
}

#[tokio::test]
async fn starttls_and_ldaps_trust_only_the_configured_ca() {
    let slapd = directory_with_alice();
    let starttls = app_with(&slapd, |ldap| {
        ldap.starttls = true;
        ldap.ca_file = Some(slapd.ca_file());
    })
    .await;
    ldap_session(&starttls, "alice", ALICE_PASSWORD).await;

    let ldaps = app_with(&slapd, |ldap| {
        ldap.url = slapd.ldaps_url();
        ldap.ca_file = Some(slapd.ca_file());
    })
    .await;
    ldap_session(&ldaps, "alice", ALICE_PASSWORD).await;

    for (url, starttls) in [(slapd.ldaps_url(), false), (slapd.url(), true)] {
        let untrusted = app_with(&slapd, |ldap| {
            ldap.url = url;
            ldap.starttls = starttls;
            ldap.ca_file = Some(slapd.other_ca_file());
        })
        .await;
        let answer = ldap_login(&untrusted, "alice", ALICE_PASSWORD).await;
        assert_error(&answer, StatusCode::SERVICE_UNAVAILABLE, "ldap_unavailable");
    }
}
