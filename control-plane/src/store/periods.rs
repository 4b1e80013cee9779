//! The period rows usage is counted in: a user's (`usage_periods`) and a tenant pool's
//! (`tenant_usage_periods`), both of requests and bytes.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::columns::{format_time, to_i64, to_u64};
use super::StoreError;
use crate::domain::Timestamp;
use crate::limits::quota::Usage;

/// Whose usage a period row counts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Counted {
    User,
    Tenant,
}

impl Counted {
    /// The table and the column naming whose usage a row counts.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Self::User => ("usage_periods", "user_id"),
            Self::Tenant => ("tenant_usage_periods", "tenant_id"),
        }
    }
}

/// Takes the period row of a user or tenant pool (creating it when missing) so that
/// acquires and usage reports of the period run one at a time; answers what the period
/// used. Every writer takes user rows before tenant rows, so no two wait on each other.
pub(super) async fn lock_period(
    tx: &mut AnyConnection,
    counted: Counted,
    id: &str,
    period_start: Timestamp,
) -> Result<Usage, StoreError> {
    let (table, column) = counted.table();
    let start = format_time(period_start);
    sqlx::query(&format!(
        "INSERT INTO {table} ({column}, period_start, requests, bytes) \
         VALUES ($1, $2, 0, 0) ON CONFLICT ({column}, period_start) DO NOTHING"
    ))
    .bind(id)
    .bind(&start)
    .execute(&mut *tx)
    .await?;
    // An UPDATE holds the row's lock until commit on Postgres; SQLite's one writer
    // serialises on its own.
    let row = sqlx::query(&format!(
        "UPDATE {table} SET requests = requests \
         WHERE {column} = $1 AND period_start = $2 RETURNING requests, bytes"
    ))
    .bind(id)
    .bind(&start)
    .fetch_one(tx)
    .await?;
    period_usage(&row)
}

/// Adds requests and bytes to a period row (creating it when missing); answers the row's
/// usage after the addition.
pub(super) async fn add_to_period(
    tx: &mut AnyConnection,
    counted: Counted,
    id: &str,
    period_start: Timestamp,
    added: Usage,
) -> Result<Usage, StoreError> {
    let (table, column) = counted.table();
    let row = sqlx::query(&format!(
        "INSERT INTO {table} ({column}, period_start, requests, bytes) \
         VALUES ($1, $2, $3, $4) ON CONFLICT ({column}, period_start) DO UPDATE \
         SET requests = {table}.requests + excluded.requests, \
         bytes = {table}.bytes + excluded.bytes \
         RETURNING requests, bytes"
    ))
    .bind(id)
    .bind(format_time(period_start))
    .bind(to_i64(added.requests))
    .bind(to_i64(added.bytes))
    .fetch_one(tx)
    .await?;
    period_usage(&row)
}

/// The requests and bytes of a period row.
pub(super) fn period_usage(row: &AnyRow) -> Result<Usage, StoreError> {
    Ok(Usage {
        requests: to_u64(row.try_get("requests")?),
        bytes: to_u64(row.try_get("bytes")?),
        storage_bytes: 0,
    })
}
