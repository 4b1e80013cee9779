//! The audit log's chain against SQLite and Postgres: intact after concurrent writes, and each
//! kind of change made directly in the database (an entry altered, removed or inserted, the
//! last entries cut off) found and named; entries from before the chain existed join it; and
//! `tollgate audit verify` says so with its exit status.

mod support;

use std::process::Command;

use serde_json::json;
use support::{against_both_databases, TestDatabase};
use tollgate::changes::audit::AuditEntry;
use tollgate::changes::audit_chain::{AuditChainKey, ChainBreak};
use tollgate::changes::request_context::RequestContext;
use tollgate::store::{AuditLog, SqlStore};

against_both_databases!(
    concurrent_writes_form_one_unbroken_chain,
    an_altered_entry_is_named,
    a_removed_entry_is_named,
    an_entry_inserted_around_the_chain_is_named,
    removing_the_last_entries_is_found,
    entries_from_before_the_chain_join_it_once,
    a_request_context_is_kept_and_covered_by_the_chain,
);

async fn store_with_entries(db: &TestDatabase, count: usize) -> (SqlStore, Vec<AuditEntry>) {
    let store = db.open().await;
    let mut entries = Vec::new();
    for index in 0..count {
        let entry = AuditEntry::new(None, "test.recorded", "t_1", json!({"index": index}));
        store.record_audit(&entry).await.expect("audit");
        entries.push(entry);
    }
    (store, entries)
}

async fn verified(store: &SqlStore) -> Result<i64, ChainBreak> {
    store.verify_audit_chain().await.expect("readable")
}

async fn concurrent_writes_form_one_unbroken_chain(db: TestDatabase) {
    let store = std::sync::Arc::new(db.open().await);
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for index in 0..10 {
                    let details = json!({"writer": writer, "index": index});
                    let entry = AuditEntry::new(None, "test.recorded", "t_1", details);
                    store.record_audit(&entry).await.expect("audit");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    assert_eq!(verified(&store).await, Ok(80));
}

async fn an_altered_entry_is_named(db: TestDatabase) {
    let (store, entries) = store_with_entries(&db, 5).await;
    assert_eq!(verified(&store).await, Ok(5));
    assert_altering_is_named(&db, &store, r#"details = '{"index":99}'"#, &entries[2], 3).await;
}

/// Changes `entry` (place `seq`) in the database with `set`, around the chain, and expects
/// verification to name it.
async fn assert_altering_is_named(
    db: &TestDatabase,
    store: &SqlStore,
    set: &str,
    entry: &AuditEntry,
    seq: i64,
) {
    let id = entry.id.as_str();
    db.run_raw(&[format!("UPDATE audit_log SET {set} WHERE id = '{id}'")])
        .await;
    assert_eq!(
        verified(store).await,
        Err(ChainBreak::Altered {
            seq,
            id: id.to_string()
        })
    );
}

async fn a_removed_entry_is_named(db: TestDatabase) {
    let (store, entries) = store_with_entries(&db, 5).await;
    db.run_raw(&[format!(
        "DELETE FROM audit_log WHERE id = '{}'",
        entries[1].id.as_str()
    )])
    .await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::Removed {
            expected: 2,
            seq: 3,
            id: entries[2].id.as_str().to_string()
        })
    );
}

async fn an_entry_inserted_around_the_chain_is_named(db: TestDatabase) {
    let (store, _) = store_with_entries(&db, 3).await;
    db.run_raw(&["INSERT INTO audit_log (id, at, action, target, details) \
         VALUES ('a_forged', '2026-01-01T00:00:00.000Z', 'user.created', 'u_x', '{}')"])
        .await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::Inserted {
            id: "a_forged".into()
        })
    );
    // Given the next place, it lies beyond the recorded end...
    db.run_raw(&["UPDATE audit_log SET seq = 4, hash = 'ab12' WHERE id = 'a_forged'"])
        .await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::BeyondEnd {
            id: "a_forged".into()
        })
    );
    // ...and moving the end over it takes the secret.
    db.run_raw(&["UPDATE audit_chain SET seq = 4, head = 'ab12'"])
        .await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::EndAltered { recorded: 4 })
    );
}

