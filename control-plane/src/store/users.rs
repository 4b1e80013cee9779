//! [`UserStore`] on SQL: the `users` table; a user is read with its group ids.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::columns::{
    conflict_or, escape_like, format_time, from_json, named, required_time, to_i64, to_json,
    to_u64, touched, AnyQuery,
};
use super::keys::revoke_keys_of;
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
     u.password_change_required, u.mfa_required, u.organization, u.department, u.employee_id, \
     u.created_at, u.updated_at";

/// Which users a listing returns, in which order, and which page of them.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Matches a substring of username, email, name, organization, department or employee id.
    pub text: Option<String>,
    pub status: Option<UserStatus>,
    pub role: Option<Role>,
    pub tenant: Option<String>,
    /// Only members of this group.
    pub group: Option<String>,
    pub source: Option<LoginSource>,
    /// Only users of this tenant whose role is confined to it: what the tenant's staff reach.
    pub confined_to: Option<String>,
    pub order: UserOrder,
    pub offset: u64,
    pub limit: u64,
}

/// Where a user's logins are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoginSource {
    /// Here, or nowhere yet: no directory entry or provider account is linked.
    Local,
    Ldap,
    Oidc,
}

impl LoginSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Ldap => "ldap",
            Self::Oidc => "oidc",
        }
    }
}

/// The order of a listing of users; each ends with the id, so pages never overlap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
pub enum UserOrder {
    #[default]
    #[serde(rename = "created_at")]
    Oldest,
    #[serde(rename = "-created_at")]
    Newest,
    #[serde(rename = "username")]
    Username,
    #[serde(rename = "-username")]
    UsernameDescending,
}

impl UserOrder {
    fn sql(self) -> &'static str {
        match self {
            Self::Oldest => "u.created_at, u.id",
            Self::Newest => "u.created_at DESC, u.id DESC",
            Self::Username => "LOWER(u.username), u.id",
            Self::UsernameDescending => "LOWER(u.username) DESC, u.id DESC",
        }
    }
}

/// Users, each read with the ids of its groups.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, user: &User, audit: &AuditEntry) -> Written;
    /// Replaces a user; the data plane's copy of the user becomes stale.
    async fn update_user(&self, user: &User, audit: &AuditEntry) -> Written;
    /// Replaces a user and sets their memberships to exactly `user.groups`; with
    /// `tokens_expire_at`, also ends every session of the user, as
    /// [`UserStore::update_user_ending_sessions`].
    async fn update_user_with_groups(
        &self,
        user: &User,
        tokens_expire_at: Option<i64>,
        audit: &AuditEntry,
    ) -> Written;
    /// Marks a user deleted (as `user` says), ends every session of the user and revokes
    /// every key, all in one write; returns how many keys were revoked.
    async fn delete_user(
        &self,
        user: &User,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError>;
    /// Replaces a user and, in the same write, ends every session of the user (see
    /// [`end_sessions_of`]): for a password change or a suspension.
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
    /// Creates every user with their memberships, each audited by the entry of the same
    /// index in `audits`, in one write: all of them or, on any failure, none.
    async fn import_users(&self, users: &[User], audits: &[AuditEntry]) -> Written;
    /// Of `usernames` and `emails`, those some user has already, lowercase.
    async fn taken_names(
        &self,
        usernames: &[String],
        emails: &[String],
    ) -> Result<(HashSet<String>, HashSet<String>), StoreError>;
}

#[async_trait]
impl UserStore for SqlStore {
    async fn import_users(&self, users: &[User], audits: &[AuditEntry]) -> Written {
        self.write(None, async |write| {
            for (user, audit) in users.iter().zip(audits) {
                insert_user(write, user).await?;
                write.audit(audit).await?;
            }
            Ok(())
        })
        .await
    }

    async fn taken_names(
        &self,
        usernames: &[String],
        emails: &[String],
    ) -> Result<(HashSet<String>, HashSet<String>), StoreError> {
        Ok((
            self.taken("username", usernames).await?,
            self.taken("email", emails).await?,
        ))
    }

    async fn create_user(&self, user: &User, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| insert_user(write, user).await)
            .await
    }

    async fn update_user(&self, user: &User, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| replace_user(write, user).await)
            .await
    }

    async fn update_user_with_groups(
        &self,
        user: &User,
        tokens_expire_at: Option<i64>,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            replace_user(write, user).await?;
            if let Some(tokens_expire_at) = tokens_expire_at {
                end_sessions_of(write, &user.id, None, user.updated_at, tokens_expire_at).await?;
            }
            sqlx::query("DELETE FROM group_members WHERE user_id = $1")
                .bind(user.id.as_str())
                .execute(write.rows())
                .await?;
            insert_memberships(write, user).await
        })
        .await
    }

    async fn delete_user(
        &self,
        user: &User,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        self.write(audit, async |write| {
            replace_user(write, user).await?;
            end_sessions_of(write, &user.id, None, user.updated_at, tokens_expire_at).await?;
            revoke_keys_of(write, &user.id, user.updated_at).await
        })
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
        let filters = [
            pattern.as_deref(),
            query.status.map(UserStatus::as_str),
            query.role.map(Role::as_str),
            query.tenant.as_deref(),
            query.group.as_deref(),
            query.source.map(LoginSource::as_str),
            query.confined_to.as_deref(),
        ];
        let count = format!("SELECT COUNT(*) AS total FROM users u WHERE {USER_FILTER}");
        let total: i64 = with_filters(&count, &filters)
            .fetch_one(&self.reads)
            .await?
            .try_get("total")?;
        let select = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE {USER_FILTER} ORDER BY {} \
             LIMIT $8 OFFSET $9",
            query.order.sql()
        );
        let rows = with_filters(&select, &filters)
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

