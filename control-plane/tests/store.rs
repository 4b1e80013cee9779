//! One storage suite, run against SQLite and against Postgres.

mod support;

use serde_json::json;
use support::records::stored_group;
use support::{against_both_databases, TestDatabase};
use tollgate::accounts::api_key::{ApiKey, KeyHasher, KeyStatus, PlainApiKey};
use tollgate::accounts::group::Group;
use tollgate::accounts::ip_allowlist::IpAllowlist;
use tollgate::accounts::user::{Role, User, UserStatus};
use tollgate::changes::audit::AuditEntry;
use tollgate::changes::feed::Stale;
use tollgate::changes::routing::Rerouted;
use tollgate::domain::ids::{BackendId, SessionId, UserId};
use tollgate::domain::now;
use tollgate::identity::lockout::FailureRecord;
use tollgate::identity::sealing::Sealer;
use tollgate::identity::session::{LoginMethod, Session};
use tollgate::identity::signing::{SigningAlgorithm, SigningKeyRecord};
use tollgate::limits::quota::{EffectiveQuotas, Period, QuotaName, Quotas, Usage, BYTES_PER_MB};
use tollgate::limits::rate_limits::{LimitMode, RateLimits};
use tollgate::routing::backend::{
    Backend, BackendHealth, BackendUrl, CheckedHealth, HealthStatus, Weight,
};
use tollgate::routing::pool::{HealthCheckSettings, PoolName};
use tollgate::routing::upstream_tls::TrustedCa;
use tollgate::store::{
    AuditLog, BackendStore, ChangeFeed, CheckerLease, GroupStore, HealthCheckStore, KeyStore,
    LoginFailureStore, RoutingFeed, SessionStore, Store, StoreError, UsageEntry, UsageOutcome,
    UsageStore, UserQuery, UserStore,
};

fn user(username: &str) -> User {
    User {
        email: Some(format!("{username}@example.com")),
        name: Some(username.to_uppercase()),
        ip_allowlist: IpAllowlist::try_from(vec![
            "10.0.0.0/8".to_string(),
            "2001:db8::/32".to_string(),
        ])
        .expect("a valid allowlist"),
        ..User::new(UserId::generate(), username.to_string(), Role::User, now())
    }
}

fn pool_name(name: &str) -> PoolName {
    PoolName::parse(name).expect("a valid pool name")
}

fn weight(weight: u32) -> Weight {
    Weight::try_from(weight).expect("a valid weight")
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(None, action, "target", json!({"test": true}))
}

fn hasher() -> KeyHasher {
    KeyHasher::new(b"a test secret that is long enough")
}

