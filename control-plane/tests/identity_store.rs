//! Storage of local accounts and the sessions a person manages, against SQLite and Postgres:
//! names unique whatever their case, the cap on live sessions, ending the other sessions,
//! re-hashed passwords, and the migration that refuses names clashing in case.

mod support;

use chrono::Duration;
use serde_json::json;
use support::records::stored_user;
use support::{against_both_databases, stale_since, TestDatabase};
use tollgate::accounts::api_key::{KeyHasher, PlainApiKey};
use tollgate::accounts::user::{Role, User, UserStatus};
use tollgate::changes::audit::AuditEntry;
use tollgate::changes::feed::Stale;
use tollgate::domain::ids::SessionId;
use tollgate::domain::{now, Timestamp};
use tollgate::identity::session::{LoginMethod, Session};
use tollgate::store::{ChangeFeed, SessionStore, SqlStore, StoreError, UserStore};

against_both_databases!(
    usernames_and_emails_are_unique_whatever_their_case,
    a_login_past_the_cap_ends_the_oldest_sessions_for_the_data_plane_too,
    a_password_change_ends_every_session_but_the_current_one,
    a_re_hashed_password_replaces_only_the_hash_it_was_checked_against,
    a_refresh_marks_the_session_used,
    a_session_without_last_use_reads_as_used_when_created,
    a_password_change_loses_to_an_admin_change_made_meanwhile,
    an_admin_reset_sets_only_the_password,
    migrating_refuses_names_that_clash_in_case_and_names_them,
);

fn user(username: &str, email: &str) -> User {
    stored_user(username, email)
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(None, action, "target", json!({}))
}

