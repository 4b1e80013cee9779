//! One storage suite, run against SQLite and against Postgres.

mod support;

use serde_json::json;
use support::TestDatabase;
use tollgate::domain::api_key::{ApiKey, KeyHasher, KeyStatus, PlainApiKey};
use tollgate::domain::audit::AuditEntry;
use tollgate::domain::ids::UserId;
use tollgate::domain::now;
use tollgate::domain::user::{Role, User, UserStatus};
use tollgate::store::{Store, StoreError, UserQuery};

fn user(username: &str) -> User {
    let at = now();
    User {
        id: UserId::generate(),
        username: username.to_string(),
        email: Some(format!("{username}@example.com")),
        name: Some(username.to_uppercase()),
        status: UserStatus::Active,
        role: Role::User,
        tenant_id: None,
        groups: Vec::new(),
        password_hash: None,
        created_at: at,
        updated_at: at,
    }
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(None, action, "target", json!({"test": true}))
}

fn hasher() -> KeyHasher {
    KeyHasher::new(b"a test secret that is long enough")
}

macro_rules! against_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::TestDatabase::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::TestDatabase::postgres().await).await;
                }
            )*
        }
    };
}

against_both_databases!(
    users_round_trip_and_usernames_are_unique,
    listing_filters_by_text_and_status_and_pages,
    keys_are_found_by_hash_in_any_state,
    rotation_revokes_the_old_key_and_adds_the_new_one_atomically,
    every_write_leaves_an_audit_entry,
    data_survives_a_restart,
);

async fn users_round_trip_and_usernames_are_unique(db: TestDatabase) {
    let store = db.open().await;
    let alice = user("alice");
    store
        .create_user(&alice, &audit("user.created"))
        .await
        .expect("create");
    assert_eq!(store.user(&alice.id).await.expect("by id"), alice);
    assert_eq!(
        store.user_by_username("alice").await.expect("by name"),
        alice
    );

    let duplicate = store
        .create_user(&user("alice"), &audit("user.created"))
        .await;
    assert!(
        matches!(duplicate, Err(StoreError::Conflict(_))),
        "{duplicate:?}"
    );

    let mut changed = alice.clone();
    changed.status = UserStatus::Suspended;
    changed.email = None;
    store
        .update_user(&changed, &audit("user.updated"))
        .await
        .expect("update");
    assert_eq!(store.user(&alice.id).await.expect("reread"), changed);

    let missing = store.user(&UserId::generate()).await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
}

async fn listing_filters_by_text_and_status_and_pages(db: TestDatabase) {
    let store = db.open().await;
    for name in ["ann", "bob", "annette", "carl"] {
        store
            .create_user(&user(name), &audit("user.created"))
            .await
            .expect("create");
    }
    let mut suspended = user("anna_s");
    suspended.status = UserStatus::Suspended;
    store
        .create_user(&suspended, &audit("user.created"))
        .await
        .expect("create");

    let query = |text: Option<&str>, status, offset, limit| UserQuery {
        text: text.map(str::to_string),
        status,
        offset,
        limit,
    };
    let all = store.users(&query(None, None, 0, 50)).await.expect("all");
    assert_eq!(all.total, 5);
    let anns = store
        .users(&query(Some("ANN"), None, 0, 50))
        .await
        .expect("text");
    assert_eq!(anns.total, 3);
    let active_anns = store
        .users(&query(Some("ann"), Some(UserStatus::Active), 0, 50))
        .await
        .expect("text and status");
    assert_eq!(active_anns.total, 2);
    let second_page = store.users(&query(None, None, 2, 2)).await.expect("page");
    assert_eq!(second_page.total, 5);
    assert_eq!(second_page.items.len(), 2);
    assert_eq!(
        second_page.items,
        all.items[2..4].to_vec(),
        "pages follow one order"
    );
    let literal_underscore = store
        .users(&query(Some("a_s"), None, 0, 50))
        .await
        .expect("like");
    assert_eq!(literal_underscore.total, 1, "_ is matched literally");
}