against_both_databases!(
    users_round_trip_and_usernames_are_unique,
    listing_filters_by_text_and_status_and_pages,
    keys_are_found_by_hash_in_any_state,
    rotation_revokes_the_old_key_and_adds_the_new_one_atomically,
    every_write_leaves_an_audit_entry,
    data_survives_a_restart,
    the_change_feed_records_what_became_stale_in_order,
    sessions_round_trip_and_refresh_tokens_are_replaced_once,
    ending_a_user_s_sessions_ends_theirs_and_names_those_with_live_tokens,
    a_new_signing_key_retires_the_others,
    group_membership_orders_by_priority_and_stales_members,
    backends_round_trip_with_their_health,
    backends_are_counted_and_paged_by_the_database,
    concurrent_writes_all_commit,
    limit_and_quota_settings_round_trip,
    a_usage_batch_applied_twice_counts_once,
    usage_survives_reopening_the_store,
    reaching_a_quota_records_one_change_and_one_audit_entry,
    freeing_storage_below_its_quota_records_a_change,
    a_new_period_starts_from_zero,
    storage_never_drops_below_zero,
    login_failures_are_written_only_over_what_was_read,
    health_is_stored_only_for_the_settings_it_was_checked_with,
    the_routing_feed_names_each_backend_pool_and_group_changed,
    health_checker_leases_are_renewed_and_the_expired_forgotten,
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
        ..UserQuery::default()
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
        .rotate_key(&old.id, &new, now(), None, &audit("api_key.rotated"))
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
        .rotate_key(&old.id, &third, now(), None, &audit("api_key.rotated"))
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

async fn the_change_feed_records_what_became_stale_in_order(db: TestDatabase) {
    let store = db.open().await;
    assert_eq!(store.latest_change().await.expect("latest"), 0);
    let mut owner = user("changing");
    store
        .create_user(&owner, &audit("user.created"))
        .await
        .expect("user");
    assert_eq!(
        store.latest_change().await.expect("latest"),
        0,
        "creating stales nothing"
    );

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
    owner.status = UserStatus::Suspended;
    store
        .update_user(&owner, &audit("user.updated"))
        .await
        .expect("suspend");
    store
        .revoke_key(&key.id, now(), &audit("api_key.revoked"))
        .await
        .expect("revoke");
    let session = session_of(&owner);
    store
        .create_session(&session, &audit("session.created"))
        .await
        .expect("session");
    let expired_session = session_of(&owner);
    store
        .create_session(&expired_session, &audit("session.created"))
        .await
        .expect("session");
    let now_secs = now().timestamp();
    store
        .revoke_session(&session.id, now(), now_secs + 600, &audit("session.ended"))
        .await
        .expect("end session");
    store
        .revoke_session(
            &expired_session.id,
            now(),
            now_secs - 1,
            &audit("session.ended"),
        )
        .await
        .expect("end session");

    let changes = store.changes_since(0, 100).await.expect("changes");
    let stale: Vec<Stale> = changes.iter().map(|c| c.stale.clone()).collect();
    assert_eq!(
        stale,
        vec![
            Stale::User(owner.id.clone()),
            Stale::Key(key.id.clone()),
            Stale::Session {
                id: session.id.clone(),
                tokens_expire_at: now_secs + 600
            },
            Stale::Session {
                id: expired_session.id.clone(),
                tokens_expire_at: now_secs - 1
            },
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let latest = store.latest_change().await.expect("latest");
    assert_eq!(latest, changes[3].cursor);
    let after_first = store
        .changes_since(changes[0].cursor, 2)
        .await
        .expect("page");
    assert_eq!(after_first, changes[1..3].to_vec());
    let live = store
        .live_session_revocations(now_secs)
        .await
        .expect("live");
    assert_eq!(
        live,
        vec![changes[2].clone()],
        "expired revocations are no longer sent"
    );
}

fn session_of(owner: &User) -> Session {
    let refresh = PlainApiKey::generate("tgr", &owner.id);
    Session {
        id: SessionId::generate(),
        user_id: owner.id.clone(),
        refresh_hash: hasher().hash(&refresh.digest()),
        method: LoginMethod::Local,
        address: Some("192.0.2.1".to_string()),
        user_agent: Some("curl/8.5.0".to_string()),
        created_at: now(),
        last_used_at: now(),
        refresh_expires_at: now() + chrono::Duration::days(30),
        revoked_at: None,
    }
}

async fn sessions_round_trip_and_refresh_tokens_are_replaced_once(db: TestDatabase) {
    let store = db.open().await;
    let owner = user("sessioned");
    store
        .create_user(&owner, &audit("user.created"))
        .await
        .expect("user");
    let session = session_of(&owner);
    store
        .create_session(&session, &audit("session.created"))
        .await
        .expect("session");
    assert_eq!(store.session(&session.id).await.expect("by id"), session);
    assert_eq!(
        store
            .session_by_refresh_hash(&session.refresh_hash)
            .await
            .expect("by hash"),
        session
    );
    let next = hasher().hash(&PlainApiKey::generate("tgr", &owner.id).digest());
    store
        .replace_refresh_hash(
            &session.id,
            &session.refresh_hash,
            &next,
            &audit("session.refreshed"),
        )
        .await
        .expect("replace");
    let replay = store
        .replace_refresh_hash(
            &session.id,
            &session.refresh_hash,
            &next,
            &audit("session.refreshed"),
        )
        .await;
    assert!(
        matches!(replay, Err(StoreError::NotFound)),
        "an old token replaced nothing"
    );
    let gone = store.session_by_refresh_hash(&session.refresh_hash).await;
    assert!(matches!(gone, Err(StoreError::NotFound)));
    let retired = store
        .session_by_retired_refresh_hash(&session.refresh_hash)
        .await
        .expect("the replaced token is remembered");
    assert_eq!(retired.id, session.id);
    assert_eq!(retired.refresh_hash, next);
}

async fn ending_a_user_s_sessions_ends_theirs_and_names_those_with_live_tokens(db: TestDatabase) {
    let store = db.open().await;
    let mut owner = user("ending");
    let bystander = user("bystander");
    for user in [&owner, &bystander] {
        store
            .create_user(user, &audit("user.created"))
            .await
            .expect("user");
    }
    let live = session_of(&owner);
    let long_expired = Session {
        refresh_expires_at: now() - chrono::Duration::days(2),
        ..session_of(&owner)
    };
    let already_ended = session_of(&owner);
    let others = session_of(&bystander);
    for session in [&live, &long_expired, &already_ended, &others] {
        store
            .create_session(session, &audit("session.created"))
            .await
            .expect("session");
    }
    let tokens_expire_at = now().timestamp() + 900;
    store
        .revoke_session(
            &already_ended.id,
            now(),
            tokens_expire_at,
            &audit("session.ended"),
        )
        .await
        .expect("logout");
    let cursor = store.latest_change().await.expect("latest");

    owner.status = UserStatus::Suspended;
    owner.updated_at = now();
    store
        .update_user_ending_sessions(&owner, tokens_expire_at, &audit("user.updated"))
        .await
        .expect("suspend");

    let stale: Vec<Stale> = store
        .changes_since(cursor, 100)
        .await
        .expect("changes")
        .into_iter()
        .map(|change| change.stale)
        .collect();
    assert_eq!(
        stale,
        vec![
            Stale::User(owner.id.clone()),
            Stale::Session {
                id: live.id.clone(),
                tokens_expire_at
            },
        ]
    );
    for ended in [&live, &long_expired] {
        let stored = store.session(&ended.id).await.expect("session");
        assert_eq!(stored.revoked_at, Some(owner.updated_at));
    }
    let stored = store.session(&others.id).await.expect("session");
    assert!(stored.is_live(now()), "another user's session lives on");
}

async fn a_new_signing_key_retires_the_others(db: TestDatabase) {
    let store = db.open().await;
    let sealer = Sealer::new(b"a test secret that is long enough");
    let at = now();
    let first = SigningKeyRecord::generate(SigningAlgorithm::EdDSA, &sealer, at, at).expect("key");
    store
        .add_signing_key(&first, None, &audit("signing_key.created"))
        .await
        .expect("add");
    let later = at + chrono::Duration::seconds(60);
    let second =
        SigningKeyRecord::generate(SigningAlgorithm::EdDSA, &sealer, at, later).expect("key");
    let retire_at = later + chrono::Duration::seconds(900);
    store
        .add_signing_key(&second, Some(retire_at), &audit("signing_key.created"))
        .await
        .expect("add");
    let keys = store.signing_keys().await.expect("keys");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].kid, second.kid, "newest first");
    assert_eq!(keys[0].retires_at, None);
    assert_eq!(keys[1].retires_at, Some(retire_at));
    assert_eq!(keys[1].public, first.public);
    assert_eq!(
        keys[1].private_pem(&sealer).expect("unseal"),
        first.private_pem(&sealer).expect("unseal")
    );
}

fn group(name: &str, priority: i32, pools: &[&str]) -> Group {
    Group {
        priority,
        pools: pools.iter().map(|p| pool_name(p)).collect(),
        ..stored_group(name)
    }
}

async fn group_membership_orders_by_priority_and_stales_members(db: TestDatabase) {
    let store = db.open().await;
    let member = user("grouped");
    store
        .create_user(&member, &audit("user.created"))
        .await
        .expect("user");
    let low = group("low", 1, &["slow"]);
    let high = group("high", 10, &["fast", "spare"]);
    store
        .create_group(&low, &audit("group.created"))
        .await
        .expect("group");
    store
        .create_group(&high, &audit("group.created"))
        .await
        .expect("group");
    let duplicate = store
        .create_group(&group("low", 0, &[]), &audit("group.created"))
        .await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))));

    store
        .add_member(&low.id, &member.id, &audit("group.member_added"))
        .await
        .expect("add");
    store
        .add_member(&high.id, &member.id, &audit("group.member_added"))
        .await
        .expect("add");
    let again = store
        .add_member(&low.id, &member.id, &audit("group.member_added"))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))));

    let groups = store.groups_of(&member.id).await.expect("groups");
    assert_eq!(
        groups,
        vec![high.clone(), low.clone()],
        "highest priority first"
    );
    let reread = store.user(&member.id).await.expect("user");
    assert_eq!(reread.groups, vec![high.id.to_string(), low.id.to_string()]);

    let before = store.latest_change().await.expect("cursor");
    let mut changed = high.clone();
    changed.pools = vec![pool_name("spare")];
    store
        .update_group(&changed, &audit("group.updated"))
        .await
        .expect("update");
    let changes = store.changes_since(before, 10).await.expect("changes");
    assert_eq!(
        changes.last().map(|c| c.stale.clone()),
        Some(Stale::User(member.id.clone()))
    );

    store
        .delete_group(&low.id, &audit("group.deleted"))
        .await
        .expect("delete");
    assert_eq!(
        store.groups_of(&member.id).await.expect("groups"),
        vec![changed]
    );
    assert_eq!(
        store.members(&high.id).await.expect("members"),
        vec![member.id.clone()]
    );
    store
        .remove_member(&high.id, &member.id, &audit("group.member_removed"))
        .await
        .expect("remove");
    assert!(store
        .groups_of(&member.id)
        .await
        .expect("groups")
        .is_empty());
}

