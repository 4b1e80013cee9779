//! One migration set for both databases (`migrations/`), and each database's own copy of the
//! few migrations whose SQL differs (`migrations/postgres/`, `migrations/sqlite/`).

use std::future::{ready, Future};
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use sqlx::AnyPool;

use super::StoreError;

static SHARED: Migrator = sqlx::migrate!("../migrations");
static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");

/// The database behind a store, as far as migrations differ.
#[derive(Debug, Clone, Copy)]
pub(super) enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The shared migrations and this database's own, in version order.
    fn migrations(self) -> Vec<Migration> {
        let own = match self {
            Self::Postgres => &POSTGRES,
            Self::Sqlite => &SQLITE,
        };
        let mut all: Vec<Migration> = SHARED.iter().chain(own.iter()).cloned().collect();
        all.sort_by_key(|migration| migration.version);
        all
    }
}

impl MigrationSource<'static> for Dialect {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(ready(Ok(self.migrations())))
    }
}

/// Applies pending migrations; returns how many were applied.
pub(super) async fn run(pool: &AnyPool, dialect: Dialect) -> Result<usize, StoreError> {
    let applied_before = applied(pool).await.unwrap_or(0);
    Migrator::new(dialect).await?.run(pool).await?;
    Ok(applied(pool).await?.saturating_sub(applied_before))
}

async fn applied(pool: &AnyPool) -> Result<usize, StoreError> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await?;
    Ok(usize::try_from(count).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_databases_migrate_through_the_same_versions_each_once() {
        let versions = |dialect: Dialect| -> Vec<i64> {
            dialect.migrations().iter().map(|m| m.version).collect()
        };
        let postgres = versions(Dialect::Postgres);
        assert!(postgres.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(postgres, versions(Dialect::Sqlite));
    }
}
