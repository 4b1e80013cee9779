//! [`LoginFailureStore`] on SQL: the `login_failures` table.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::columns::{format_time, optional_time, required_time, small_number};
use super::{SqlStore, StoreError, Written};
use crate::accounts::api_key::StoredKeyHash;
use crate::domain::Timestamp;
use crate::identity::lockout::FailureRecord;

/// A login name's failures as read, with the version a write over them must name.
#[derive(Debug, Clone)]
pub struct KeptFailures {
    pub record: FailureRecord,
    pub version: i64,
}

/// Failed logins per login name (stored by its keyed hash), written only over what was read.
#[async_trait]
pub trait LoginFailureStore: Send + Sync {
    async fn login_failures(
        &self,
        account: &StoredKeyHash,
    ) -> Result<Option<KeptFailures>, StoreError>;
    /// Keeps `record` if what is stored is still `version` (`None`: nothing); false when
    /// another write came first.
    async fn keep_login_failures(
        &self,
        account: &StoredKeyHash,
        record: &FailureRecord,
        version: Option<i64>,
    ) -> Result<bool, StoreError>;
    async fn forget_login_failures(&self, account: &StoredKeyHash) -> Written;
    /// Removes the failures whose last attempt came before `before`; returns how many.
    async fn prune_login_failures(&self, before: Timestamp) -> Result<u64, StoreError>;
}

#[async_trait]
impl LoginFailureStore for SqlStore {
    async fn login_failures(
        &self,
        account: &StoredKeyHash,
    ) -> Result<Option<KeptFailures>, StoreError> {
        let sql = "SELECT failures, lockouts, locked_until, last_attempt_at, version \
                   FROM login_failures WHERE account = $1";
        match self.select_one(sql, account.as_str()).await {
            Ok(row) => kept_from_row(&row).map(Some),
            Err(StoreError::NotFound) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn keep_login_failures(
        &self,
        account: &StoredKeyHash,
        record: &FailureRecord,
        version: Option<i64>,
    ) -> Result<bool, StoreError> {
        let sql = match version {
            None => {
                "INSERT INTO login_failures (failures, lockouts, locked_until, last_attempt_at, \
                 account, version) VALUES ($1, $2, $3, $4, $5, 1) \
                 ON CONFLICT (account) DO NOTHING"
            }
            Some(_) => {
                "UPDATE login_failures SET failures = $1, lockouts = $2, locked_until = $3, \
                 last_attempt_at = $4, version = version + 1 WHERE account = $5 AND version = $6"
            }
        };
        let mut query = sqlx::query(sql)
            .bind(i64::from(record.failures))
            .bind(i64::from(record.lockouts))
            .bind(record.locked_until.map(format_time))
            .bind(format_time(record.last_attempt_at))
            .bind(account.as_str());
        if let Some(version) = version {
            query = query.bind(version);
        }
        let written = self
            .write(None, async |write| Ok(query.execute(write.rows()).await?))
            .await?;
        Ok(written.rows_affected() == 1)
    }

    async fn forget_login_failures(&self, account: &StoredKeyHash) -> Written {
        self.write(None, async |write| {
            sqlx::query("DELETE FROM login_failures WHERE account = $1")
                .bind(account.as_str())
                .execute(write.rows())
                .await?;
            Ok(())
        })
        .await
    }

    async fn prune_login_failures(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.delete_before(
            "DELETE FROM login_failures WHERE last_attempt_at < $1",
            before,
        )
        .await
    }
}

fn kept_from_row(row: &AnyRow) -> Result<KeptFailures, StoreError> {
    Ok(KeptFailures {
        record: FailureRecord {
            failures: small_number(row, "failures")?,
            lockouts: small_number(row, "lockouts")?,
            locked_until: optional_time(row, "locked_until")?,
            last_attempt_at: required_time(row, "last_attempt_at")?,
        },
        version: row.try_get("version")?,
    })
}