async fn backends_round_trip_with_their_health(db: TestDatabase) {
    let store = db.open().await;
    let backend = Backend {
        id: BackendId::generate(),
        url: BackendUrl::parse("https://api.example.com:8443").expect("url"),
        weight: weight(70),
        health_check_path: "/healthz".into(),
        pool: pool_name("default"),
        enabled: true,
        tls_sni: Some("internal.example.com".into()),
        tls_ca: Some(
            TrustedCa::parse(include_str!("../../tests/fixtures/upstream-tls/ca.pem")).expect("CA"),
        ),
        tls_insecure: false,
        health: BackendHealth::default(),
        created_at: now(),
        updated_at: now(),
    };
    store
        .create_backend(&backend, &audit("backend.created"))
        .await
        .expect("create");
    assert_eq!(store.backend(&backend.id).await.expect("read"), backend);

    let health = BackendHealth::default().after_check(Err("refused".into()), now(), 1, 2);
    assert_eq!(health.status, HealthStatus::Unhealthy);
    assert_eq!(
        store
            .record_health_changes(&[(checked(&backend, &health), audit("backend.health_changed"))])
            .await
            .expect("health"),
        vec![true]
    );
    let mut changed = store.backend(&backend.id).await.expect("read");
    assert_eq!(changed.health, health);
    changed.weight = weight(30);
    changed.enabled = false;
    changed.tls_ca = None;
    changed.tls_insecure = true;
    store
        .update_backend(&changed, &audit("backend.updated"))
        .await
        .expect("update");
    assert_eq!(store.backends().await.expect("all"), vec![changed.clone()]);
    store
        .delete_backend(&backend.id, &audit("backend.deleted"))
        .await
        .expect("delete");
    assert!(matches!(
        store.backend(&backend.id).await,
        Err(StoreError::NotFound)
    ));

    let settings = HealthCheckSettings {
        interval_secs: 2,
        timeout_secs: 1,
        ..Default::default()
    };
    store
        .set_pool_settings("fast", &settings, &audit("pool.updated"))
        .await
        .expect("set");
    store
        .set_pool_settings("fast", &settings, &audit("pool.updated"))
        .await
        .expect("set twice");
    assert_eq!(
        store.pool_settings().await.expect("pools"),
        vec![("fast".to_string(), settings)]
    );
}