fn session_of(owner: &User, created_at: Timestamp) -> Session {
    let refresh = PlainApiKey::generate("tgr", &owner.id);
    Session {
        id: SessionId::generate(),
        user_id: owner.id.clone(),
        refresh_hash: KeyHasher::new(b"a test secret that is long enough").hash(&refresh.digest()),
        method: LoginMethod::Local,
        address: Some("192.0.2.1".to_string()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0".to_string()),
        created_at,
        last_used_at: created_at,
        refresh_expires_at: created_at + Duration::days(30),
        revoked_at: None,
    }
}

async fn stored(store: &dyn UserStore, user: &User) {
    store
        .create_user(user, &audit("user.created"))
        .await
        .expect("user");
}

async fn usernames_and_emails_are_unique_whatever_their_case(db: TestDatabase) {
    let store = db.open().await;
    let alice = user("alice", "alice@example.com");
    stored(&store, &alice).await;

    let same_name = store
        .create_user(&user("Alice", "other@example.com"), &audit("user.created"))
        .await;
    assert!(
        matches!(same_name, Err(StoreError::Conflict("username"))),
        "{same_name:?}"
    );
    let same_email = store
        .create_user(&user("alicia", "ALICE@Example.com"), &audit("user.created"))
        .await;
    assert!(
        matches!(same_email, Err(StoreError::Conflict("email"))),
        "{same_email:?}"
    );
    let mut bob = user("bob", "bob@example.com");
    stored(&store, &bob).await;
    bob.email = Some("Alice@example.com".to_string());
    let taken = store.update_user(&bob, &audit("user.updated")).await;
    assert!(
        matches!(taken, Err(StoreError::Conflict("email"))),
        "{taken:?}"
    );

    let found = store.user_by_username("ALICE").await.expect("by any case");
    assert_eq!(found.id, alice.id);
    assert_eq!(found.username, "alice", "the name is kept as written");
}

async fn a_login_past_the_cap_ends_the_oldest_sessions_for_the_data_plane_too(db: TestDatabase) {
    let store = db.open().await;
    let owner = user("capped", "capped@example.com");
    stored(&store, &owner).await;
    let start = now() - Duration::minutes(10);
    let older: Vec<Session> = (0..3)
        .map(|n| session_of(&owner, start + Duration::minutes(n)))
        .collect();
    for session in &older {
        store
            .create_session(session, &audit("session.created"))
            .await
            .expect("session");
    }
    let cursor = store.latest_change().await.expect("latest");
    let tokens_expire_at = now().timestamp() + 900;

    let newest = session_of(&owner, now());
    let ended = store
        .create_session_within_cap(&newest, 2, tokens_expire_at, &audit("session.created"))
        .await
        .expect("within the cap");

    assert_eq!(ended, vec![older[1].id.clone(), older[0].id.clone()]);
    let live: Vec<SessionId> = store
        .live_sessions_of(&owner.id, now())
        .await
        .expect("live")
        .into_iter()
        .map(|session| session.id)
        .collect();
    assert_eq!(live, vec![newest.id.clone(), older[2].id.clone()]);
    assert_eq!(
        stale_since(&store, cursor).await,
        vec![
            Stale::Session {
                id: older[1].id.clone(),
                tokens_expire_at
            },
            Stale::Session {
                id: older[0].id.clone(),
                tokens_expire_at
            },
        ]
    );
}

async fn a_password_change_ends_every_session_but_the_current_one(db: TestDatabase) {
    let store = db.open().await;
    let owner = user("changing", "changing@example.com");
    stored(&store, &owner).await;
    let current = session_of(&owner, now());
    let other = session_of(&owner, now());
    for session in [&current, &other] {
        store
            .create_session(session, &audit("session.created"))
            .await
            .expect("session");
    }
    let verified = owner.password_hash.clone().expect("a stored password");
    store
        .change_own_password(
            &owner.id,
            &verified,
            "$argon2id$new",
            now(),
            Some(&current.id),
            now().timestamp() + 900,
            &audit("user.password_changed"),
        )
        .await
        .expect("change");

    let live = store
        .live_sessions_of(&owner.id, now())
        .await
        .expect("live");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, current.id);
    assert_eq!(live[0], current, "the session reads back as written");
    let changed = store.user(&owner.id).await.expect("user");
    assert_eq!(changed.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(!changed.password_change_required);

    store
        .end_sessions(&owner.id, now(), now().timestamp() + 900, &audit("ended"))
        .await
        .expect("everywhere");
    assert!(store
        .live_sessions_of(&owner.id, now())
        .await
        .expect("live")
        .is_empty());
}

async fn a_re_hashed_password_replaces_only_the_hash_it_was_checked_against(db: TestDatabase) {
    let store = db.open().await;
    let owner = user("legacy", "legacy@example.com");
    stored(&store, &owner).await;
    let stale = store
        .replace_password_hash(&owner.id, "$2b$12$other", "$argon2id$new", &audit("rehash"))
        .await;
    assert!(matches!(stale, Err(StoreError::NotFound)), "{stale:?}");
    store
        .replace_password_hash(
            &owner.id,
            "$argon2id$old",
            "$argon2id$new",
            &audit("rehash"),
        )
        .await
        .expect("re-hash");
    let read = store.user(&owner.id).await.expect("user");
    assert_eq!(read.password_hash.as_deref(), Some("$argon2id$new"));
}

/// A stored user named `name` with a session created an hour ago.
async fn session_an_hour_old(store: &SqlStore, name: &str) -> (User, Session) {
    let owner = user(name, &format!("{name}@example.com"));
    stored(store, &owner).await;
    let session = session_of(&owner, now() - Duration::hours(1));
    store
        .create_session(&session, &audit("session.created"))
        .await
        .expect("session");
    (owner, session)
}

async fn a_refresh_marks_the_session_used(db: TestDatabase) {
    let store = db.open().await;
    let (owner, session) = session_an_hour_old(&store, "refreshing").await;
    let next = KeyHasher::new(b"a test secret that is long enough")
        .hash(&PlainApiKey::generate("tgr", &owner.id).digest());
    let before = now();
    store
        .replace_refresh_hash(
            &session.id,
            &session.refresh_hash,
            &next,
            &audit("session.refreshed"),
        )
        .await
        .expect("refresh");
    let read = store.session(&session.id).await.expect("session");
    assert!(read.last_used_at >= before, "{:?}", read.last_used_at);
    assert_eq!(read.created_at, session.created_at);
}

/// A session written by a replica older than migration 0010 has no `last_used_at`: it reads
/// as its creation.
async fn a_session_without_last_use_reads_as_used_when_created(db: TestDatabase) {
    let store = db.open().await;
    let (owner, session) = session_an_hour_old(&store, "older").await;
    db.run_raw(&[format!(
        "UPDATE sessions SET last_used_at = NULL WHERE id = '{}'",
        session.id.as_str()
    )])
    .await;
    let read = store.session(&session.id).await.expect("session");
    assert_eq!(read.last_used_at, session.created_at);
    let live = store
        .live_sessions_of(&owner.id, now())
        .await
        .expect("live");
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].last_used_at, session.created_at);
}

async fn migrating_refuses_names_that_clash_in_case_and_names_them(db: TestDatabase) {
    let store = db.open().await;
    drop(store);
    // Back to before the migration, with names an older version accepted.
    let undo = [
        "DROP INDEX users_username_lower",
        "DROP INDEX users_email_lower",
        "DELETE FROM _sqlx_migrations WHERE version = 10",
    ];
    let insert = |id: &str, name: &str| {
        format!(
            "INSERT INTO users (id, username, email, status, role, created_at, updated_at) \
             VALUES ('{id}', '{name}', '{name}@example.com', 'active', 'user', \
             '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')"
        )
    };
    let statements: Vec<String> = undo
        .iter()
        .map(|s| s.to_string())
        .chain([insert("u_1", "Bob"), insert("u_2", "bob")])
        .collect();
    db.run_raw(&statements).await;

    let chain = tollgate::changes::audit_chain::AuditChainKey::new(support::AUDIT_SECRET);
    let store = tollgate::store::SqlStore::connect(&db.url, 2, chain)
        .await
        .expect("connect");
    let error = store.migrate().await.expect_err("names clash").to_string();
    assert!(error.contains("username \"bob\""), "{error}");
    assert!(error.contains("email \"bob@example.com\""), "{error}");
}

