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

/// The migration after which usernames and emails are unique whatever their case.
const CASE_INSENSITIVE_NAMES: i64 = 10;

/// Applies pending migrations; returns how many were applied.
pub(super) async fn run(pool: &AnyPool, dialect: Dialect) -> Result<usize, StoreError> {
    let applied_before = applied(pool).await.unwrap_or(0);
    refuse_names_that_clash_in_case(pool).await?;
    Migrator::new(dialect).await?.run(pool).await?;
    Ok(applied(pool).await?.saturating_sub(applied_before))
}

/// Before usernames and emails become unique whatever their case, names the stored ones that
/// differ only in case, which an operator must rename first (the index would refuse them with
/// a less helpful message).
async fn refuse_names_that_clash_in_case(pool: &AnyPool) -> Result<(), StoreError> {
    let pending: bool = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = $1 AND success",
    )
    .bind(CASE_INSENSITIVE_NAMES)
    .fetch_one(pool)
    .await
    .is_ok_and(|applied| applied == 0);
    if !pending {
        return Ok(());
    }
    let mut clashes = Vec::new();
    for column in ["username", "email"] {
        let names: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT LOWER({column}) FROM users WHERE {column} IS NOT NULL \
             GROUP BY LOWER({column}) HAVING COUNT(*) > 1 ORDER BY 1"
        ))
        .fetch_all(pool)
        .await?;
        clashes.extend(names.into_iter().map(|name| format!("{column} {name:?}")));
    }
    if clashes.is_empty() {
        return Ok(());
    }
    Err(StoreError::MigrationBlocked(format!(
        "usernames and emails become unique whatever their case, but these are stored more \
         than once in different cases; rename all but one of each, then start again: {}",
        clashes.join(", ")
    )))
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