fn backend_in(pool: &str, host: &str) -> Backend {
    Backend {
        id: BackendId::generate(),
        url: BackendUrl::parse(&format!("http://{host}:80")).expect("url"),
        weight: weight(10),
        health_check_path: "/".into(),
        pool: pool_name(pool),
        enabled: true,
        tls_sni: None,
        tls_ca: None,
        tls_insecure: false,
        health: BackendHealth::default(),
        created_at: now(),
        updated_at: now(),
    }
}

fn plain_backend(url: &str) -> Backend {
    Backend {
        id: BackendId::generate(),
        url: BackendUrl::parse(url).expect("url"),
        weight: weight(100),
        health_check_path: "/healthz".into(),
        pool: pool_name("default"),
        enabled: true,
        tls_sni: None,
        tls_ca: None,
        tls_insecure: false,
        health: BackendHealth::default(),
        created_at: now(),
        updated_at: now(),
    }
}

async fn backends_are_counted_and_paged_by_the_database(db: TestDatabase) {
    let store = db.open().await;
    let mut disabled = backend_in("alpha", "a0.example.com");
    disabled.enabled = false;
    let mut backends = vec![disabled];
    backends.extend((1..5).map(|n| backend_in("alpha", &format!("a{n}.example.com"))));
    backends.extend((0..2).map(|n| backend_in("beta", &format!("b{n}.example.com"))));
    for backend in &backends {
        store
            .create_backend(backend, &audit("backend.created"))
            .await
            .expect("create");
    }
    let failing = BackendHealth::default().after_check(Err("refused".into()), now(), 1, 2);
    store
        .record_health_summary(&[checked(&backends[1], &failing)])
        .await
        .expect("health");

    let alpha = pool_name("alpha");
    assert_eq!(
        store.backends_in_pool(&alpha, None).await.expect("count"),
        5
    );
    assert_eq!(
        store
            .backends_in_pool(&alpha, Some(&backends[0].id))
            .await
            .expect("count"),
        4
    );
    assert_eq!(
        store
            .backends_in_pool(&pool_name("gamma"), None)
            .await
            .expect("count"),
        0
    );

    let all = store.backends().await.expect("all");
    let first = store.backend_page(0, 3).await.expect("page");
    assert_eq!((first.total, first.items.as_slice()), (7, &all[..3]));
    let last = store.backend_page(6, 3).await.expect("page");
    assert_eq!((last.total, last.items.as_slice()), (7, &all[6..]));
    assert!(store
        .backend_page(7, 3)
        .await
        .expect("page")
        .items
        .is_empty());

    let pools = store.pool_backends().await.expect("pools");
    let counted: Vec<_> = pools
        .iter()
        .map(|p| (p.pool.as_str(), p.enabled, p.available))
        .collect();
    assert_eq!(counted, vec![("alpha", 4, 3), ("beta", 2, 2)]);
}