/// `owner`'s own change of the password checked as `verified` to `$argon2id$mine`.
async fn change_own(
    store: &dyn UserStore,
    owner: &User,
    verified: &str,
    keep: Option<&SessionId>,
) -> Result<(), StoreError> {
    let expire = now().timestamp() + 900;
    let audit = audit("user.password_changed");
    store
        .change_own_password(
            &owner.id,
            verified,
            "$argon2id$mine",
            now(),
            keep,
            expire,
            &audit,
        )
        .await
}

/// The password change sets only the password, and only while the account is active with the
/// hash the current password was checked against; otherwise nothing changes.
async fn a_password_change_loses_to_an_admin_change_made_meanwhile(db: TestDatabase) {
    let store = db.open().await;
    let mut read = user("racing", "racing@example.com");
    read.role = Role::Admin;
    stored(&store, &read).await;
    let session = session_of(&read, now());
    store
        .create_session(&session, &audit("session.created"))
        .await
        .expect("session");
    let verified = read.password_hash.clone().expect("hash");

    // An admin suspends the account and demotes it while the password is checked.
    let mut admin_view = read.clone();
    admin_view.status = UserStatus::Suspended;
    admin_view.role = Role::User;
    admin_view.updated_at = now();
    store
        .update_user(&admin_view, &audit("user.updated"))
        .await
        .expect("suspended");
    let lost = change_own(&store, &read, &verified, Some(&session.id)).await;
    assert!(matches!(lost, Err(StoreError::NotFound)), "{lost:?}");
    let kept = store.user(&read.id).await.expect("user");
    assert_eq!(kept.status, UserStatus::Suspended);
    assert_eq!(kept.role, Role::User);
    assert_eq!(kept.password_hash.as_deref(), Some(verified.as_str()));

    // Active again but reset by the admin meanwhile: the old hash no longer matches.
    admin_view.status = UserStatus::Active;
    admin_view.password_hash = Some("$argon2id$reset".to_string());
    admin_view.password_change_required = true;
    store
        .update_user(&admin_view, &audit("user.updated"))
        .await
        .expect("reset");
    let lost = change_own(&store, &read, &verified, None).await;
    assert!(matches!(lost, Err(StoreError::NotFound)), "{lost:?}");
    let kept = store.user(&read.id).await.expect("user");
    assert_eq!(kept.password_hash.as_deref(), Some("$argon2id$reset"));
    assert!(kept.password_change_required);

    // Against the current hash it sets only the password, clears the flag, and ends the
    // other sessions.
    let other = session_of(&read, now());
    store
        .create_session(&other, &audit("session.created"))
        .await
        .expect("session");
    change_own(&store, &read, "$argon2id$reset", Some(&session.id))
        .await
        .expect("changed");
    let changed = store.user(&read.id).await.expect("user");
    assert_eq!(changed.password_hash.as_deref(), Some("$argon2id$mine"));
    assert!(!changed.password_change_required);
    assert_eq!(changed.role, Role::User, "the admin's demotion stays");
    let live = store.live_sessions_of(&read.id, now()).await.expect("live");
    assert_eq!(
        live.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&session.id]
    );
}

/// An admin's reset sets the password and the flag, keeps what else changed meanwhile, ends
/// every session, and is refused for a deleted user.
async fn an_admin_reset_sets_only_the_password(db: TestDatabase) {
    let store = db.open().await;
    let mut owner = user("reset", "reset@example.com");
    stored(&store, &owner).await;
    let session = session_of(&owner, now());
    store
        .create_session(&session, &audit("session.created"))
        .await
        .expect("session");
    owner.role = Role::Admin;
    owner.name = Some("Changed meanwhile".to_string());
    owner.updated_at = now();
    store
        .update_user(&owner, &audit("user.updated"))
        .await
        .expect("changed");
    let expire = now().timestamp() + 900;
    store
        .reset_password(
            &owner.id,
            "$argon2id$temporary",
            now(),
            expire,
            &audit("user.password_reset"),
        )
        .await
        .expect("reset");
    let reset = store.user(&owner.id).await.expect("user");
    assert_eq!(reset.password_hash.as_deref(), Some("$argon2id$temporary"));
    assert!(reset.password_change_required);
    assert_eq!(reset.role, Role::Admin);
    assert_eq!(reset.name.as_deref(), Some("Changed meanwhile"));
    assert!(store
        .live_sessions_of(&owner.id, now())
        .await
        .expect("live")
        .is_empty());

    let mut owner = reset;
    owner.status = UserStatus::Deleted;
    owner.updated_at = now();
    store
        .update_user(&owner, &audit("user.deleted"))
        .await
        .expect("deleted");
    let refused = store
        .reset_password(&owner.id, "$argon2id$again", now(), expire, &audit("r"))
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
    assert_eq!(
        store
            .user(&owner.id)
            .await
            .expect("user")
            .password_hash
            .as_deref(),
        Some("$argon2id$temporary")
    );
}
