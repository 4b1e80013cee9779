//! Pruning the audit log against SQLite and Postgres: entries past retention go behind a
//! sealed checkpoint, the kept chain still verifies from it, every kind of tampering with the
//! kept entries or the checkpoint is still found, and replicas pruning at once prune once.

mod support;

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;
use support::{against_both_databases, TestDatabase};
use tollgate::audit_retention::prune_once;
use tollgate::changes::audit::AuditEntry;
use tollgate::changes::audit_chain::ChainBreak;
use tollgate::domain::now;
use tollgate::store::{AuditLog, Pruned, SqlStore};

against_both_databases!(
    old_entries_go_behind_a_checkpoint_the_chain_verifies_from,
    tampering_after_a_pruning_is_found,
    replicas_pruning_at_once_prune_once,
);

const RETENTION_DAYS: u32 = 30;

/// `old` entries from 40 days ago, then `recent` ones from now, at places 1, 2...
async fn store_with(db: &TestDatabase, old: usize, recent: usize) -> (SqlStore, Vec<String>) {
    let store = db.open().await;
    let mut ids = Vec::new();
    for index in 0..old + recent {
        let mut entry = AuditEntry::new(None, "test.recorded", "t_1", json!({"index": index}));
        if index < old {
            entry.at = now() - Duration::days(40);
        }
        store.record_audit(&entry).await.expect("audit");
        ids.push(entry.id.as_str().to_string());
    }
    (store, ids)
}

async fn verified(store: &SqlStore) -> Result<i64, ChainBreak> {
    store.verify_audit_chain().await.expect("readable")
}

async fn old_entries_go_behind_a_checkpoint_the_chain_verifies_from(db: TestDatabase) {
    let (store, _) = store_with(&db, 3, 2).await;
    let pruned = prune_once(&store, RETENTION_DAYS).await.expect("prune");
    assert_eq!(
        pruned,
        Some(Pruned {
            entries: 3,
            through_seq: 3
        })
    );
    assert_eq!(
        verified(&store).await,
        Ok(3),
        "two kept and the pruning's own"
    );
    let kept = store.audit_entries(0, 10).await.expect("entries");
    assert_eq!(kept.total, 3);
    let audit = &kept.items[0];
    assert_eq!(audit.action, "audit.pruned");
    assert_eq!(audit.details["entries"], 3);
    assert_eq!(audit.details["through_seq"], 3);
    assert_eq!(audit.details["retention_days"], RETENTION_DAYS);

    assert_eq!(
        prune_once(&store, RETENTION_DAYS).await.expect("prune"),
        None
    );
    store
        .record_audit(&AuditEntry::new(None, "test.recorded", "t_1", json!({})))
        .await
        .expect("audit");
    drop(store);
    assert_eq!(verified(&db.open().await).await, Ok(4));
}

async fn tampering_after_a_pruning_is_found(db: TestDatabase) {
    let (store, ids) = store_with(&db, 2, 3).await;
    prune_once(&store, RETENTION_DAYS).await.expect("prune");
    assert_eq!(verified(&store).await, Ok(4));

    db.run_raw(&["UPDATE audit_chain SET checkpoint_seq = 3"])
        .await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::CheckpointAltered { recorded: 3 }),
        "moving the checkpoint over a kept entry takes the secret"
    );
    db.run_raw(&["UPDATE audit_chain SET checkpoint_seq = 2"])
        .await;
    assert_eq!(verified(&store).await, Ok(4));

    db.run_raw(&["UPDATE audit_chain SET checkpoint_seq = 0"])
        .await;
    assert!(
        matches!(
            verified(&store).await,
            Err(ChainBreak::Removed {
                expected: 1,
                seq: 3,
                ..
            })
        ),
        "without the checkpoint, the pruned entries are missing"
    );
    db.run_raw(&["UPDATE audit_chain SET checkpoint_seq = 2"])
        .await;
    assert_eq!(verified(&store).await, Ok(4));

    db.run_raw(&[
        "INSERT INTO audit_log (id, at, action, target, details, seq, hash) \
         VALUES ('a_forged', '2026-01-01T00:00:00.000Z', 'user.created', 'u_x', '{}', 1, 'ab')",
    ])
    .await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::Inserted {
            id: "a_forged".into()
        }),
        "an entry in a pruned place"
    );
    db.run_raw(&["DELETE FROM audit_log WHERE id = 'a_forged'"])
        .await;

    let first_kept = &ids[2];
    db.run_raw(&[format!(
        "UPDATE audit_log SET target = 'someone else' WHERE id = '{first_kept}'"
    )])
    .await;
    assert_eq!(
        verified(&store).await,
        Err(ChainBreak::Altered {
            seq: 3,
            id: first_kept.clone()
        })
    );
    db.run_raw(&[format!("DELETE FROM audit_log WHERE id = '{first_kept}'")])
        .await;
    assert!(matches!(
        verified(&store).await,
        Err(ChainBreak::Removed {
            expected: 3,
            seq: 4,
            ..
        })
    ));
}

async fn replicas_pruning_at_once_prune_once(db: TestDatabase) {
    let first = Arc::new(store_with(&db, 20, 1).await.0);
    let second = Arc::new(db.open().await);
    let prunes: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .map(|store| tokio::spawn(async move { prune_once(store.as_ref(), RETENTION_DAYS).await }))
        .collect();
    let mut pruned = Vec::new();
    for prune in prunes {
        pruned.push(prune.await.expect("task").expect("prune"));
    }
    pruned.sort_by_key(Option::is_some);
    assert_eq!(
        pruned,
        [
            None,
            Some(Pruned {
                entries: 20,
                through_seq: 20
            })
        ]
    );
    assert_eq!(verified(&second).await, Ok(2));
}
