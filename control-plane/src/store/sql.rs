//! [`SqlStore`]: connections to SQLite or Postgres, both speaking the same portable SQL
//! through sqlx's `Any` driver, and [`SqlStore::write`], the one way it changes data.
//!
//! Reads and writes take their connections from separate pools. On SQLite (in WAL mode) the
//! write pool is one connection, so the process's writes queue for it in turn instead of
//! failing on the database's lock, while reads go on beside them on the read pool. On
//! Postgres both are the one pool of `database.max_connections`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Executor};

use super::columns::{format_time, to_u64};
use super::migrations::{self, Dialect};
use super::{audit, feed, routing_feed, Store, StoreError};
use crate::changes::audit::AuditEntry;
use crate::changes::audit_chain::AuditChainKey;
use crate::changes::feed::Stale;
use crate::changes::routing::Rerouted;
use crate::changes::signal::{Followers, Reach};
use crate::domain::Timestamp;

const READ_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write may wait for its turn: on SQLite every write of the process is in the
/// queue, on Postgres every statement that waits for one of the pool's connections.
const WRITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// What every SQLite connection is opened with: how long a statement waits for a lock another
/// process holds, and a commit that syncs at checkpoints rather than at every commit (WAL
/// keeps it consistent; a power cut may lose the last commits, never corrupt the file).
const SQLITE_CONNECTION: &str = "PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;";
/// Readers never wait for the writer, nor the writer for readers. Kept in the file once set.
const SQLITE_JOURNAL: &str = "PRAGMA journal_mode = WAL;";

/// Connections to SQLite or Postgres, chosen by URL.
pub struct SqlStore {
    pub(super) reads: AnyPool,
    writes: AnyPool,
    dialect: Dialect,
    followers: Followers,
    pub(super) audit_chain: AuditChainKey,
}

impl SqlStore {
    /// Connects; a SQLite file is created when missing (its folder must exist).
    /// `max_connections` sizes the read pool (on Postgres, the one pool). `audit_chain` keys
    /// the audit log's hashes; every replica must share it.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        audit_chain: AuditChainKey,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = with_create_mode(url);
            let writes = sqlite_pool(1, WRITE_ACQUIRE_TIMEOUT).connect(&url).await?;
            sqlx::raw_sql(SQLITE_JOURNAL).execute(&writes).await?;
            let reads = sqlite_pool(max_connections, READ_ACQUIRE_TIMEOUT)
                .connect(&url)
                .await?;
            Ok(Self::with_pools(
                reads,
                writes,
                Dialect::Sqlite,
                audit_chain,
            ))
        } else {
            let pool = AnyPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(WRITE_ACQUIRE_TIMEOUT)
                .connect(url)
                .await?;
            Ok(Self::with_pools(
                pool.clone(),
                pool,
                Dialect::Postgres,
                audit_chain,
            ))
        }
    }

    fn with_pools(
        reads: AnyPool,
        writes: AnyPool,
        dialect: Dialect,
        audit_chain: AuditChainKey,
    ) -> Self {
        Self {
            reads,
            writes,
            dialect,
            followers: Followers::default(),
            audit_chain,
        }
    }

    /// Applies pending migrations, then chains the audit entries written before the chain
    /// existed; returns how many migrations were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let applied = migrations::run(&self.writes, self.dialect).await?;
        self.write(None, async |write| audit::start_chain(write).await)
            .await?;
        Ok(applied)
    }

    /// The row `sql` selects with `key` as `$1`; `NotFound` when there is none.
    pub(super) async fn select_one(&self, sql: &str, key: &str) -> Result<AnyRow, StoreError> {
        sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.reads)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// The number `sql` counts, with `keys` as `$1`, `$2`...
    pub(super) async fn count(&self, sql: &str, keys: &[&str]) -> Result<u64, StoreError> {
        let mut query = sqlx::query_scalar::<_, i64>(sql);
        for key in keys {
            query = query.bind(*key);
        }
        Ok(to_u64(query.fetch_one(&self.reads).await?))
    }

    /// Every row `sql` selects, with `key` as `$1` when there is one, each read by `read`.
    pub(super) async fn select_all<T>(
        &self,
        sql: &str,
        key: Option<&str>,
        read: fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut query = sqlx::query(sql);
        if let Some(key) = key {
            query = query.bind(key);
        }
        query
            .fetch_all(&self.reads)
            .await?
            .iter()
            .map(read)
            .collect()
    }

    /// The one way to change stored data: `rows` runs in a transaction together with `audit`
    /// and whatever `rows` appends to the change feed. Nothing is kept unless all of it
    /// commits, and the followers the write concerns are woken only after the commit.
    pub(super) async fn write<'a, T>(
        &self,
        audit: impl Into<Option<&'a AuditEntry>>,
        rows: impl AsyncFnOnce(&mut Write) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut write = Write {
            tx: self.writes.begin().await?,
            reach: Reach::default(),
            audit_chain: self.audit_chain.clone(),
        };
        let value = rows(&mut write).await?;
        if let Some(entry) = audit.into() {
            write.audit(entry).await?;
        }
        write.tx.commit().await?;
        metrics::counter!("tollgate_database_writes_total").increment(1);
        self.followers.announce(write.reach);
        Ok(value)
    }

    /// The delete `sql`, with `before` as `$1`, as a write of its own; how many rows went.
    pub(super) async fn delete_before(
        &self,
        sql: &str,
        before: Timestamp,
    ) -> Result<u64, StoreError> {
        self.write(None, async |write| {
            let deleted = sqlx::query(sql)
                .bind(format_time(before))
                .execute(write.rows())
                .await?;
            Ok(deleted.rows_affected())
        })
        .await
    }
}

/// One write in progress: its transaction, and whom it concerns once committed.
pub(super) struct Write {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    reach: Reach,
    audit_chain: AuditChainKey,
}

impl Write {
    /// The key of the audit log's hashes.
    pub(super) fn audit_chain(&self) -> &AuditChainKey {
        &self.audit_chain
    }

    /// The transaction, for the write's own rows.
    pub(super) fn rows(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends to the change feed: the data plane must stop trusting `stale` from `at` on.
    pub(super) async fn stale(&mut self, stale: &Stale, at: Timestamp) -> Result<(), StoreError> {
        feed::append(&mut self.tx, stale, at).await?;
        self.reach.feed = true;
        Ok(())
    }

    /// The write changes what Envoy is routed by (backends, pools, group routes): appends
    /// what it changed to the routing feed.
    pub(super) async fn reroutes(
        &mut self,
        rerouted: &Rerouted,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        routing_feed::append(&mut self.tx, rerouted, at).await?;
        self.reach.routing = true;
        Ok(())
    }

    /// An audit entry the write finds it must add besides its own.
    pub(super) async fn audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        audit::insert(&mut self.tx, &self.audit_chain, entry).await
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reads).await?;
        Ok(())
    }

    fn followers(&self) -> &Followers {
        &self.followers
    }
}

/// A SQLite pool whose every connection is opened with [`SQLITE_CONNECTION`].
fn sqlite_pool(max_connections: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection.execute(SQLITE_CONNECTION).await?;
                Ok(())
            })
        })
}

fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}
