//! The [`Store`] for SQLite and Postgres. Both speak the same portable SQL through
//! sqlx's `Any` driver; only the connection URL and the migration folder differ.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use super::{KeyOwner, Page, Store, StoreError, UserQuery};
use crate::domain::api_key::{ApiKey, KeyStatus, StoredKeyHash};
use crate::domain::audit::AuditEntry;
use crate::domain::ids::{ApiKeyId, AuditId, UserId};
use crate::domain::user::{Role, User, UserStatus};
use crate::domain::Timestamp;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

const USER_COLUMNS: &str = "u.id, u.username, u.email, u.name, u.status, u.role, u.tenant_id, \
     u.password_hash, u.created_at, u.updated_at";
const KEY_COLUMNS: &str = "k.id AS key_id, k.user_id, k.name AS key_name, k.prefix, k.last4, \
     k.key_hash, k.status AS key_status, k.scopes, k.expires_at, k.created_at AS key_created_at, \
     k.revoked_at";

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

    async fn insert_key(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        key: &ApiKey,
    ) -> Result<(), StoreError> {
        let scopes =
            serde_json::to_string(&key.scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, last4, key_hash, status, scopes, \
             expires_at, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .execute(&mut **tx)
        .await
        .map_err(|e| conflict_or(e, "api key"))?;
        Ok(())
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
             password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
             password_hash = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(user.email.as_deref())
        .bind(user.name.as_deref())
        .bind(user.status.as_str())
        .bind(user.role.as_str())
        .bind(user.tenant_id.as_deref())
        .bind(user.password_hash.as_deref())
        .bind(format_time(user.updated_at))
        .bind(user.id.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
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
        user_from_row(&row)
    }

    async fn user_by_username(&self, username: &str) -> Result<User, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        user_from_row(&row)
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
        Ok(Page {
            items: rows.iter().map(user_from_row).collect::<Result<_, _>>()?,
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
            user: user_from_row(&row)?,
        })
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
        scopes: serde_json::from_str(&scopes)
            .map_err(|e| StoreError::Corrupt(format!("scopes: {e}")))?,
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
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
    })
}
