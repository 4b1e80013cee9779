//! The [`Store`] for SQLite and Postgres. Both speak the same portable SQL through
//! sqlx's `Any` driver; only the connection URL and the migration folder differ.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use super::{KeyOwner, Page, Store, StoreError, UsageEntry, UsageOutcome, UserQuery};
use crate::accounts::api_key::{ApiKey, KeyStatus, StoredKeyHash};
use crate::accounts::group::Group;
use crate::accounts::user::{Role, User, UserStatus};
use crate::changes::audit::AuditEntry;
use crate::changes::feed::{Change, Stale};
use crate::domain::ids::{ApiKeyId, AuditId, BackendId, GroupId, SessionId, UserId};
use crate::domain::Timestamp;
use crate::identity::session::{LoginMethod, Session};
use crate::identity::signing::{SigningAlgorithm, SigningKeyRecord};
use crate::limits::quota::Usage;
use crate::limits::rate_limits::RateLimits;
use crate::routing::backend::{Backend, BackendHealth, BackendUrl, HealthStatus, Weight};
use crate::routing::pool::{HealthCheckSettings, PoolName};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

const USER_COLUMNS: &str = "u.id, u.username, u.email, u.name, u.status, u.role, u.tenant_id, \
     u.ip_allowlist, u.rate_limits, u.quotas, u.password_hash, u.created_at, u.updated_at";
const GROUP_COLUMNS: &str =
    "g.id, g.name, g.priority, g.pools, g.rate_limits, g.quotas, g.created_at, g.updated_at";
const BACKEND_COLUMNS: &str = "id, url, weight, health_check_path, pool, enabled, tls_sni, \
     health_status, consecutive_failures, consecutive_successes, last_checked_at, \
     last_latency_ms, last_error, created_at, updated_at";
const SESSION_COLUMNS: &str =
    "id, user_id, refresh_hash, method, created_at, refresh_expires_at, revoked_at";
const KEY_COLUMNS: &str = "k.id AS key_id, k.user_id, k.name AS key_name, k.prefix, k.last4, \
     k.key_hash, k.status AS key_status, k.scopes, k.rate_limits AS key_rate_limits, k.expires_at, \
     k.created_at AS key_created_at, k.revoked_at";

/// A connection pool to SQLite or Postgres, chosen by URL.
pub struct SqlStore {
    pool: AnyPool,
    migrator: &'static Migrator,
}

