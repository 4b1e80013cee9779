//! [`LdapLinkStore`] on SQL: the `ldap_links` table, which ties a user to its directory entry.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::columns::{format_time, optional_time, required_time, touched};
use super::users::insert_user;
use super::{SqlStore, StoreError, Written};
use crate::accounts::user::User;
use crate::changes::audit::AuditEntry;
use crate::domain::ids::UserId;
use crate::domain::Timestamp;

const LINK_COLUMNS: &str = "user_id, dn, cached_verifier, verified_at, synced_at";

/// A user whose identity is an LDAP directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapLink {
    pub user_id: UserId,
    /// Where the entry was last found.
    pub dn: String,
    /// Argon2id hash of the last password the directory accepted, when logins may fall back
    /// to it.
    pub cached_verifier: Option<String>,
    /// When the directory last accepted a password of the user.
    pub verified_at: Option<Timestamp>,
    /// When the user's attributes and groups were last read from the directory.
    pub synced_at: Timestamp,
}

/// The links between users and directory entries.
#[async_trait]
pub trait LdapLinkStore: Send + Sync {
    /// Creates `user` and its link in one write.
    async fn create_ldap_user(&self, user: &User, link: &LdapLink, audit: &AuditEntry) -> Written;
    /// Stores the link as of a login the directory accepted, replacing the one stored.
    async fn record_ldap_login(&self, link: &LdapLink) -> Written;
    /// Records that the sync found the user at `dn` at `at`; keeps the cached verifier.
    async fn record_ldap_sync(&self, user: &UserId, dn: &str, at: Timestamp) -> Written;
    /// `NotFound` for a user with no link (a local account).
    async fn ldap_link(&self, user: &UserId) -> Result<LdapLink, StoreError>;
    /// Every link, oldest sync first.
    async fn ldap_links(&self) -> Result<Vec<LdapLink>, StoreError>;
}

#[async_trait]
impl LdapLinkStore for SqlStore {
    async fn create_ldap_user(&self, user: &User, link: &LdapLink, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            insert_user(write, user).await?;
            upsert(link).execute(write.rows()).await?;
            Ok(())
        })
        .await
    }

    async fn record_ldap_login(&self, link: &LdapLink) -> Written {
        self.write(None, async |write| {
            upsert(link).execute(write.rows()).await?;
            Ok(())
        })
        .await
    }

    async fn record_ldap_sync(&self, user: &UserId, dn: &str, at: Timestamp) -> Written {
        self.write(None, async |write| {
            let updated =
                sqlx::query("UPDATE ldap_links SET dn = $2, synced_at = $3 WHERE user_id = $1")
                    .bind(user.as_str())
                    .bind(dn)
                    .bind(format_time(at))
                    .execute(write.rows())
                    .await?;
            touched(&updated)
        })
        .await
    }

    async fn ldap_link(&self, user: &UserId) -> Result<LdapLink, StoreError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM ldap_links WHERE user_id = $1");
        link_from_row(&self.select_one(&sql, user.as_str()).await?)
    }

    async fn ldap_links(&self) -> Result<Vec<LdapLink>, StoreError> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM ldap_links ORDER BY synced_at, user_id");
        self.select_all(&sql, None, link_from_row).await
    }
}

/// Inserts the link or replaces the stored one (the same statement on both databases).
fn upsert(link: &LdapLink) -> super::columns::AnyQuery<'_> {
    sqlx::query(
        "INSERT INTO ldap_links (user_id, dn, cached_verifier, verified_at, synced_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET dn = excluded.dn, \
         cached_verifier = excluded.cached_verifier, verified_at = excluded.verified_at, \
         synced_at = excluded.synced_at",
    )
    .bind(link.user_id.as_str())
    .bind(&link.dn)
    .bind(link.cached_verifier.as_deref())
    .bind(link.verified_at.map(format_time))
    .bind(format_time(link.synced_at))
}

fn link_from_row(row: &AnyRow) -> Result<LdapLink, StoreError> {
    Ok(LdapLink {
        user_id: UserId::from_string(row.try_get("user_id")?),
        dn: row.try_get("dn")?,
        cached_verifier: row.try_get("cached_verifier")?,
        verified_at: optional_time(row, "verified_at")?,
        synced_at: required_time(row, "synced_at")?,
    })
}
