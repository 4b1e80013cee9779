//! [`UserStore`] on SQL: the `users` table; a user is read with its group ids.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::columns::{
    conflict_or, escape_like, format_time, from_json, named, required_time, to_i64, to_json,
    to_u64, touched, AnyQuery,
};
use super::sessions::end_sessions_of;
use super::sql::Write;
use super::{GroupStore, Page, SqlStore, StoreError, Written};
use crate::accounts::user::{Role, User, UserStatus};
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Stale;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::Timestamp;

pub(super) const USER_COLUMNS: &str = "u.id, u.username, u.email, u.name, u.status, u.role, \
     u.tenant_id, u.ip_allowlist, u.rate_limits, u.quotas, u.password_hash, \
     u.password_change_required, u.mfa_required, u.created_at, u.updated_at";

/// Which users a listing returns, and which page of them.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Matches a substring of username, email or name.
    pub text: Option<String>,
    pub status: Option<UserStatus>,
    pub offset: u64,
    pub limit: u64,
}

/// Users, each read with the ids of its groups.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, user: &User, audit: &AuditEntry) -> Written;
    /// Replaces a user; the data plane's copy of the user becomes stale.
    async fn update_user(&self, user: &User, audit: &AuditEntry) -> Written;
    /// Replaces a user and, in the same write, ends every session of the user (see
    /// [`end_sessions_of`]): for a password change, a suspension or a deletion.
    async fn update_user_ending_sessions(
        &self,
        user: &User,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written;
    /// A person's own password change: sets only the hash (to `new`), clears
    /// `password_change_required` and sets `updated_at` to `at`, if the account is still active
    /// and its hash is still `verified` (the one the current password was checked against),
    /// and in the same write ends every session of the user but `keep`. `NotFound`, changing
    /// nothing, when an admin's suspension, deletion or reset, or another change, came
    /// between.
    #[allow(clippy::too_many_arguments)]
    async fn change_own_password(
        &self,
        id: &UserId,
        verified: &str,
        new: &str,
        at: Timestamp,
        keep: Option<&SessionId>,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written;
    /// An admin's reset: sets only the hash (to `new`), `password_change_required` and
    /// `updated_at` of a user not deleted, and ends every session of the user in the same
    /// write; `NotFound` when the user is gone or deleted.
    async fn reset_password(
        &self,
        id: &UserId,
        new: &str,
        at: Timestamp,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written;
    /// Replaces the user's password hash with `new` if it is still `old` (a stronger hash of
    /// the same password); `NotFound` when the password changed meanwhile.
    async fn replace_password_hash(
        &self,
        id: &UserId,
        old: &str,
        new: &str,
        audit: &AuditEntry,
    ) -> Written;
    async fn user(&self, id: &UserId) -> Result<User, StoreError>;
    /// The user whose username is `username`, whatever the case of either.
    async fn user_by_username(&self, username: &str) -> Result<User, StoreError>;
    /// The user whose email is `email`, whatever the case of either.
    async fn user_by_email(&self, email: &str) -> Result<User, StoreError>;
    async fn users(&self, query: &UserQuery) -> Result<Page<User>, StoreError>;
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &User, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| insert_user(write, user).await)
            .await
    }

    async fn update_user(&self, user: &User, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| replace_user(write, user).await)
            .await
    }

    async fn update_user_ending_sessions(
        &self,
        user: &User,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            replace_user(write, user).await?;
            end_sessions_of(write, &user.id, None, user.updated_at, tokens_expire_at).await
        })
        .await
    }

    async fn change_own_password(
        &self,
        id: &UserId,
        verified: &str,
        new: &str,
        at: Timestamp,
        keep: Option<&SessionId>,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written {
        // Only as read: active, with the hash checked.
        let values = [verified, UserStatus::Active.as_str()];
        PasswordWrite {
            id,
            new,
            change_required: false,
            at,
            condition: "password_hash = $5 AND status = $6",
            values: &values,
            keep,
            tokens_expire_at,
        }
        .apply(self, audit)
        .await
    }

    async fn reset_password(
        &self,
        id: &UserId,
        new: &str,
        at: Timestamp,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written {
        PasswordWrite {
            id,
            new,
            change_required: true,
            at,
            condition: "status <> $5",
            values: &[UserStatus::Deleted.as_str()],
            keep: None,
            tokens_expire_at,
        }
        .apply(self, audit)
        .await
    }

    async fn replace_password_hash(
        &self,
        id: &UserId,
        old: &str,
        new: &str,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            let updated = sqlx::query(
                "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
            )
            .bind(new)
            .bind(id.as_str())
            .bind(old)
            .execute(write.rows())
            .await?;
            touched(&updated)
        })
        .await
    }

    async fn user(&self, id: &UserId) -> Result<User, StoreError> {
        self.user_where("u.id = $1", id.as_str()).await
    }

    async fn user_by_username(&self, username: &str) -> Result<User, StoreError> {
        self.user_where("LOWER(u.username) = LOWER($1)", username)
            .await
    }

    async fn user_by_email(&self, email: &str) -> Result<User, StoreError> {
        self.user_where("LOWER(u.email) = LOWER($1)", email).await
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
                .fetch_one(&self.reads)
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE {filter} \
             ORDER BY u.created_at, u.id LIMIT $3 OFFSET $4"
        ))
        .bind(pattern.as_deref())
        .bind(status)
        .bind(to_i64(query.limit))
        .bind(to_i64(query.offset))
        .fetch_all(&self.reads)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            items.push(self.user_from_row(row).await?);
        }
        Ok(Page {
            items,
            total: to_u64(total),
        })
    }
}

