//! [`KeyStore`] on SQL: the `api_keys` table; a key is found by hash with its owner.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::columns::{
    conflict_or, format_time, from_json, named, optional_time, required_time, to_json, touched,
};
use super::sql::Write;
use super::users::USER_COLUMNS;
use super::{SqlStore, StoreError, Written};
use crate::accounts::api_key::{ApiKey, KeyStatus, StoredKeyHash};
use crate::accounts::user::User;
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Stale;
use crate::domain::ids::{ApiKeyId, UserId};
use crate::domain::Timestamp;
use crate::limits::rate_limits::RateLimits;

const KEY_COLUMNS: &str = "k.id AS key_id, k.user_id, k.name AS key_name, k.prefix, k.last4, \
     k.key_hash, k.status AS key_status, k.scopes, k.rate_limits AS key_rate_limits, \
     k.expires_at, k.created_at AS key_created_at, k.revoked_at, k.replaced_by";

/// A key together with its owner, as needed to authenticate a request.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub key: ApiKey,
    pub user: User,
}

/// API keys. Revoking, rotating or limiting a key makes the data plane's copy stale.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn create_key(&self, key: &ApiKey, audit: &AuditEntry) -> Written;
    /// Revokes `old` and creates `new` atomically.
    /// Adds `new` in place of the active key `old`, which is revoked at once, or, with
    /// `old_works_until`, expires then (or at its own earlier expiry); `NotFound`, changing
    /// nothing, when `old` is not active.
    async fn rotate_key(
        &self,
        old: &ApiKeyId,
        new: &ApiKey,
        at: Timestamp,
        old_works_until: Option<Timestamp>,
        audit: &AuditEntry,
    ) -> Written;
    async fn revoke_key(&self, id: &ApiKeyId, at: Timestamp, audit: &AuditEntry) -> Written;
    /// Replaces a key's rate limits.
    async fn set_key_limits(
        &self,
        id: &ApiKeyId,
        limits: &RateLimits,
        audit: &AuditEntry,
    ) -> Written;
    async fn keys_of(&self, user: &UserId) -> Result<Vec<ApiKey>, StoreError>;
    /// How many of the user's keys are active.
    async fn active_keys_of(&self, user: &UserId) -> Result<u64, StoreError>;
    /// The key with this id, in any state.
    async fn key(&self, id: &ApiKeyId) -> Result<ApiKey, StoreError>;
    /// The key with this hash in any state, with its owner.
    async fn key_by_hash(&self, hash: &StoredKeyHash) -> Result<KeyOwner, StoreError>;
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn create_key(&self, key: &ApiKey, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| insert(write.rows(), key).await)
            .await
    }

    async fn rotate_key(
        &self,
        old: &ApiKeyId,
        new: &ApiKey,
        at: Timestamp,
        old_works_until: Option<Timestamp>,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            match old_works_until {
                None => revoke(write.rows(), old, at).await?,
                Some(until) => expire_by(write.rows(), old, &new.id, until).await?,
            }
            write.stale(&Stale::Key(old.clone()), at).await?;
            insert(write.rows(), new).await
        })
        .await
    }

    async fn revoke_key(&self, id: &ApiKeyId, at: Timestamp, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            revoke(write.rows(), id, at).await?;
            write.stale(&Stale::Key(id.clone()), at).await
        })
        .await
    }

    async fn set_key_limits(
        &self,
        id: &ApiKeyId,
        limits: &RateLimits,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            let updated = sqlx::query("UPDATE api_keys SET rate_limits = $1 WHERE id = $2")
                .bind(to_json(limits)?)
                .bind(id.as_str())
                .execute(write.rows())
                .await?;
            touched(&updated)?;
            write.stale(&Stale::Key(id.clone()), audit.at).await
        })
        .await
    }

    async fn keys_of(&self, user: &UserId) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.user_id = $1 ORDER BY k.created_at, k.id"
        );
        self.select_all(&sql, Some(user.as_str()), key_from_row)
            .await
    }

    async fn active_keys_of(&self, user: &UserId) -> Result<u64, StoreError> {
        self.count(
            "SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND status = 'active'",
            &[user.as_str()],
        )
        .await
    }

    async fn key(&self, id: &ApiKeyId) -> Result<ApiKey, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = $1");
        key_from_row(&self.select_one(&sql, id.as_str()).await?)
    }

    async fn key_by_hash(&self, hash: &StoredKeyHash) -> Result<KeyOwner, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, {USER_COLUMNS} FROM api_keys k \
             JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1"
        );
        let row = self.select_one(&sql, hash.as_str()).await?;
        Ok(KeyOwner {
            key: key_from_row(&row)?,
            user: self.user_from_row(&row).await?,
        })
    }
}