async fn concurrent_writes_all_commit(db: TestDatabase) {
    const WRITERS: usize = 32;
    let store = std::sync::Arc::new(db.open().await);
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let store = std::sync::Arc::clone(&store);
        writers.spawn(async move {
            let backend = backend_in("busy", &format!("w{writer}.example.com"));
            store
                .create_backend(&backend, &audit("backend.created"))
                .await
                .map(|()| backend.id.as_str().to_owned())
        });
    }
    let mut created = Vec::new();
    while let Some(written) = writers.join_next().await {
        created.push(written.expect("writer").expect("every write commits"));
    }
    created.sort();
    let mut stored: Vec<_> = store
        .backends()
        .await
        .expect("all")
        .into_iter()
        .map(|b| b.id.as_str().to_owned())
        .collect();
    stored.sort();
    assert_eq!(stored, created);
}

fn checked(backend: &Backend, health: &BackendHealth) -> CheckedHealth {
    CheckedHealth {
        id: backend.id.clone(),
        settings_updated_at: backend.updated_at,
        health: health.clone(),
    }
}

async fn health_is_stored_only_for_the_settings_it_was_checked_with(db: TestDatabase) {
    let store = db.open().await;
    // More than one statement's worth, so the summary is written in several.
    let mut backends = Vec::new();
    for port in 1..=600 {
        let backend = plain_backend(&format!("http://127.0.0.1:{port}"));
        store
            .create_backend(&backend, &audit("backend.created"))
            .await
            .expect("create");
        backends.push(backend);
    }
    let mut wanted: Vec<BackendId> = backends.iter().map(|b| b.id.clone()).collect();
    wanted.push(BackendId::generate());
    let found = store.backends_by_id(&wanted).await.expect("by id");
    assert_eq!(
        found.len(),
        600,
        "every stored one, over several statements"
    );
    assert!(found.contains(&backends[599]));

    let healthy = BackendHealth::default().after_check(Ok(3), now(), 3, 1);
    assert_eq!(healthy.status, HealthStatus::Healthy);
    let first = &backends[0];
    let audited_before = store.audit_entries(0, 1).await.expect("audit").total;
    assert_eq!(
        store
            .record_health_changes(&[(checked(first, &healthy), audit("backend.health_changed"))])
            .await
            .expect("change"),
        vec![true]
    );
    assert_eq!(
        store.backend(&first.id).await.expect("read").health,
        healthy
    );
    assert_eq!(
        store.audit_entries(0, 1).await.expect("audit").total,
        audited_before + 1
    );

    let mut reweighted = backends[1].clone();
    reweighted.weight = weight(5);
    reweighted.updated_at = now() + chrono::Duration::seconds(1);
    store
        .update_backend(&reweighted, &audit("backend.updated"))
        .await
        .expect("update");
    let changes = [
        (
            checked(&backends[1], &healthy),
            audit("backend.health_changed"),
        ),
        (
            checked(&backends[2], &healthy),
            audit("backend.health_changed"),
        ),
    ];
    assert_eq!(
        store
            .record_health_changes(&changes)
            .await
            .expect("changes"),
        vec![false, true],
        "the backend changed since its check is left out"
    );
    assert_eq!(
        store.audit_entries(0, 1).await.expect("audit").total,
        audited_before + 3,
        "the update and the one recorded change are audited"
    );

    let later = healthy.after_check(Ok(7), now(), 3, 1);
    let summary: Vec<CheckedHealth> = backends.iter().map(|b| checked(b, &later)).collect();
    assert_eq!(
        store
            .record_health_summary(&summary)
            .await
            .expect("summary"),
        599
    );
    let stored = store.backends().await.expect("all");
    let changed_since = stored
        .iter()
        .find(|b| b.id == reweighted.id)
        .expect("there");
    assert_eq!(changed_since.health, BackendHealth::default());
    assert_eq!(
        stored.iter().filter(|b| b.health == later).count(),
        599,
        "every other backend has its latest check"
    );
    assert_eq!(store.record_health_summary(&[]).await.expect("nothing"), 0);
}