impl SqlStore {
    /// Connects; a SQLite file is created when missing (its folder must exist).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, migrator) = if url.starts_with("sqlite:") {
            (with_create_mode(url), &SQLITE_MIGRATIONS)
        } else {
            (url.to_string(), &POSTGRES_MIGRATIONS)
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(&url)
            .await?;
        Ok(Self { pool, migrator })
    }

    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let applied_before = self.applied_migrations().await.unwrap_or(0);
        self.migrator.run(&self.pool).await?;
        Ok(self
            .applied_migrations()
            .await?
            .saturating_sub(applied_before))
    }

    async fn applied_migrations(&self) -> Result<usize, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn insert_audit(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        entry: &AuditEntry,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor_user_id, action, target, details) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry.id.as_str())
        .bind(format_time(entry.at))
        .bind(entry.actor_user_id.as_ref().map(UserId::as_str))
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(entry.details.to_string())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The group ids of `user`, highest priority first.
    async fn group_ids_of(&self, user: &UserId) -> Result<Vec<String>, StoreError> {
        Ok(self
            .groups_of(user)
            .await?
            .into_iter()
            .map(|g| g.id.to_string())
            .collect())
    }

    async fn with_groups(&self, mut user: User) -> Result<User, StoreError> {
        user.groups = self.group_ids_of(&user.id).await?;
        Ok(user)
    }

    async fn stale_members(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        group: &GroupId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let members: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = $1")
                .bind(group.as_str())
                .fetch_all(&mut **tx)
                .await?;
        for member in members {
            Self::record_change(tx, &Stale::User(UserId::from_string(member)), at).await?;
        }
        Ok(())
    }

    async fn record_change(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        stale: &Stale,
        at: Timestamp,
    ) -> Result<(), StoreError> {
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
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn insert_key(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        key: &ApiKey,
    ) -> Result<(), StoreError> {
        let scopes =
            serde_json::to_string(&key.scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
        .bind(scopes)
        .bind(key.expires_at.map(format_time))
        .bind(format_time(key.created_at))
        .bind(key.revoked_at.map(format_time))
        .bind(to_json(&key.rate_limits)?)
        .execute(&mut **tx)
        .await
        .map_err(|e| conflict_or(e, "api key"))?;
        Ok(())
    }

    /// Adds one entry's usage; returns the user's usage after it.
    async fn add_usage(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        entry: &UsageEntry,
    ) -> Result<Usage, StoreError> {
        let period = sqlx::query(
            "INSERT INTO usage_periods (user_id, period_start, requests, bytes) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, period_start) DO UPDATE \
             SET requests = usage_periods.requests + excluded.requests, \
             bytes = usage_periods.bytes + excluded.bytes \
             RETURNING requests, bytes",
        )
        .bind(entry.user.as_str())
        .bind(format_time(entry.period.start))
        .bind(to_i64(entry.requests))
        .bind(to_i64(entry.bytes))
        .fetch_one(&mut **tx)
        .await?;
        let storage: i64 = sqlx::query_scalar(
            "INSERT INTO usage_storage (user_id, bytes) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET bytes = CASE \
             WHEN usage_storage.bytes + $3 < 0 THEN 0 ELSE usage_storage.bytes + $3 END \
             RETURNING bytes",
        )
        .bind(entry.user.as_str())
        .bind(entry.storage_bytes.max(0))
        .bind(entry.storage_bytes)
        .fetch_one(&mut **tx)
        .await?;
        Ok(Usage {
            requests: to_u64(period.try_get("requests")?),
            bytes: to_u64(period.try_get("bytes")?),
            storage_bytes: to_u64(storage),
        })
    }

    async fn mark_revoked(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        id: &ApiKeyId,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE api_keys SET status = 'revoked', revoked_at = $1 \
             WHERE id = $2 AND status = 'active'",
        )
        .bind(format_time(at))
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, user: &User, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, username, email, name, status, role, tenant_id, \
             password_hash, created_at, updated_at, ip_allowlist, rate_limits, quotas) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(user.id.as_str())
        .bind(&user.username)
        .bind(user.email.as_deref())
        .bind(user.name.as_deref())
        .bind(user.status.as_str())
        .bind(user.role.as_str())
        .bind(user.tenant_id.as_deref())
        .bind(user.password_hash.as_deref())
        .bind(format_time(user.created_at))
        .bind(format_time(user.updated_at))
        .bind(to_json(&user.ip_allowlist)?)
        .bind(to_json(&user.rate_limits)?)
        .bind(to_json(&user.quotas)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, "username"))?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_user(&self, user: &User, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET email = $1, name = $2, status = $3, role = $4, tenant_id = $5, \
             password_hash = $6, updated_at = $7, ip_allowlist = $9, rate_limits = $10, \
             quotas = $11 WHERE id = $8",
        )
        .bind(user.email.as_deref())
        .bind(user.name.as_deref())
        .bind(user.status.as_str())
        .bind(user.role.as_str())
        .bind(user.tenant_id.as_deref())
        .bind(user.password_hash.as_deref())
        .bind(format_time(user.updated_at))
        .bind(user.id.as_str())
        .bind(to_json(&user.ip_allowlist)?)
        .bind(to_json(&user.rate_limits)?)
        .bind(to_json(&user.quotas)?)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::record_change(&mut tx, &Stale::User(user.id.clone()), user.updated_at).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, id: &UserId) -> Result<User, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        self.with_groups(user_from_row(&row)?).await
    }

    async fn user_by_username(&self, username: &str) -> Result<User, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        self.with_groups(user_from_row(&row)?).await
    }

    async fn users(&self, query: &UserQuery) -> Result<Page<User>, StoreError> {
        let pattern = query
            .text
            .as_ref()
            .map(|text| format!("%{}%", escape_like(&text.to_lowercase())));
        let status = query.status.map(UserStatus::as_str);
        let filter = "($1 IS NULL OR LOWER(u.username) LIKE $1 ESCAPE '\\' \
                      OR LOWER(COALESCE(u.email, '')) LIKE $1 ESCAPE '\\' \
                      OR LOWER(COALESCE(u.name, '')) LIKE $1 ESCAPE '\\') \
                      AND ($2 IS NULL OR u.status = $2)";
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users u WHERE {filter}"))
                .bind(pattern.as_deref())
                .bind(status)
                .fetch_one(&self.pool)
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE {filter} \
             ORDER BY u.created_at, u.id LIMIT $3 OFFSET $4"
        ))
        .bind(pattern.as_deref())
        .bind(status)
        .bind(to_i64(query.limit))
        .bind(to_i64(query.offset))
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(self.with_groups(user_from_row(row)?).await?);
        }
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn create_key(&self, key: &ApiKey, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::insert_key(&mut tx, key).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_key(
        &self,
        old: &ApiKeyId,
        new: &ApiKey,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::mark_revoked(&mut tx, old, at).await?;
        Self::record_change(&mut tx, &Stale::Key(old.clone()), at).await?;
        Self::insert_key(&mut tx, new).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_key(
        &self,
        id: &ApiKeyId,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::mark_revoked(&mut tx, id, at).await?;
        Self::record_change(&mut tx, &Stale::Key(id.clone()), at).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_key_limits(
        &self,
        id: &ApiKeyId,
        limits: &RateLimits,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query("UPDATE api_keys SET rate_limits = $1 WHERE id = $2")
            .bind(to_json(limits)?)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::record_change(&mut tx, &Stale::Key(id.clone()), audit.at).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn keys_of(&self, user: &UserId) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.user_id = $1 ORDER BY k.created_at, k.id"
        ))
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn key_by_hash(&self, hash: &StoredKeyHash) -> Result<KeyOwner, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS}, {USER_COLUMNS} FROM api_keys k \
             JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1"
        ))
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(KeyOwner {
            key: key_from_row(&row)?,
            user: self.with_groups(user_from_row(&row)?).await?,
        })
    }

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::insert_audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_entries(&self, offset: u64, limit: u64) -> Result<Page<AuditEntry>, StoreError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT id, at, actor_user_id, action, target, details FROM audit_log \
             ORDER BY at DESC, id DESC LIMIT $1 OFFSET $2",
        )
        .bind(to_i64(limit))
        .bind(to_i64(offset))
        .fetch_all(&self.pool)
        .await?;
        Ok(Page {
            items: rows.iter().map(audit_from_row).collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }
    async fn create_session(
        &self,
        session: &Session,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, refresh_hash, method, created_at, \
             refresh_expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(session.id.as_str())
        .bind(session.user_id.as_str())
        .bind(session.refresh_hash.as_str())
        .bind(session.method.as_str())
        .bind(format_time(session.created_at))
        .bind(format_time(session.refresh_expires_at))
        .bind(session.revoked_at.map(format_time))
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, "session"))?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: &SessionId) -> Result<Session, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        session_from_row(&row)
    }

    async fn session_by_refresh_hash(&self, hash: &StoredKeyHash) -> Result<Session, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE refresh_hash = $1"
        ))
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        session_from_row(&row)
    }

    async fn replace_refresh_hash(
        &self,
        id: &SessionId,
        old: &StoredKeyHash,
        new: &StoredKeyHash,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE sessions SET refresh_hash = $1 \
             WHERE id = $2 AND refresh_hash = $3 AND revoked_at IS NULL",
        )
        .bind(new.as_str())
        .bind(id.as_str())
        .bind(old.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO retired_refresh_tokens (refresh_hash, session_id, retired_at) \
             VALUES ($1, $2, $3)",
        )
        .bind(old.as_str())
        .bind(id.as_str())
        .bind(format_time(crate::domain::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_by_retired_refresh_hash(
        &self,
        hash: &StoredKeyHash,
    ) -> Result<Session, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = \
             (SELECT session_id FROM retired_refresh_tokens WHERE refresh_hash = $1)"
        ))
        .bind(hash.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        session_from_row(&row)
    }

    async fn revoke_session(
        &self,
        id: &SessionId,
        at: Timestamp,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated =
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(format_time(at))
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let stale = Stale::Session {
            id: id.clone(),
            tokens_expire_at,
        };
        Self::record_change(&mut tx, &stale, at).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, alg, sealed_private_key, public_jwk, created_at, activates_at, retires_at \
             FROM signing_keys ORDER BY activates_at DESC, kid DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_at: Option<Timestamp>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(at) = retire_others_at {
            sqlx::query("UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL")
                .bind(format_time(at))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, sealed_private_key, public_jwk, created_at, \
             activates_at, retires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.kid)
        .bind(key.alg.as_str())
        .bind(&key.sealed_private_key)
        .bind(to_json(&key.public)?)
        .bind(format_time(key.created_at))
        .bind(format_time(key.activates_at))
        .bind(key.retires_at.map(format_time))
        .execute(&mut *tx)
        .await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_change(&self) -> Result<u64, StoreError> {
        let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM invalidations")
            .fetch_one(&self.pool)
            .await?;
        Ok(latest.map_or(0, to_u64))
    }

    async fn changes_since(&self, cursor: u64, limit: u64) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject, session_expires_at FROM invalidations \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(cursor))
        .bind(to_i64(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn live_session_revocations(&self, now_secs: i64) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject, session_expires_at FROM invalidations \
             WHERE kind = 'session' AND session_expires_at > $1 ORDER BY seq",
        )
        .bind(now_secs)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(change_from_row).collect()
    }
    async fn create_group(&self, group: &Group, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO groups (id, name, priority, pools, created_at, updated_at, rate_limits, \
             quotas) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(group.id.as_str())
        .bind(&group.name)
        .bind(i64::from(group.priority))
        .bind(to_json(&group.pools)?)
        .bind(format_time(group.created_at))
        .bind(format_time(group.updated_at))
        .bind(to_json(&group.rate_limits)?)
        .bind(to_json(&group.quotas)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, "group name"))?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_group(&self, group: &Group, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE groups SET name = $1, priority = $2, pools = $3, updated_at = $4, \
             rate_limits = $6, quotas = $7 WHERE id = $5",
        )
        .bind(&group.name)
        .bind(i64::from(group.priority))
        .bind(to_json(&group.pools)?)
        .bind(format_time(group.updated_at))
        .bind(group.id.as_str())
        .bind(to_json(&group.rate_limits)?)
        .bind(to_json(&group.quotas)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, "group name"))?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::stale_members(&mut tx, &group.id, group.updated_at).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_group(&self, id: &GroupId, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::stale_members(&mut tx, id, audit.at).await?;
        sqlx::query("DELETE FROM group_members WHERE group_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn group(&self, id: &GroupId) -> Result<Group, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        group_from_row(&row)
    }

    async fn groups(&self) -> Result<Vec<Group>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups g ORDER BY g.priority DESC, g.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn add_member(
        &self,
        group: &GroupId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO group_members (group_id, user_id, added_at) VALUES ($1, $2, $3)")
            .bind(group.as_str())
            .bind(user.as_str())
            .bind(format_time(audit.at))
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "membership"))?;
        Self::record_change(&mut tx, &Stale::User(user.clone()), audit.at).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_member(
        &self,
        group: &GroupId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::record_change(&mut tx, &Stale::User(user.clone()), audit.at).await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<UserId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY added_at, user_id",
        )
        .bind(group.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(UserId::from_string).collect())
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<Group>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 ORDER BY g.priority DESC, g.id"
        ))
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(group_from_row).collect()
    }

    async fn create_backend(
        &self,
        backend: &Backend,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO backends ({BACKEND_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(backend.id.as_str())
        .bind(backend.url.to_string())
        .bind(i64::from(backend.weight.get()))
        .bind(&backend.health_check_path)
        .bind(backend.pool.as_str())
        .bind(i64::from(backend.enabled))
        .bind(backend.tls_sni.as_deref())
        .bind(backend.health.status.as_str())
        .bind(i64::from(backend.health.consecutive_failures))
        .bind(i64::from(backend.health.consecutive_successes))
        .bind(backend.health.last_checked_at.map(format_time))
        .bind(
            backend
                .health
                .last_latency_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        )
        .bind(backend.health.last_error.as_deref())
        .bind(format_time(backend.created_at))
        .bind(format_time(backend.updated_at))
        .execute(&mut *tx)
        .await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_backend(
        &self,
        backend: &Backend,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE backends SET url = $1, weight = $2, health_check_path = $3, pool = $4, \
             enabled = $5, tls_sni = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(backend.url.to_string())
        .bind(i64::from(backend.weight.get()))
        .bind(&backend.health_check_path)
        .bind(backend.pool.as_str())
        .bind(i64::from(backend.enabled))
        .bind(backend.tls_sni.as_deref())
        .bind(format_time(backend.updated_at))
        .bind(backend.id.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_backend(&self, id: &BackendId, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM backends WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn backend(&self, id: &BackendId) -> Result<Backend, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BACKEND_COLUMNS} FROM backends WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        backend_from_row(&row)
    }

    async fn backends(&self) -> Result<Vec<Backend>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BACKEND_COLUMNS} FROM backends ORDER BY pool, created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(backend_from_row).collect()
    }

    async fn record_health(
        &self,
        id: &BackendId,
        health: &BackendHealth,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE backends SET health_status = $1, consecutive_failures = $2, \
             consecutive_successes = $3, last_checked_at = $4, last_latency_ms = $5, \
             last_error = $6 WHERE id = $7",
        )
        .bind(health.status.as_str())
        .bind(i64::from(health.consecutive_failures))
        .bind(i64::from(health.consecutive_successes))
        .bind(health.last_checked_at.map(format_time))
        .bind(
            health
                .last_latency_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        )
        .bind(health.last_error.as_deref())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if let Some(audit) = audit {
            Self::insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn apply_usage(
        &self,
        batch_id: &str,
        entries: &[UsageEntry],
        at: Timestamp,
    ) -> Result<UsageOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let first_time = sqlx::query(
            "INSERT INTO usage_batches (batch_id, applied_at) VALUES ($1, $2) \
             ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(format_time(at))
        .execute(&mut *tx)
        .await?;
        if first_time.rows_affected() == 0 {
            return Ok(UsageOutcome::AlreadyApplied);
        }
        let mut reached = Vec::new();
        for entry in entries {
            let after = Self::add_usage(&mut tx, entry).await?;
            // Only growth can reach a quota, and growth is never cut by the floor at 0.
            let storage_change = entry.storage_bytes.unsigned_abs();
            let before = Usage {
                requests: after.requests.saturating_sub(entry.requests),
                bytes: after.bytes.saturating_sub(entry.bytes),
                storage_bytes: if entry.storage_bytes < 0 {
                    after.storage_bytes.saturating_add(storage_change)
                } else {
                    after.storage_bytes.saturating_sub(storage_change)
                },
            };
            let crossed = entry.quotas.crossed(&before, &after);
            // Freed storage can end an exhaustion: Envoys must learn that too.
            let released =
                entry.quotas.exhausted(&after).len() < entry.quotas.exhausted(&before).len();
            if crossed.is_empty() && !released {
                continue;
            }
            Self::record_change(&mut tx, &Stale::User(entry.user.clone()), at).await?;
            for quota in crossed {
                let audit = AuditEntry::new(
                    None,
                    "quota.exhausted",
                    entry.user.as_str(),
                    serde_json::json!({
                        "quota": quota.as_str(),
                        "period_start": format_time(entry.period.start),
                        "period_end": format_time(entry.period.end),
                    }),
                );
                Self::insert_audit(&mut tx, &audit).await?;
                reached.push((entry.user.clone(), quota));
            }
        }
        tx.commit().await?;
        Ok(UsageOutcome::Applied(reached))
    }

    async fn prune_usage_batches(&self, before: Timestamp) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM usage_batches WHERE applied_at < $1")
            .bind(format_time(before))
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected())
    }

    async fn usage(&self, user: &UserId, period_start: Timestamp) -> Result<Usage, StoreError> {
        let period = sqlx::query(
            "SELECT requests, bytes FROM usage_periods WHERE user_id = $1 AND period_start = $2",
        )
        .bind(user.as_str())
        .bind(format_time(period_start))
        .fetch_optional(&self.pool)
        .await?;
        let storage: Option<i64> =
            sqlx::query_scalar("SELECT bytes FROM usage_storage WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let (requests, bytes) = match period {
            Some(row) => (
                to_u64(row.try_get("requests")?),
                to_u64(row.try_get("bytes")?),
            ),
            None => (0, 0),
        };
        Ok(Usage {
            requests,
            bytes,
            storage_bytes: storage.map_or(0, to_u64),
        })
    }

    async fn pool_settings(&self) -> Result<Vec<(String, HealthCheckSettings)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, check_interval_secs, check_timeout_secs, unhealthy_threshold, \
             healthy_threshold FROM pools ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let number = |column: &str| -> Result<u32, StoreError> {
                    u32::try_from(row.try_get::<i64, _>(column)?)
                        .map_err(|_| StoreError::Corrupt(format!("{column} out of range")))
                };
                Ok((
                    row.try_get("name")?,
                    HealthCheckSettings {
                        interval_secs: number("check_interval_secs")?,
                        timeout_secs: number("check_timeout_secs")?,
                        unhealthy_threshold: number("unhealthy_threshold")?,
                        healthy_threshold: number("healthy_threshold")?,
                    },
                ))
            })
            .collect()
    }

    async fn set_pool_settings(
        &self,
        pool: &str,
        settings: &HealthCheckSettings,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM pools WHERE name = $1")
            .bind(pool)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pools (name, check_interval_secs, check_timeout_secs, \
             unhealthy_threshold, healthy_threshold, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(pool)
        .bind(i64::from(settings.interval_secs))
        .bind(i64::from(settings.timeout_secs))
        .bind(i64::from(settings.unhealthy_threshold))
        .bind(i64::from(settings.healthy_threshold))
        .bind(format_time(audit.at))
        .execute(&mut *tx)
        .await?;
        Self::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
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

fn conflict_or(error: sqlx::Error, what: &'static str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Unavailable(error),
    }
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn format_time(at: Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(column: &str, value: &str) -> Result<Timestamp, StoreError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn optional_time(row: &AnyRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    row.try_get::<Option<String>, _>(column)?
        .map(|value| parse_time(column, &value))
        .transpose()
}

fn required_time(row: &AnyRow, column: &str) -> Result<Timestamp, StoreError> {
    parse_time(column, &row.try_get::<String, _>(column)?)
}

fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let status: String = row.try_get("status")?;
    let role: String = row.try_get("role")?;
    Ok(User {
        id: UserId::from_string(row.try_get("id")?),
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        status: UserStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("user status {status:?}")))?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role:?}")))?,
        tenant_id: row.try_get("tenant_id")?,
        groups: Vec::new(),
        ip_allowlist: from_json("ip_allowlist", &row.try_get::<String, _>("ip_allowlist")?)?,
        rate_limits: from_json("rate_limits", &row.try_get::<String, _>("rate_limits")?)?,
        quotas: from_json("quotas", &row.try_get::<String, _>("quotas")?)?,
        password_hash: row.try_get("password_hash")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
    let status: String = row.try_get("key_status")?;
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiKey {
        id: ApiKeyId::from_string(row.try_get("key_id")?),
        user_id: UserId::from_string(row.try_get("user_id")?),
        name: row.try_get("key_name")?,
        prefix: row.try_get("prefix")?,
        last4: row.try_get("last4")?,
        hash: StoredKeyHash::from_string(row.try_get("key_hash")?),
        status: KeyStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("key status {status:?}")))?,
        scopes: from_json("scopes", &scopes)?,
        rate_limits: from_json(
            "key rate_limits",
            &row.try_get::<String, _>("key_rate_limits")?,
        )?,
        expires_at: optional_time(row, "expires_at")?,
        created_at: required_time(row, "key_created_at")?,
        revoked_at: optional_time(row, "revoked_at")?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let details: String = row.try_get("details")?;
    Ok(AuditEntry {
        id: AuditId::from_string(row.try_get("id")?),
        at: required_time(row, "at")?,
        actor_user_id: row
            .try_get::<Option<String>, _>("actor_user_id")?
            .map(UserId::from_string),
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        details: from_json("audit details", &details)?,
    })
}

