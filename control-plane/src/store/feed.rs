//! [`ChangeFeed`] on SQL: the `invalidations` table, appended to only by writes.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::columns::{format_time, to_i64, to_u64};
use super::{SqlStore, StoreError, Written};
use crate::changes::feed::{Change, Stale};
use crate::domain::ids::{ApiKeyId, SessionId, UserId};
use crate::domain::Timestamp;

const CHANGE_COLUMNS: &str = "seq, kind, subject, session_expires_at";

/// The change feed, read by the data plane's watchers. Only writes append to it.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// The newest position of the change feed (0 when empty).
    async fn latest_change(&self) -> Result<u64, StoreError>;
    /// Changes after `cursor`, oldest first, at most `limit`.
    async fn changes_since(&self, cursor: u64, limit: u64) -> Result<Vec<Change>, StoreError>;
    /// Session revocations whose tokens may still be presented at `now_secs`.
    async fn live_session_revocations(&self, now_secs: i64) -> Result<Vec<Change>, StoreError>;
}

#[async_trait]
impl ChangeFeed for SqlStore {
    async fn latest_change(&self) -> Result<u64, StoreError> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM invalidations")
            .fetch_one(&self.reads)
            .await?;
        Ok(latest.map_or(0, to_u64))
    }

    async fn changes_since(&self, cursor: u64, limit: u64) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM invalidations WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(to_i64(cursor))
        .bind(to_i64(limit))
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn live_session_revocations(&self, now_secs: i64) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANGE_COLUMNS} FROM invalidations \
             WHERE kind = 'session' AND session_expires_at > $1 ORDER BY seq"
        ))
        .bind(now_secs)
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(change_from_row).collect()
    }
}

/// Appends `stale` in the transaction of the write that made it stale.
pub(super) async fn append(tx: &mut AnyConnection, stale: &Stale, at: Timestamp) -> Written {
    let (kind, subject, tokens_expire_at) = match stale {
        Stale::User(id) => ("user", id.as_str(), None),
        Stale::Key(id) => ("key", id.as_str(), None),
        Stale::Session {
            id,
            tokens_expire_at,
        } => ("session", id.as_str(), Some(*tokens_expire_at)),
    };
    sqlx::query(
        "INSERT INTO invalidations (kind, subject, session_expires_at, at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(kind)
    .bind(subject)
    .bind(tokens_expire_at)
    .bind(format_time(at))
    .execute(tx)
    .await?;
    Ok(())
}

fn change_from_row(row: &AnyRow) -> Result<Change, StoreError> {
    let kind: String = row.try_get("kind")?;
    let subject: String = row.try_get("subject")?;
    let stale = match kind.as_str() {
        "user" => Stale::User(UserId::from_string(subject)),
        "key" => Stale::Key(ApiKeyId::from_string(subject)),
        "session" => Stale::Session {
            id: SessionId::from_string(subject),
            tokens_expire_at: row
                .try_get::<Option<i64>, _>("session_expires_at")?
                .unwrap_or(0),
        },
        other => return Err(StoreError::Corrupt(format!("change kind {other:?}"))),
    };
    Ok(Change {
        cursor: to_u64(row.try_get("seq")?),
        stale,
    })
}
