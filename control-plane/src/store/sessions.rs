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

/// `last_used_at` is empty in a session written by a replica older than migration 0010 (during
/// a rolling upgrade); it reads as `created_at` then.
const SESSION_COLUMNS: &str = "id, user_id, refresh_hash, method, address, user_agent, \
     created_at, COALESCE(last_used_at, created_at) AS last_used_at, refresh_expires_at, \
     revoked_at";

/// Login sessions with their refresh tokens, and the keys that sign their access tokens.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session, audit: &AuditEntry) -> Written;
    /// Creates a session and, in the same write, ends the user's oldest live sessions beyond
    /// `max_live` (this one included in the count); returns the ids of those it ended, whose
    /// tokens stay refused by the data plane until `tokens_expire_at`.
    async fn create_session_within_cap(
        &self,
        session: &Session,
        max_live: u32,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<Vec<SessionId>, StoreError>;
    async fn session(&self, id: &SessionId) -> Result<Session, StoreError>;
    /// The user's sessions that are live at `at`, newest first.
    async fn live_sessions_of(
        &self,
        user: &UserId,
        at: Timestamp,
    ) -> Result<Vec<Session>, StoreError>;
    /// Ends every session of `user` (log out everywhere), like [`end_sessions_of`].
    async fn end_sessions(
        &self,
        user: &UserId,
        at: Timestamp,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written;
    async fn session_by_refresh_hash(&self, hash: &StoredKeyHash) -> Result<Session, StoreError>;
    /// The session a replaced (retired) refresh token belonged to.
    async fn session_by_retired_refresh_hash(
        &self,
        hash: &StoredKeyHash,
    ) -> Result<Session, StoreError>;
    /// Replaces the refresh token of a live session, only if `old` is still current; `old`
    /// is remembered as retired, and the session counts as used now.
    async fn replace_refresh_hash(
        &self,
        id: &SessionId,
        old: &StoredKeyHash,
        new: &StoredKeyHash,
        audit: &AuditEntry,
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
        self.write(audit, async |write| insert_session(write, session).await)
            .await
    }

    async fn create_session_within_cap(
        &self,
        session: &Session,
        max_live: u32,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<Vec<SessionId>, StoreError> {
        self.write(audit, async |write| {
            insert_session(write, session).await?;
            let at = session.created_at;
            let live: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
                 AND refresh_expires_at > $2 ORDER BY created_at DESC, id DESC",
            )
            .bind(session.user_id.as_str())
            .bind(format_time(at))
            .fetch_all(write.rows())
            .await?;
            let keep = usize::try_from(max_live).unwrap_or(usize::MAX);
            let mut ended = Vec::new();
            for id in live.into_iter().skip(keep) {
                let id = SessionId::from_string(id);
                end_session(write, &id, at, tokens_expire_at).await?;
                let audit = AuditEntry::new(
                    Some(session.user_id.clone()),
                    "session.ended",
                    id.as_str(),
                    serde_json::json!({"reason": "session_cap", "max_per_user": max_live}),
                );
                write.audit(&audit).await?;
                ended.push(id);
            }
            Ok(ended)
        })
        .await
    }

    async fn live_sessions_of(
        &self,
        user: &UserId,
        at: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND refresh_expires_at > $2 ORDER BY created_at DESC, id DESC"
        ))
        .bind(user.as_str())
        .bind(format_time(at))
        .fetch_all(&self.reads)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn end_sessions(
        &self,
        user: &UserId,
        at: Timestamp,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            end_sessions_of(write, user, None, at, tokens_expire_at).await
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
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            let at = format_time(crate::domain::now());
            let updated = sqlx::query(
                "UPDATE sessions SET refresh_hash = $1, last_used_at = $4 \
                 WHERE id = $2 AND refresh_hash = $3 AND revoked_at IS NULL",
            )
            .bind(new.as_str())
            .bind(id.as_str())
            .bind(old.as_str())
            .bind(&at)
            .execute(write.rows())
            .await?;
            touched(&updated)?;
            sqlx::query(
                "INSERT INTO retired_refresh_tokens (refresh_hash, session_id, retired_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(old.as_str())
            .bind(id.as_str())
            .bind(&at)
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
            end_session(write, id, at, tokens_expire_at).await
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

async fn insert_session(write: &mut Write, session: &Session) -> Written {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, refresh_hash, method, address, user_agent, \
         created_at, last_used_at, refresh_expires_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(session.id.as_str())
    .bind(session.user_id.as_str())
    .bind(session.refresh_hash.as_str())
    .bind(session.method.as_str())
    .bind(session.address.as_deref())
    .bind(session.user_agent.as_deref())
    .bind(format_time(session.created_at))
    .bind(format_time(session.last_used_at))
    .bind(format_time(session.refresh_expires_at))
    .bind(session.revoked_at.map(format_time))
    .execute(write.rows())
    .await
    .map_err(|e| conflict_or(e, "session"))?;
    Ok(())
}

/// Ends one live session within `write`; its access tokens stay refused by the data plane
/// until `tokens_expire_at`. `NotFound` when it had already ended.
async fn end_session(
    write: &mut Write,
    id: &SessionId,
    at: Timestamp,
    tokens_expire_at: i64,
) -> Written {
    let updated =
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
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
}

/// Ends every session of `user` but `keep` within `write`: their refresh tokens stop working
/// at once, and the data plane refuses the access tokens of those that may still hold live
/// ones until `tokens_expire_at` (Unix seconds, when every access token issued until `at` has
/// expired).
pub(super) async fn end_sessions_of(
    write: &mut Write,
    user: &UserId,
    keep: Option<&SessionId>,
    at: Timestamp,
    tokens_expire_at: i64,
) -> Written {
    // Session ids are never empty, so "" keeps none.
    let keep = keep.map_or("", SessionId::as_str);
    let open = sqlx::query(
        "SELECT id, refresh_expires_at FROM sessions \
         WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2",
    )
    .bind(user.as_str())
    .bind(keep)
    .fetch_all(write.rows())
    .await?;
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 \
         WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3",
    )
    .bind(format_time(at))
    .bind(user.as_str())
    .bind(keep)
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
        address: row.try_get("address")?,
        user_agent: row.try_get("user_agent")?,
        created_at: required_time(row, "created_at")?,
        last_used_at: required_time(row, "last_used_at")?,
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