fn session_from_row(row: &AnyRow) -> Result<Session, StoreError> {
    let method: String = row.try_get("method")?;
    Ok(Session {
        id: SessionId::from_string(row.try_get("id")?),
        user_id: UserId::from_string(row.try_get("user_id")?),
        refresh_hash: StoredKeyHash::from_string(row.try_get("refresh_hash")?),
        method: LoginMethod::parse(&method)
            .ok_or_else(|| StoreError::Corrupt(format!("login method {method:?}")))?,
        created_at: required_time(row, "created_at")?,
        refresh_expires_at: required_time(row, "refresh_expires_at")?,
        revoked_at: optional_time(row, "revoked_at")?,
    })
}

fn signing_key_from_row(row: &AnyRow) -> Result<SigningKeyRecord, StoreError> {
    let alg: String = row.try_get("alg")?;
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        alg: SigningAlgorithm::parse(&alg)
            .ok_or_else(|| StoreError::Corrupt(format!("signing algorithm {alg:?}")))?,
        sealed_private_key: row.try_get("sealed_private_key")?,
        public: from_json("public_jwk", &row.try_get::<String, _>("public_jwk")?)?,
        created_at: required_time(row, "created_at")?,
        activates_at: required_time(row, "activates_at")?,
        retires_at: optional_time(row, "retires_at")?,
    })
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