async fn the_routing_feed_names_each_backend_pool_and_group_changed(db: TestDatabase) {
    let store = db.open().await;
    assert_eq!(store.latest_routing_change().await.expect("latest"), 0);
    let backend = plain_backend("http://127.0.0.1:9000");
    store
        .create_backend(&backend, &audit("backend.created"))
        .await
        .expect("create");
    let healthy = BackendHealth::default().after_check(Ok(3), now(), 3, 1);
    assert_eq!(
        store
            .record_health_changes(&[(
                checked(&backend, &healthy),
                audit("backend.health_changed")
            )])
            .await
            .expect("change"),
        vec![true]
    );
    store
        .record_health_summary(&[checked(&backend, &healthy.after_check(Ok(1), now(), 3, 1))])
        .await
        .expect("summary");
    store
        .set_pool_settings(
            "fast",
            &HealthCheckSettings::default(),
            &audit("pool.updated"),
        )
        .await
        .expect("pool");
    let team = group("team", 1, &["fast"]);
    store
        .create_group(&team, &audit("group.created"))
        .await
        .expect("group");
    store
        .delete_backend(&backend.id, &audit("backend.deleted"))
        .await
        .expect("delete");

    let changes = store.routing_changes_since(0, 100).await.expect("changes");
    let named: Vec<Rerouted> = changes.iter().map(|c| c.rerouted.clone()).collect();
    assert_eq!(
        named,
        vec![
            Rerouted::Backend(backend.id.clone()),
            Rerouted::Backend(backend.id.clone()),
            Rerouted::Pool("fast".into()),
            Rerouted::Group(team.id.clone()),
            Rerouted::Backend(backend.id.clone()),
        ],
        "a summary of checks changes no status and is not in the feed"
    );
    assert!(changes
        .windows(2)
        .all(|pair| pair[0].cursor < pair[1].cursor));
    let latest = store.latest_routing_change().await.expect("latest");
    assert_eq!(latest, changes[4].cursor);
    let rest = store
        .routing_changes_since(changes[2].cursor, 1)
        .await
        .expect("rest");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].rerouted, Rerouted::Group(team.id));
}

async fn health_checker_leases_are_renewed_and_the_expired_forgotten(db: TestDatabase) {
    let store = db.open().await;
    store.renew_checker_lease("hc_a", 1_000).await.expect("a");
    store.renew_checker_lease("hc_b", 2_000).await.expect("b");
    store
        .renew_checker_lease("hc_a", 3_000)
        .await
        .expect("a again");
    let lease = |checker: &str, expires_at_ms| CheckerLease {
        checker: checker.to_string(),
        expires_at_ms,
    };
    assert_eq!(
        store.checker_leases().await.expect("leases"),
        vec![lease("hc_a", 3_000), lease("hc_b", 2_000)]
    );
    store.remove_expired_checkers(2_500).await.expect("remove");
    assert_eq!(
        store.checker_leases().await.expect("leases"),
        vec![lease("hc_a", 3_000)]
    );
}

fn period(start: &str, end: &str) -> Period {
    let parse = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&chrono::Utc)
    };
    Period {
        start: parse(start),
        end: parse(end),
    }
}

fn march() -> Period {
    period("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")
}

fn unlimited() -> EffectiveQuotas {
    EffectiveQuotas {
        monthly_requests: None,
        monthly_bandwidth_mb: None,
        storage_quota_mb: None,
        reset_day: 1,
    }
}

fn usage_of(
    user: &UserId,
    period: Period,
    requests: u64,
    bytes: u64,
    storage_bytes: i64,
) -> UsageEntry {
    UsageEntry {
        user: user.clone(),
        period,
        quotas: unlimited(),
        requests,
        bytes,
        storage_bytes,
        pool: None,
    }
}

async fn stored_user(store: &dyn Store, username: &str) -> User {
    let owner = user(username);
    store
        .create_user(&owner, &audit("user.created"))
        .await
        .expect("user");
    owner
}

async fn limit_and_quota_settings_round_trip(db: TestDatabase) {
    let store = db.open().await;
    let mut owner = user("limited");
    owner.rate_limits = RateLimits {
        requests_per_minute: Some(60),
        burst: Some(5),
        mode: Some(LimitMode::Exact),
        ..RateLimits::default()
    };
    owner.quotas = Quotas {
        monthly_requests: Some(1000),
        reset_day: Some(15),
        ..Quotas::default()
    };
    store
        .create_user(&owner, &audit("user.created"))
        .await
        .expect("user");
    assert_eq!(store.user(&owner.id).await.expect("user"), owner);
    owner.quotas.monthly_requests = None;
    owner.rate_limits.requests_per_hour = Some(600);
    store
        .update_user(&owner, &audit("user.updated"))
        .await
        .expect("update");
    assert_eq!(store.user(&owner.id).await.expect("user"), owner);

    let mut premium = group("premium", 5, &[]);
    premium.quotas.storage_quota_mb = Some(0);
    premium.rate_limits.requests_per_second = Some(10);
    store
        .create_group(&premium, &audit("group.created"))
        .await
        .expect("group");
    assert_eq!(store.group(&premium.id).await.expect("group"), premium);

    let key = ApiKey {
        rate_limits: RateLimits {
            requests_per_second: Some(3),
            ..RateLimits::default()
        },
        ..ApiKey::new(
            owner.id.clone(),
            "limited".into(),
            &PlainApiKey::generate("tg", &owner.id),
            &hasher(),
            None,
            Vec::new(),
        )
    };
    store
        .create_key(&key, &audit("api_key.created"))
        .await
        .expect("key");
    let before = store.latest_change().await.expect("cursor");
    let slower = RateLimits {
        requests_per_second: Some(1),
        ..RateLimits::default()
    };
    store
        .set_key_limits(&key.id, &slower, &audit("api_key.updated"))
        .await
        .expect("limits");
    let owned = store.keys_of(&owner.id).await.expect("keys");
    assert_eq!(owned[0].rate_limits, slower);
    let changes = store.changes_since(before, 10).await.expect("changes");
    assert_eq!(changes[0].stale, Stale::Key(key.id.clone()));
}