async fn insert(tx: &mut AnyConnection, key: &ApiKey) -> Written {
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, prefix, last4, key_hash, status, scopes, \
         expires_at, created_at, revoked_at, rate_limits) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(key.id.as_str())
    .bind(key.user_id.as_str())
    .bind(&key.name)
    .bind(&key.prefix)
    .bind(&key.last4)
    .bind(key.hash.as_str())
    .bind(key.status.as_str())
    .bind(to_json(&key.scopes)?)
    .bind(key.expires_at.map(format_time))
    .bind(format_time(key.created_at))
    .bind(key.revoked_at.map(format_time))
    .bind(to_json(&key.rate_limits)?)
    .execute(tx)
    .await
    .map_err(|e| conflict_or(e, "api key"))?;
    Ok(())
}

/// Revokes an active key; `NotFound` when there is none with this id.
/// Revokes every active key of `user` within `write`; each becomes stale. Returns how many.
pub(super) async fn revoke_keys_of(
    write: &mut Write,
    user: &UserId,
    at: Timestamp,
) -> Result<u64, StoreError> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM api_keys WHERE user_id = $1 AND status = 'active'")
            .bind(user.as_str())
            .fetch_all(write.rows())
            .await?;
    for id in &ids {
        let id = ApiKeyId::from_string(id.clone());
        revoke(write.rows(), &id, at).await?;
        write.stale(&Stale::Key(id), at).await?;
    }
    Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
}

async fn revoke(tx: &mut AnyConnection, id: &ApiKeyId, at: Timestamp) -> Written {
    let updated = sqlx::query(
        "UPDATE api_keys SET status = 'revoked', revoked_at = $1 \
         WHERE id = $2 AND status = 'active'",
    )
    .bind(format_time(at))
    .bind(id.as_str())
    .execute(tx)
    .await?;
    touched(&updated)
}

/// Marks the active key `id`, not yet replaced, as replaced by `by`, expiring at `until`
/// unless it expires sooner.
async fn expire_by(
    tx: &mut AnyConnection,
    id: &ApiKeyId,
    by: &ApiKeyId,
    until: Timestamp,
) -> Written {
    let until = format_time(until);
    let updated = sqlx::query(
        "UPDATE api_keys SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > $1 \
         THEN $1 ELSE expires_at END, replaced_by = $3 \
         WHERE id = $2 AND status = 'active' AND replaced_by IS NULL",
    )
    .bind(&until)
    .bind(id.as_str())
    .bind(by.as_str())
    .execute(tx)
    .await?;
    touched(&updated)
}

fn key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: ApiKeyId::from_string(row.try_get("key_id")?),
        user_id: UserId::from_string(row.try_get("user_id")?),
        name: row.try_get("key_name")?,
        prefix: row.try_get("prefix")?,
        last4: row.try_get("last4")?,
        hash: StoredKeyHash::from_string(row.try_get("key_hash")?),
        status: named(row, "key_status", KeyStatus::parse)?,
        scopes: from_json(row, "scopes")?,
        rate_limits: from_json(row, "key_rate_limits")?,
        expires_at: optional_time(row, "expires_at")?,
        created_at: required_time(row, "key_created_at")?,
        revoked_at: optional_time(row, "revoked_at")?,
        replaced_by: row
            .try_get::<Option<String>, _>("replaced_by")?
            .map(ApiKeyId::from_string),
    })
}
