//! [`RoutingFeed`] on SQL: the `routing_changes` table, appended to only by writes that
//! change the routing.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::columns::{format_time, to_i64, to_u64};
use super::{SqlStore, StoreError, Written};
use crate::changes::routing::{Rerouted, RoutingChange};
use crate::domain::ids::{BackendId, GroupId};
use crate::domain::Timestamp;

/// The routing feed, read by the health checker and the xDS topology. Only writes append
/// to it.
#[async_trait]
pub trait RoutingFeed: Send + Sync {
    /// The newest position of the routing feed (0 when empty).
    async fn latest_routing_change(&self) -> Result<u64, StoreError>;
    /// The oldest position still kept; `None` when nothing is kept.
    async fn oldest_routing_change(&self) -> Result<Option<u64>, StoreError>;
    /// Routing changes after `cursor`, oldest first, at most `limit`.
    async fn routing_changes_since(
        &self,
        cursor: u64,
        limit: u64,
    ) -> Result<Vec<RoutingChange>, StoreError>;
    /// Forgets the changes recorded before `before`; returns how many.
    async fn prune_routing_changes(&self, before: Timestamp) -> Result<u64, StoreError>;
}

#[async_trait]
impl RoutingFeed for SqlStore {
    async fn latest_routing_change(&self) -> Result<u64, StoreError> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM routing_changes")
            .fetch_one(&self.reads)
            .await?;
        Ok(latest.map_or(0, to_u64))
    }

    async fn oldest_routing_change(&self) -> Result<Option<u64>, StoreError> {
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM routing_changes")
            .fetch_one(&self.reads)
            .await?;
        Ok(oldest.map(to_u64))
    }

    async fn routing_changes_since(
        &self,
        cursor: u64,
        limit: u64,
    ) -> Result<Vec<RoutingChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject FROM routing_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(cursor))
        .bind(to_i64(limit))
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn prune_routing_changes(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.delete_before("DELETE FROM routing_changes WHERE at < $1", before)
            .await
    }
}

/// Appends `rerouted` in the transaction of the write that changed it.
pub(super) async fn append(tx: &mut AnyConnection, rerouted: &Rerouted, at: Timestamp) -> Written {
    let (kind, subject) = match rerouted {
        Rerouted::Backend(id) => ("backend", id.as_str()),
        Rerouted::Pool(name) => ("pool", name.as_str()),
        Rerouted::Group(id) => ("group", id.as_str()),
    };
    sqlx::query("INSERT INTO routing_changes (kind, subject, at) VALUES ($1, $2, $3)")
        .bind(kind)
        .bind(subject)
        .bind(format_time(at))
        .execute(tx)
        .await?;
    Ok(())
}

fn change_from_row(row: &AnyRow) -> Result<RoutingChange, StoreError> {
    let kind: String = row.try_get("kind")?;
    let subject: String = row.try_get("subject")?;
    let rerouted = match kind.as_str() {
        "backend" => Rerouted::Backend(BackendId::from_string(subject)),
        "pool" => Rerouted::Pool(subject),
        "group" => Rerouted::Group(GroupId::from_string(subject)),
        other => {
            return Err(StoreError::Corrupt(format!(
                "routing change kind {other:?}"
            )))
        }
    };
    Ok(RoutingChange {
        cursor: to_u64(row.try_get("seq")?),
        rerouted,
    })
}
