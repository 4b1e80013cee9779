//! [`SessionStore`] on SQL: the `sessions`, `retired_refresh_tokens` and `signing_keys`
//! tables.

use async_trait::async_trait;
use chrono::Duration;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::columns::{
    conflict_or, format_time, from_json, named, optional_time, required_time, to_json, touched,
};
use super::sql::Write;
use super::{SqlStore, StoreError, Written};
use crate::accounts::api_key::StoredKeyHash;
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Stale;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::Timestamp;
use crate::identity::session::{LoginMethod, Session};
use crate::identity::signing::{SigningAlgorithm, SigningKeyRecord};

const SESSION_COLUMNS: &str =
    "id, user_id, refresh_hash, method, created_at, refresh_expires_at, revoked_at";

/// Login sessions with their refresh tokens, and the keys that sign their access tokens.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session, audit: &AuditEntry) -> Written;
    async fn session(&self, id: &SessionId) -> Result<Session, StoreError>;
    async fn session_by_refresh_hash(&self, hash: &StoredKeyHash) -> Result<Session, StoreError>;
    /// The session a replaced (retired) refresh token belonged to.
    async fn session_by_retired_refresh_hash(
        &self,
        hash: &StoredKeyHash,
    ) -> Result<Session, StoreError>;
    /// Replaces the refresh token of a live session, only if `old` is still current; `old`
    /// is remembered as retired.
    async fn replace_refresh_hash(
        &self,
        id: &SessionId,
        old: &StoredKeyHash,
        new: &StoredKeyHash,
    ) -> Written;
    /// Ends a session; its tokens stay refused by the data plane until `tokens_expire_at`.
    async fn revoke_session(
        &self,
        id: &SessionId,
        at: Timestamp,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written;

    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Adds a key; keys without a retirement time get `retire_others_at`.
    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_at: Option<Timestamp>,
        audit: &AuditEntry,
    ) -> Written;
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn create_session(&self, session: &Session, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
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
            .execute(write.rows())
            .await
            .map_err(|e| conflict_or(e, "session"))?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id: &SessionId) -> Result<Session, StoreError> {
        self.session_where("id = $1", id.as_str()).await
    }

    async fn session_by_refresh_hash(&self, hash: &StoredKeyHash) -> Result<Session, StoreError> {
        self.session_where("refresh_hash = $1", hash.as_str()).await
    }

    async fn session_by_retired_refresh_hash(
        &self,
        hash: &StoredKeyHash,
    ) -> Result<Session, StoreError> {
        self.session_where(
            "id = (SELECT session_id FROM retired_refresh_tokens WHERE refresh_hash = $1)",
            hash.as_str(),
        )
        .await
    }

    async fn replace_refresh_hash(
        &self,
        id: &SessionId,
        old: &StoredKeyHash,
        new: &StoredKeyHash,
    ) -> Written {
        self.write(None, async |write| {
            let updated = sqlx::query(
                "UPDATE sessions SET refresh_hash = $1 \
                 WHERE id = $2 AND refresh_hash = $3 AND revoked_at IS NULL",
            )
            .bind(new.as_str())
            .bind(id.as_str())
            .bind(old.as_str())
            .execute(write.rows())
            .await?;
            touched(&updated)?;
            sqlx::query(
                "INSERT INTO retired_refresh_tokens (refresh_hash, session_id, retired_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(old.as_str())
            .bind(id.as_str())
            .bind(format_time(crate::domain::now()))
            .execute(write.rows())
            .await?;
            Ok(())
        })
        .await
    }

    async fn revoke_session(
        &self,
        id: &SessionId,
        at: Timestamp,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            let updated = sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(format_time(at))
            .bind(id.as_str())
            .execute(write.rows())
            .await?;
            touched(&updated)?;
            let stale = Stale::Session {
                id: id.clone(),
                tokens_expire_at,
            };
            write.stale(&stale, at).await
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let sql = "SELECT kid, alg, sealed_private_key, public_jwk, created_at, activates_at, \
                   retires_at FROM signing_keys ORDER BY activates_at DESC, kid DESC";
        self.select_all(sql, None, signing_key_from_row).await
    }

    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_at: Option<Timestamp>,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            if let Some(at) = retire_others_at {
                sqlx::query("UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL")
                    .bind(format_time(at))
                    .execute(write.rows())
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
            .execute(write.rows())
            .await?;
            Ok(())
        })
        .await
    }
}

/// Ends every session of `user` within `write`: their refresh tokens stop working at once, and
/// the data plane refuses the access tokens of those that may still hold live ones until
/// `tokens_expire_at` (Unix seconds, when every access token issued until `at` has expired).
pub(super) async fn end_sessions_of(
    write: &mut Write,
    user: &UserId,
    at: Timestamp,
    tokens_expire_at: i64,
) -> Written {
    let open = sqlx::query(
        "SELECT id, refresh_expires_at FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user.as_str())
    .fetch_all(write.rows())
    .await?;
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(format_time(at))
        .bind(user.as_str())
        .execute(write.rows())
        .await?;
    let access_lifetime = Duration::seconds(tokens_expire_at - at.timestamp());
    for row in &open {
        // A session's last access token was issued before its refresh token expired.
        if required_time(row, "refresh_expires_at")? + access_lifetime > at {
            let stale = Stale::Session {
                id: SessionId::from_string(row.try_get("id")?),
                tokens_expire_at,
            };
            write.stale(&stale, at).await?;
        }
    }
    Ok(())
}

impl SqlStore {
    async fn session_where(&self, condition: &str, value: &str) -> Result<Session, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE {condition}");
        session_from_row(&self.select_one(&sql, value).await?)
    }
}

fn session_from_row(row: &AnyRow) -> Result<Session, StoreError> {
    Ok(Session {
        id: SessionId::from_string(row.try_get("id")?),
        user_id: UserId::from_string(row.try_get("user_id")?),
        refresh_hash: StoredKeyHash::from_string(row.try_get("refresh_hash")?),
        method: named(row, "method", LoginMethod::parse)?,
        created_at: required_time(row, "created_at")?,
        refresh_expires_at: required_time(row, "refresh_expires_at")?,
        revoked_at: optional_time(row, "revoked_at")?,
    })
}

fn signing_key_from_row(row: &AnyRow) -> Result<SigningKeyRecord, StoreError> {
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        alg: named(row, "alg", SigningAlgorithm::parse)?,
        sealed_private_key: row.try_get("sealed_private_key")?,
        public: from_json(row, "public_jwk")?,
        created_at: required_time(row, "created_at")?,
        activates_at: required_time(row, "activates_at")?,
        retires_at: optional_time(row, "retires_at")?,
    })
}