async fn removing_the_last_entries_is_found(db: TestDatabase) {
    let (store, _) = store_with_entries(&db, 4).await;
    db.run_raw(&["DELETE FROM audit_log WHERE seq >= 3"]).await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::Truncated {
            found: 2,
            recorded: 4
        })
    );
    // Moving the recorded end back to the last entry kept takes the secret too.
    db.run_raw(&[
        "UPDATE audit_chain SET seq = 2, head = (SELECT hash FROM audit_log WHERE seq = 2)",
    ])
    .await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::EndAltered { recorded: 2 })
    );
}

async fn entries_from_before_the_chain_join_it_once(db: TestDatabase) {
    let (store, _) = store_with_entries(&db, 3).await;
    drop(store);
    // As a database migrated from before the chain holds them.
    db.run_raw(&[
        "UPDATE audit_log SET seq = NULL, hash = NULL",
        "UPDATE audit_chain SET seq = 0, head = '', started = 0",
    ])
    .await;
    let store = db.open().await;
    assert_eq!(verified(&store).await, Ok(3));
    store
        .record_audit(&AuditEntry::new(None, "test.recorded", "t_1", json!({})))
        .await
        .expect("audit");
    drop(store);
    let reopened = db.open().await;
    assert_eq!(verified(&reopened).await, Ok(4), "chained once, not again");
}

async fn a_request_context_is_kept_and_covered_by_the_chain(db: TestDatabase) {
    let (store, _) = store_with_entries(&db, 2).await;
    let context = RequestContext {
        client_address: Some("192.0.2.7".into()),
        user_agent: Some("curl/8.5".into()),
        correlation_id: Some("req-42".into()),
    };
    let entry = context
        .clone()
        .scope(async { AuditEntry::new(None, "test.recorded", "t_1", json!({})) })
        .await;
    store.record_audit(&entry).await.expect("audit");
    let page = store.audit_entries(0, 10).await.expect("entries");
    let stored = page.items.iter().find(|item| item.id == entry.id);
    assert_eq!(stored.map(|item| &item.context), Some(&context));
    assert_eq!(
        verified(&store).await,
        Ok(3),
        "older entries verify beside it"
    );
    assert_altering_is_named(&db, &store, "correlation_id = NULL", &entry, 3).await;
}

#[tokio::test]
async fn the_verify_command_exits_non_zero_naming_the_tampered_entry() {
    const SECRET: &str = "a server secret of at least thirty-two characters";
    let db = TestDatabase::sqlite().await;
    let data_dir = tempfile::tempdir().expect("data dir");
    let tollgate = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .env("TOLLGATE_DATABASE__URL", &db.url)
            .env("TOLLGATE_DATA_DIR", data_dir.path())
            .env("TOLLGATE_SECURITY__KEY_HASH_SECRET", SECRET)
            .output()
            .expect("run tollgate")
    };
    assert!(tollgate(&["migrate"]).status.success());
    let store = SqlStore::connect(&db.url, 2, AuditChainKey::new(SECRET.as_bytes()))
        .await
        .expect("connect");
    for index in 0..3 {
        let entry = AuditEntry::new(None, "test.recorded", "t_1", json!({"index": index}));
        store.record_audit(&entry).await.expect("audit");
    }
    let intact = tollgate(&["audit", "verify"]);
    assert!(intact.status.success(), "{intact:?}");
    let said = String::from_utf8_lossy(&intact.stdout);
    assert!(said.contains("audit log intact: 3 entries"), "{said}");

    db.run_raw(&["UPDATE audit_log SET target = 'someone else' WHERE seq = 2"])
        .await;
    let tampered = tollgate(&["audit", "verify"]);
    assert!(!tampered.status.success());
    let said = String::from_utf8_lossy(&tampered.stderr);
    assert!(said.contains("(place 2) was altered"), "{said}");
}
