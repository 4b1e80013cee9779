//! [`SqlStore`]: one connection pool to SQLite or Postgres, both speaking the same portable
//! SQL through sqlx's `Any` driver, and [`SqlStore::write`], the one way it changes data.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool};

use super::migrations::{self, Dialect};
use super::{audit, feed, routing_feed, Store, StoreError};
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Stale;
use crate::changes::routing::Rerouted;
use crate::changes::signal::{Followers, Reach};
use crate::domain::Timestamp;

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection pool to SQLite or Postgres, chosen by URL.
pub struct SqlStore {
    pub(super) pool: AnyPool,
    dialect: Dialect,
    followers: Followers,
}

impl SqlStore {
    /// Connects; a SQLite file is created when missing (its folder must exist).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = if url.starts_with("sqlite:") {
            (with_create_mode(url), Dialect::Sqlite)
        } else {
            (url.to_string(), Dialect::Postgres)
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(&url)
            .await?;
        Ok(Self {
            pool,
            dialect,
            followers: Followers::default(),
        })
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        migrations::run(&self.pool, self.dialect).await
    }

    /// The row `sql` selects with `key` as `$1`; `NotFound` when there is none.
    pub(super) async fn select_one(&self, sql: &str, key: &str) -> Result<AnyRow, StoreError> {
        sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
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
            .fetch_all(&self.pool)
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
            tx: self.pool.begin().await?,
            reach: Reach::default(),
        };
        let value = rows(&mut write).await?;
        if let Some(entry) = audit.into() {
            write.audit(entry).await?;
        }
        write.tx.commit().await?;
        self.followers.announce(write.reach);
        Ok(value)
    }
}

/// One write in progress: its transaction, and whom it concerns once committed.
pub(super) struct Write {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    reach: Reach,
}

impl Write {
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

    /// Appends to the routing feed: the write changes what Envoy is routed by (a backend, a
    /// pool, a group's routes).
    pub(super) async fn reroutes(&mut self, rerouted: &Rerouted) -> Result<(), StoreError> {
        routing_feed::append(&mut self.tx, rerouted, crate::domain::now()).await?;
        self.reach.routing = true;
        Ok(())
    }

    /// An audit entry the write finds it must add besides its own.
    pub(super) async fn audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        audit::insert(&mut self.tx, entry).await
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn followers(&self) -> &Followers {
        &self.followers
    }
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