fn group_from_row(row: &AnyRow) -> Result<Group, StoreError> {
    Ok(Group {
        id: GroupId::from_string(row.try_get("id")?),
        name: row.try_get("name")?,
        priority: i32::try_from(row.try_get::<i64, _>("priority")?)
            .map_err(|_| StoreError::Corrupt("group priority out of range".into()))?,
        pools: from_json("pools", &row.try_get::<String, _>("pools")?)?,
        rate_limits: from_json("rate_limits", &row.try_get::<String, _>("rate_limits")?)?,
        quotas: from_json("quotas", &row.try_get::<String, _>("quotas")?)?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}

fn backend_from_row(row: &AnyRow) -> Result<Backend, StoreError> {
    let url: String = row.try_get("url")?;
    let status: String = row.try_get("health_status")?;
    let count = |column: &str| -> Result<u32, StoreError> {
        u32::try_from(row.try_get::<i64, _>(column)?)
            .map_err(|_| StoreError::Corrupt(format!("{column} out of range")))
    };
    Ok(Backend {
        id: BackendId::from_string(row.try_get("id")?),
        url: BackendUrl::parse(&url).map_err(|e| StoreError::Corrupt(format!("backend {e}")))?,
        weight: Weight::try_from(count("weight")?)
            .map_err(|e| StoreError::Corrupt(format!("backend {e}")))?,
        health_check_path: row.try_get("health_check_path")?,
        pool: PoolName::try_from(row.try_get::<String, _>("pool")?)
            .map_err(|e| StoreError::Corrupt(format!("backend {e}")))?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        tls_sni: row.try_get("tls_sni")?,
        health: BackendHealth {
            status: HealthStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("health status {status:?}")))?,
            consecutive_failures: count("consecutive_failures")?,
            consecutive_successes: count("consecutive_successes")?,
            last_checked_at: optional_time(row, "last_checked_at")?,
            last_latency_ms: row
                .try_get::<Option<i64>, _>("last_latency_ms")?
                .map(|ms| u64::try_from(ms).unwrap_or(0)),
            last_error: row.try_get("last_error")?,
        },
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}