async fn a_usage_batch_applied_twice_counts_once(db: TestDatabase) {
    let store = db.open().await;
    let owner = stored_user(&store, "counted").await;
    let batch = [usage_of(&owner.id, march(), 3, 300, 50)];
    let first = store
        .apply_usage("batch-1", &batch, &[], now())
        .await
        .expect("apply");
    assert_eq!(first, UsageOutcome::Applied(Vec::new()));
    let again = store
        .apply_usage("batch-1", &batch, &[], now())
        .await
        .expect("retry");
    assert_eq!(again, UsageOutcome::AlreadyApplied);
    store
        .apply_usage("batch-2", &batch, &[], now())
        .await
        .expect("another batch");
    assert_eq!(
        store.usage(&owner.id, march().start).await.expect("usage"),
        Usage {
            requests: 6,
            bytes: 600,
            storage_bytes: 100
        }
    );

    let long_ago = now() - chrono::Duration::days(8);
    store
        .apply_usage("old-batch", &batch, &[], long_ago)
        .await
        .expect("old batch");
    assert_eq!(
        store
            .prune_usage_batches(now() - chrono::Duration::days(7))
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .apply_usage("batch-1", &batch, &[], now())
            .await
            .expect("retry"),
        UsageOutcome::AlreadyApplied,
        "recent batches are kept"
    );
}

async fn usage_survives_reopening_the_store(db: TestDatabase) {
    let owner = user("persistent");
    {
        let store = db.open().await;
        store
            .create_user(&owner, &audit("user.created"))
            .await
            .expect("user");
        store
            .apply_usage("b", &[usage_of(&owner.id, march(), 7, 70, 700)], &[], now())
            .await
            .expect("apply");
    }
    let reopened = db.open().await;
    assert_eq!(
        reopened
            .usage(&owner.id, march().start)
            .await
            .expect("usage"),
        Usage {
            requests: 7,
            bytes: 70,
            storage_bytes: 700
        }
    );
    assert_eq!(
        reopened
            .apply_usage("b", &[usage_of(&owner.id, march(), 7, 70, 700)], &[], now())
            .await
            .expect("retry"),
        UsageOutcome::AlreadyApplied
    );
}

const BYTES_PER_MB_I64: i64 = BYTES_PER_MB as i64;

async fn reaching_a_quota_records_one_change_and_one_audit_entry(db: TestDatabase) {
    let store = db.open().await;
    let owner = stored_user(&store, "thrifty").await;
    let quotas = EffectiveQuotas {
        monthly_requests: Some(10),
        monthly_bandwidth_mb: Some(1),
        ..unlimited()
    };
    let entry = |requests, bytes| UsageEntry {
        quotas,
        ..usage_of(&owner.id, march(), requests, bytes, 0)
    };
    let audits_before = store.audit_entries(0, 100).await.expect("audit").total;
    let cursor = store.latest_change().await.expect("cursor");

    let below = store
        .apply_usage("b1", &[entry(9, 0)], &[], now())
        .await
        .expect("apply");
    assert_eq!(below, UsageOutcome::Applied(Vec::new()));
    assert_eq!(store.latest_change().await.expect("cursor"), cursor);

    let crossing = store
        .apply_usage("b2", &[entry(1, BYTES_PER_MB / 2)], &[], now())
        .await
        .expect("apply");
    assert_eq!(
        crossing,
        UsageOutcome::Applied(vec![(owner.id.clone(), QuotaName::MonthlyRequests)])
    );
    let beyond = store
        .apply_usage("b3", &[entry(5, 0)], &[], now())
        .await
        .expect("apply");
    assert_eq!(beyond, UsageOutcome::Applied(Vec::new()), "already over");

    let changes = store.changes_since(cursor, 10).await.expect("changes");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].stale, Stale::User(owner.id.clone()));
    let audit = store.audit_entries(0, 100).await.expect("audit");
    assert_eq!(audit.total, audits_before + 1);
    assert_eq!(audit.items[0].action, "quota.exhausted");
    assert_eq!(audit.items[0].target, owner.id.as_str());
    assert_eq!(audit.items[0].details["quota"], "monthly_requests");
}

