//! Storage of who users are at OpenID Connect providers, against SQLite and Postgres: a new
//! user created with their link and group in one write, a link found by provider and subject
//! only, an email found whatever its case, and a subject linked once.

mod support;

use serde_json::json;
use support::records::{stored_group, stored_user};
use support::{against_both_databases, TestDatabase};
use tollgate::accounts::user::User;
use tollgate::changes::audit::AuditEntry;
use tollgate::store::{GroupStore, OidcLink, OidcLinkStore, StoreError, UserStore};

against_both_databases!(
    a_new_user_comes_with_their_link_and_group,
    an_existing_user_is_linked_once_per_subject,
);

fn link(subject: &str, user: &User) -> OidcLink {
    OidcLink {
        provider: "entra".into(),
        subject: subject.into(),
        user_id: user.id.clone(),
    }
}

fn audit(action: &str) -> AuditEntry {
    AuditEntry::new(None, action, "target", json!({}))
}

async fn a_new_user_comes_with_their_link_and_group(db: TestDatabase) {
    let store = db.open().await;
    let group = stored_group("staff");
    store
        .create_group(&group, &audit("group.created"))
        .await
        .expect("group");
    let alice = stored_user("alice", "alice@corp.example");
    store
        .create_oidc_user(
            &alice,
            Some(&group.id),
            &link("tid:oid-a", &alice),
            &audit("user.created"),
        )
        .await
        .expect("created");

    let found = store
        .user_by_oidc_subject("entra", "tid:oid-a")
        .await
        .expect("linked");
    assert_eq!(found.id, alice.id);
    assert_eq!(found.groups, vec![group.id.as_str().to_string()]);
    assert!(matches!(
        store.user_by_oidc_subject("google", "tid:oid-a").await,
        Err(StoreError::NotFound)
    ));

    // Nothing of a refused creation stays: the username is taken, so no link either.
    let again = stored_user("ALICE", "other@corp.example");
    assert!(matches!(
        store
            .create_oidc_user(
                &again,
                None,
                &link("tid:oid-b", &again),
                &audit("user.created")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.user_by_oidc_subject("entra", "tid:oid-b").await,
        Err(StoreError::NotFound)
    ));
}

async fn an_existing_user_is_linked_once_per_subject(db: TestDatabase) {
    let store = db.open().await;
    let bob = stored_user("bob", "Bob@Corp.Example");
    store
        .create_user(&bob, &audit("user.created"))
        .await
        .expect("bob");
    let by_email = store
        .user_by_email("bob@corp.example")
        .await
        .expect("found whatever the case");
    assert_eq!(by_email.id, bob.id);

    store
        .link_oidc_subject(&link("tid:oid-bob", &bob), &audit("user.oidc_linked"))
        .await
        .expect("linked");
    let carol = stored_user("carol", "carol@corp.example");
    store
        .create_user(&carol, &audit("user.created"))
        .await
        .expect("carol");
    assert!(matches!(
        store
            .link_oidc_subject(&link("tid:oid-bob", &carol), &audit("user.oidc_linked"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    let found = store
        .user_by_oidc_subject("entra", "tid:oid-bob")
        .await
        .expect("still bob");
    assert_eq!(found.id, bob.id);
}