/// The conditions of a listing of users, on the filters of a [`UserQuery`] bound as `$1` to
/// `$7` (each `NULL` when not asked for).
const USER_FILTER: &str = "($1 IS NULL OR LOWER(u.username) LIKE $1 ESCAPE '\\' \
     OR LOWER(COALESCE(u.email, '')) LIKE $1 ESCAPE '\\' \
     OR LOWER(COALESCE(u.name, '')) LIKE $1 ESCAPE '\\' \
     OR LOWER(COALESCE(u.organization, '')) LIKE $1 ESCAPE '\\' \
     OR LOWER(COALESCE(u.department, '')) LIKE $1 ESCAPE '\\' \
     OR LOWER(COALESCE(u.employee_id, '')) LIKE $1 ESCAPE '\\') \
     AND ($2 IS NULL OR u.status = $2) \
     AND ($3 IS NULL OR u.role = $3) \
     AND ($4 IS NULL OR u.tenant_id = $4) \
     AND ($5 IS NULL OR EXISTS (SELECT 1 FROM group_members m \
          WHERE m.user_id = u.id AND m.group_id = $5)) \
     AND ($6 IS NULL \
          OR ($6 = 'ldap' AND EXISTS (SELECT 1 FROM ldap_links l WHERE l.user_id = u.id)) \
          OR ($6 = 'oidc' AND EXISTS (SELECT 1 FROM oidc_links o WHERE o.user_id = u.id)) \
          OR ($6 = 'local' AND NOT EXISTS (SELECT 1 FROM ldap_links l WHERE l.user_id = u.id) \
              AND NOT EXISTS (SELECT 1 FROM oidc_links o WHERE o.user_id = u.id))) \
     AND ($7 IS NULL OR (u.tenant_id = $7 \
          AND u.role IN ('tenant_admin', 'auditor', 'user')))";

fn with_filters<'q>(sql: &'q str, filters: &[Option<&'q str>]) -> AnyQuery<'q> {
    filters
        .iter()
        .fold(sqlx::query(sql), |query, filter| query.bind(*filter))
}

/// Names looked up at once by [`SqlStore::taken`].
const NAMES_PER_LOOKUP: usize = 500;

impl SqlStore {
    /// Of `names`, those some user has as `column` (any case), lowercase.
    async fn taken(&self, column: &str, names: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut taken = HashSet::new();
        for chunk in names.chunks(NAMES_PER_LOOKUP) {
            let placeholders: Vec<String> =
                (1..=chunk.len()).map(|n| format!("LOWER(${n})")).collect();
            let sql = format!(
                "SELECT LOWER({column}) FROM users WHERE LOWER({column}) IN ({})",
                placeholders.join(", ")
            );
            let found: Vec<String> = chunk
                .iter()
                .fold(sqlx::query_scalar(&sql), |query, name| query.bind(name))
                .fetch_all(&self.reads)
                .await?;
            taken.extend(found);
        }
        Ok(taken)
    }

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
            organization: row.try_get("organization")?,
            department: row.try_get("department")?,
            employee_id: row.try_get("employee_id")?,
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

/// Inserts the user's row and their memberships of `user.groups`; `Conflict` when another
/// user has its username or email.
pub(super) async fn insert_user(write: &mut Write, user: &User) -> Written {
    let insert = sqlx::query(
        "INSERT INTO users (id, username, created_at, email, name, status, role, \
         tenant_id, password_hash, updated_at, ip_allowlist, rate_limits, quotas, \
         password_change_required, mfa_required, organization, department, employee_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18)",
    )
    .bind(user.id.as_str())
    .bind(&user.username)
    .bind(format_time(user.created_at));
    bind_changeable(insert, user)?
        .execute(write.rows())
        .await
        .map_err(name_taken_or)?;
    insert_memberships(write, user).await
}

async fn insert_memberships(write: &mut Write, user: &User) -> Written {
    for group in &user.groups {
        sqlx::query("INSERT INTO group_members (group_id, user_id, added_at) VALUES ($1, $2, $3)")
            .bind(group)
            .bind(user.id.as_str())
            .bind(format_time(user.updated_at))
            .execute(write.rows())
            .await?;
    }
    Ok(())
}

/// Replaces the user's row; the data plane's copy of the user becomes stale.
async fn replace_user(write: &mut Write, user: &User) -> Written {
    let update = sqlx::query(
        "UPDATE users SET email = $2, name = $3, status = $4, role = $5, tenant_id = $6, \
         password_hash = $7, updated_at = $8, ip_allowlist = $9, rate_limits = $10, \
         quotas = $11, password_change_required = $12, mfa_required = $13, \
         organization = $14, department = $15, employee_id = $16 WHERE id = $1",
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
/// changed and whether a second factor is required, then the enterprise fields, in that
/// order).
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
        .bind(i64::from(user.mfa_required))
        .bind(user.organization.as_deref())
        .bind(user.department.as_deref())
        .bind(user.employee_id.as_deref()))
}

/// `Conflict("email")` or `Conflict("username")` when a write would store a name another user
/// has (in any case); `Unavailable` otherwise.
fn name_taken_or(error: sqlx::Error) -> StoreError {
    let on_email = matches!(&error, sqlx::Error::Database(db) if db.message().contains("email"));
    conflict_or(error, if on_email { "email" } else { "username" })
}