async fn freeing_storage_below_its_quota_records_a_change(db: TestDatabase) {
    let store = db.open().await;
    let owner = stored_user(&store, "hoarder").await;
    let quotas = EffectiveQuotas {
        storage_quota_mb: Some(1),
        ..unlimited()
    };
    let entry = |storage_bytes| UsageEntry {
        quotas,
        ..usage_of(&owner.id, march(), 0, 0, storage_bytes)
    };
    let full = store
        .apply_usage("fill", &[entry(2 * BYTES_PER_MB_I64)], &[], now())
        .await
        .expect("apply");
    assert_eq!(
        full,
        UsageOutcome::Applied(vec![(owner.id.clone(), QuotaName::Storage)])
    );
    let cursor = store.latest_change().await.expect("cursor");

    store
        .apply_usage("free", &[entry(-2 * BYTES_PER_MB_I64)], &[], now())
        .await
        .expect("apply");
    let changes = store.changes_since(cursor, 10).await.expect("changes");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].stale, Stale::User(owner.id.clone()));
    assert_eq!(
        store
            .usage(&owner.id, march().start)
            .await
            .expect("usage")
            .storage_bytes,
        0
    );
}

async fn a_new_period_starts_from_zero(db: TestDatabase) {
    let store = db.open().await;
    let owner = stored_user(&store, "monthly").await;
    let april = period("2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z");
    let quotas = EffectiveQuotas {
        monthly_requests: Some(10),
        ..unlimited()
    };
    let entry = |period, requests| UsageEntry {
        quotas,
        ..usage_of(&owner.id, period, requests, 1, 0)
    };
    let march_use = store
        .apply_usage("m", &[entry(march(), 12)], &[], now())
        .await
        .expect("march");
    assert_eq!(
        march_use,
        UsageOutcome::Applied(vec![(owner.id.clone(), QuotaName::MonthlyRequests)])
    );
    let april_use = store
        .apply_usage("a", &[entry(april, 4)], &[], now())
        .await
        .expect("april");
    assert_eq!(april_use, UsageOutcome::Applied(Vec::new()));
    assert_eq!(
        store
            .usage(&owner.id, april.start)
            .await
            .expect("usage")
            .requests,
        4
    );
    assert_eq!(
        store
            .usage(&owner.id, march().start)
            .await
            .expect("usage")
            .requests,
        12
    );
}

async fn storage_never_drops_below_zero(db: TestDatabase) {
    let store = db.open().await;
    let owner = stored_user(&store, "hoarder").await;
    let mut held = Vec::new();
    for (batch, storage_bytes) in [("s1", -5), ("s2", 100), ("s3", -30)] {
        store
            .apply_usage(
                batch,
                &[usage_of(&owner.id, march(), 0, 0, storage_bytes)],
                &[],
                now(),
            )
            .await
            .expect("apply");
        let usage = store.usage(&owner.id, march().start).await.expect("usage");
        held.push(usage.storage_bytes);
    }
    assert_eq!(held, [0, 100, 70]);
}

async fn login_failures_are_written_only_over_what_was_read(db: TestDatabase) {
    let store = db.open().await;
    let account = hasher().hash(&PlainApiKey::from_client("someone".into()).digest());
    let at = now();
    let counted = |failures| FailureRecord {
        failures,
        lockouts: 0,
        locked_until: None,
        last_attempt_at: at,
    };
    let keep = |record: FailureRecord, version| {
        let (store, account) = (&store, &account);
        async move {
            store
                .keep_login_failures(account, &record, version)
                .await
                .expect("keep")
        }
    };
    let read = || async { store.login_failures(&account).await.expect("read") };

    assert!(read().await.is_none());
    assert!(keep(counted(1), None).await);
    assert!(
        !keep(counted(1), None).await,
        "another replica inserted first"
    );
    let first = read().await.expect("kept");
    assert_eq!(first.record, counted(1));

    // Two replicas read the same version; the second write is refused.
    let locked = FailureRecord {
        failures: 0,
        lockouts: 1,
        locked_until: Some(at + chrono::Duration::minutes(15)),
        last_attempt_at: at,
    };
    assert!(keep(locked.clone(), Some(first.version)).await);
    assert!(!keep(counted(2), Some(first.version)).await);
    assert_eq!(read().await.expect("kept").record, locked);

    assert_eq!(store.prune_login_failures(at).await.expect("prune"), 0);
    let later = at + chrono::Duration::milliseconds(1);
    assert_eq!(store.prune_login_failures(later).await.expect("prune"), 1);
    assert!(read().await.is_none());

    assert!(keep(counted(1), None).await);
    store.forget_login_failures(&account).await.expect("forget");
    assert!(read().await.is_none());
}

#[tokio::test]
async fn sqlite_is_opened_in_write_ahead_log_mode() {
    use sqlx::Connection;
    let db = TestDatabase::sqlite().await;
    let _store = db.open().await;
    let mut connection = sqlx::SqliteConnection::connect(&db.url)
        .await
        .expect("connect");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut connection)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
}