async fn keys_are_found_by_hash_in_any_state(db: TestDatabase) {
    let store = db.open().await;
    let owner = user("keyholder");
    store
        .create_user(&owner, &audit("user.created"))
        .await
        .expect("user");
    let plain = PlainApiKey::generate("tg", &owner.id);
    let key = ApiKey::new(
        owner.id.clone(),
        "primary".into(),
        &plain,
        &hasher(),
        None,
        vec!["/v1".into()],
    );
    store
        .create_key(&key, &audit("api_key.created"))
        .await
        .expect("key");

    let found = store
        .key_by_hash(&hasher().hash(&plain.digest()))
        .await
        .expect("found");
    assert_eq!(found.key, key);
    assert_eq!(found.user, owner);

    store
        .revoke_key(&key.id, now(), &audit("api_key.revoked"))
        .await
        .expect("revoke");
    let revoked = store.key_by_hash(&key.hash).await.expect("still found");
    assert_eq!(revoked.key.status, KeyStatus::Revoked);
    assert!(revoked.key.revoked_at.is_some());
    let again = store
        .revoke_key(&key.id, now(), &audit("api_key.revoked"))
        .await;
    assert!(
        matches!(again, Err(StoreError::NotFound)),
        "only active keys revoke"
    );

    let stranger = PlainApiKey::from_client("unknown".into());
    let unknown = store.key_by_hash(&hasher().hash(&stranger.digest())).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)));
}

async fn rotation_revokes_the_old_key_and_adds_the_new_one_atomically(db: TestDatabase) {
    let store = db.open().await;
    let owner = user("rotator");
    store
        .create_user(&owner, &audit("user.created"))
        .await
        .expect("user");
    let old_plain = PlainApiKey::generate("tg", &owner.id);
    let old = ApiKey::new(
        owner.id.clone(),
        "k".into(),
        &old_plain,
        &hasher(),
        None,
        vec![],
    );
    store
        .create_key(&old, &audit("api_key.created"))
        .await
        .expect("old");

    let new_plain = PlainApiKey::generate("tg", &owner.id);
    let new = ApiKey::new(
        owner.id.clone(),
        "k".into(),
        &new_plain,
        &hasher(),
        None,
        vec![],
    );
    store
        .rotate_key(&old.id, &new, now(), &audit("api_key.rotated"))
        .await
        .expect("rotate");
    let keys = store.keys_of(&owner.id).await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(
        keys.iter()
            .filter(|k| k.status == KeyStatus::Active)
            .count(),
        1
    );

    // Rotating the now-revoked key again must change nothing, not even add the new key.
    let third_plain = PlainApiKey::generate("tg", &owner.id);
    let third = ApiKey::new(
        owner.id.clone(),
        "k".into(),
        &third_plain,
        &hasher(),
        None,
        vec![],
    );
    let refused = store
        .rotate_key(&old.id, &third, now(), &audit("api_key.rotated"))
        .await;
    assert!(matches!(refused, Err(StoreError::NotFound)));
    assert_eq!(store.keys_of(&owner.id).await.expect("keys").len(), 2);
}

async fn every_write_leaves_an_audit_entry(db: TestDatabase) {
    let store = db.open().await;
    let owner = user("audited");
    store
        .create_user(&owner, &audit("user.created"))
        .await
        .expect("user");
    let plain = PlainApiKey::generate("tg", &owner.id);
    let key = ApiKey::new(
        owner.id.clone(),
        "k".into(),
        &plain,
        &hasher(),
        None,
        vec![],
    );
    store
        .create_key(&key, &audit("api_key.created"))
        .await
        .expect("key");
    let failed = store
        .create_user(&user("audited"), &audit("user.created"))
        .await;
    assert!(failed.is_err());

    let page = store.audit_entries(0, 10).await.expect("audit");
    assert_eq!(page.total, 2, "the failed write left no entry");
    let actions: Vec<_> = page.items.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"user.created") && actions.contains(&"api_key.created"));
    assert_eq!(page.items[0].details, json!({"test": true}));
}

async fn data_survives_a_restart(db: TestDatabase) {
    let owner = user("durable");
    {
        let store = db.open().await;
        store
            .create_user(&owner, &audit("user.created"))
            .await
            .expect("user");
    }
    let reopened = db.open().await;
    assert_eq!(
        reopened.user(&owner.id).await.expect("after restart"),
        owner
    );
    assert_eq!(reopened.migrate().await.expect("migrate again"), 0);
}
