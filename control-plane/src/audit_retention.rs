//! The audit log's retention: every [`PRUNE_INTERVAL`], entries older than
//! `audit.retention_days` are pruned behind a sealed checkpoint (see `store::AuditLog`).
//!
//! Every replica runs it: a pruning takes the chain's end for itself, so replicas pruning at
//! once take turns, and the later one finds nothing left to prune.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::now;
use crate::store::{Pruned, Store, StoreError};

/// How often old entries are looked for.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Prunes every [`PRUNE_INTERVAL`], the first time at start; nothing with `retention_days` 0.
pub async fn run(store: Arc<dyn Store>, retention_days: u32) {
    if retention_days == 0 {
        return;
    }
    let mut ticks = tokio::time::interval(PRUNE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match prune_once(store.as_ref(), retention_days).await {
            Ok(Some(pruned)) => tracing::info!(
                entries = pruned.entries,
                through_seq = pruned.through_seq,
                "audit entries past retention pruned"
            ),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot prune the audit log"),
        }
    }
}

/// Prunes the entries older than `retention_days` once.
pub async fn prune_once(
    store: &dyn Store,
    retention_days: u32,
) -> Result<Option<Pruned>, StoreError> {
    let before = now() - chrono::Duration::days(retention_days.into());
    store.prune_audit(before, retention_days).await
}
