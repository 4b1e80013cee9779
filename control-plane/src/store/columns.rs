//! How values are stored in columns both databases read the same way: times as RFC 3339
//! text, settings as JSON text, counts as signed 64-bit integers.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::StoreError;
use crate::domain::Timestamp;

/// A statement with some of its parameters bound.
pub(super) type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

pub(super) fn conflict_or(error: sqlx::Error, what: &'static str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Unavailable(error),
    }
}

/// `NotFound` when a statement touched no row.
pub(super) fn touched(result: &sqlx::any::AnyQueryResult) -> Result<(), StoreError> {
    if result.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// A stored whole number that must fit in 32 bits.
pub(super) fn small_number<T: TryFrom<i64>>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    T::try_from(row.try_get::<i64, _>(column)?)
        .map_err(|_| StoreError::Corrupt(format!("{column} out of range")))
}

/// A stored name of one of an enum's values.
pub(super) fn named<T>(
    row: &AnyRow,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let name: String = row.try_get(column)?;
    parse(&name).ok_or_else(|| StoreError::Corrupt(format!("{column} {name:?}")))
}

/// `text` with the wildcards of `LIKE` escaped (by `\\`), to match as written.
pub(super) fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

pub(super) fn format_time(at: Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(column: &str, value: &str) -> Result<Timestamp, StoreError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(super) fn optional_time(row: &AnyRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    row.try_get::<Option<String>, _>(column)?
        .map(|value| parse_time(column, &value))
        .transpose()
}

pub(super) fn required_time(row: &AnyRow, column: &str) -> Result<Timestamp, StoreError> {
    parse_time(column, &row.try_get::<String, _>(column)?)
}