impl SqlStore {
    pub(super) async fn user_where(
        &self,
        condition: &str,
        value: &str,
    ) -> Result<User, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE {condition}");
        self.user_from_row(&self.select_one(&sql, value).await?)
            .await
    }

    /// The user of a row selected with [`USER_COLUMNS`], with its group ids.
    pub(super) async fn user_from_row(&self, row: &AnyRow) -> Result<User, StoreError> {
        let mut user = User {
            id: UserId::from_string(row.try_get("id")?),
            username: row.try_get("username")?,
            email: row.try_get("email")?,
            name: row.try_get("name")?,
            status: named(row, "status", UserStatus::parse)?,
            role: named(row, "role", Role::parse)?,
            tenant_id: row.try_get("tenant_id")?,
            groups: Vec::new(),
            ip_allowlist: from_json(row, "ip_allowlist")?,
            rate_limits: from_json(row, "rate_limits")?,
            quotas: from_json(row, "quotas")?,
            password_hash: row.try_get("password_hash")?,
            password_change_required: row.try_get::<i64, _>("password_change_required")? != 0,
            mfa_required: row.try_get::<i64, _>("mfa_required")? != 0,
            created_at: required_time(row, "created_at")?,
            updated_at: required_time(row, "updated_at")?,
        };
        user.groups = self
            .groups_of(&user.id)
            .await?
            .into_iter()
            .map(|group| group.id.to_string())
            .collect();
        Ok(user)
    }
}

/// A write of only the password of a user, and whether it must be changed, if `condition`
/// (on `values`, from `$5`) holds, ending every session of the user but `keep` in the same
/// write; the data plane's copy of the user becomes stale.
struct PasswordWrite<'a> {
    id: &'a UserId,
    new: &'a str,
    change_required: bool,
    at: Timestamp,
    condition: &'static str,
    values: &'a [&'a str],
    keep: Option<&'a SessionId>,
    tokens_expire_at: i64,
}

impl PasswordWrite<'_> {
    /// `NotFound` when no row is the user's with `condition` holding.
    async fn apply(&self, store: &SqlStore, audit: &AuditEntry) -> Written {
        store
            .write(audit, async |write| {
                self.update(write).await?;
                end_sessions_of(write, self.id, self.keep, self.at, self.tokens_expire_at).await
            })
            .await
    }

    async fn update(&self, write: &mut Write) -> Written {
        let sql = format!(
            "UPDATE users SET password_hash = $1, password_change_required = $2, \
             updated_at = $3 WHERE id = $4 AND {}",
            self.condition
        );
        let mut update = sqlx::query(&sql)
            .bind(self.new)
            .bind(i64::from(self.change_required))
            .bind(format_time(self.at))
            .bind(self.id.as_str());
        for value in self.values {
            update = update.bind(*value);
        }
        touched(&update.execute(write.rows()).await?)?;
        write.stale(&Stale::User(self.id.clone()), self.at).await
    }
}

/// Inserts the user's row; `Conflict` when another user has its username or email.
pub(super) async fn insert_user(write: &mut Write, user: &User) -> Written {
    let insert = sqlx::query(
        "INSERT INTO users (id, username, created_at, email, name, status, role, \
         tenant_id, password_hash, updated_at, ip_allowlist, rate_limits, quotas, \
         password_change_required, mfa_required) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(user.id.as_str())
    .bind(&user.username)
    .bind(format_time(user.created_at));
    bind_changeable(insert, user)?
        .execute(write.rows())
        .await
        .map_err(name_taken_or)?;
    Ok(())
}

/// Replaces the user's row; the data plane's copy of the user becomes stale.
async fn replace_user(write: &mut Write, user: &User) -> Written {
    let update = sqlx::query(
        "UPDATE users SET email = $2, name = $3, status = $4, role = $5, tenant_id = $6, \
         password_hash = $7, updated_at = $8, ip_allowlist = $9, rate_limits = $10, \
         quotas = $11, password_change_required = $12, mfa_required = $13 WHERE id = $1",
    )
    .bind(user.id.as_str());
    let updated = bind_changeable(update, user)?
        .execute(write.rows())
        .await
        .map_err(name_taken_or)?;
    touched(&updated)?;
    write
        .stale(&Stale::User(user.id.clone()), user.updated_at)
        .await
}

/// Binds what a change may set of a user (email to quotas, then whether the password must be
/// changed and whether a second factor is required, in that order).
fn bind_changeable<'q>(query: AnyQuery<'q>, user: &'q User) -> Result<AnyQuery<'q>, StoreError> {
    Ok(query
        .bind(user.email.as_deref())
        .bind(user.name.as_deref())
        .bind(user.status.as_str())
        .bind(user.role.as_str())
        .bind(user.tenant_id.as_deref())
        .bind(user.password_hash.as_deref())
        .bind(format_time(user.updated_at))
        .bind(to_json(&user.ip_allowlist)?)
        .bind(to_json(&user.rate_limits)?)
        .bind(to_json(&user.quotas)?)
        .bind(i64::from(user.password_change_required))
        .bind(i64::from(user.mfa_required)))
}

/// `Conflict("email")` or `Conflict("username")` when a write would store a name another user
/// has (in any case); `Unavailable` otherwise.
fn name_taken_or(error: sqlx::Error) -> StoreError {
    let on_email = matches!(&error, sqlx::Error::Database(db) if db.message().contains("email"));
    conflict_or(error, if on_email { "email" } else { "username" })
}
