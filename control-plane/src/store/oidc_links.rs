//! [`OidcLinkStore`] on SQL: the `oidc_links` table, each a provider's subject for a user.

use async_trait::async_trait;

use super::columns::{conflict_or, format_time};
use super::sql::Write;
use super::users::insert_user;
use super::{SqlStore, StoreError, Written};
use crate::accounts::user::User;
use crate::changes::audit::AuditEntry;
use crate::domain::ids::{GroupId, UserId};

/// A person at a provider, as a user here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcLink {
    /// The provider's name in `auth.oidc.providers`.
    pub provider: String,
    /// The provider's immutable subject for the person.
    pub subject: String,
    pub user_id: UserId,
}

/// Users by who they are at an OpenID Connect provider.
#[async_trait]
pub trait OidcLinkStore: Send + Sync {
    /// The user linked to `subject` at `provider`.
    async fn user_by_oidc_subject(&self, provider: &str, subject: &str)
        -> Result<User, StoreError>;
    /// Whether `user` is linked to some subject at `provider`.
    async fn has_oidc_link(&self, provider: &str, user: &UserId) -> Result<bool, StoreError>;
    /// Links an existing user; `Conflict` when the subject is linked already.
    async fn link_oidc_subject(&self, link: &OidcLink, audit: &AuditEntry) -> Written;
    /// Creates `user`, linked as `link` and a member of `group`, in one write; `Conflict` when
    /// the username, email or link is taken.
    async fn create_oidc_user(
        &self,
        user: &User,
        group: Option<&GroupId>,
        link: &OidcLink,
        audit: &AuditEntry,
    ) -> Written;
}

#[async_trait]
impl OidcLinkStore for SqlStore {
    async fn user_by_oidc_subject(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<User, StoreError> {
        let user_id: String = sqlx::query_scalar(
            "SELECT user_id FROM oidc_links WHERE provider = $1 AND subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(&self.reads)
        .await?
        .ok_or(StoreError::NotFound)?;
        self.user_where("u.id = $1", &user_id).await
    }

    async fn has_oidc_link(&self, provider: &str, user: &UserId) -> Result<bool, StoreError> {
        let links = self
            .count(
                "SELECT COUNT(*) FROM oidc_links WHERE provider = $1 AND user_id = $2",
                &[provider, user.as_str()],
            )
            .await?;
        Ok(links > 0)
    }

    async fn link_oidc_subject(&self, link: &OidcLink, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| insert_link(write, link, audit).await)
            .await
    }

    async fn create_oidc_user(
        &self,
        user: &User,
        group: Option<&GroupId>,
        link: &OidcLink,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            insert_user(write, user).await?;
            if let Some(group) = group {
                sqlx::query(
                    "INSERT INTO group_members (group_id, user_id, added_at) VALUES ($1, $2, $3)",
                )
                .bind(group.as_str())
                .bind(user.id.as_str())
                .bind(format_time(audit.at))
                .execute(write.rows())
                .await?;
            }
            insert_link(write, link, audit).await
        })
        .await
    }
}

async fn insert_link(write: &mut Write, link: &OidcLink, audit: &AuditEntry) -> Written {
    sqlx::query(
        "INSERT INTO oidc_links (provider, subject, user_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&link.provider)
    .bind(&link.subject)
    .bind(link.user_id.as_str())
    .bind(format_time(audit.at))
    .execute(write.rows())
    .await
    .map_err(|e| conflict_or(e, "OIDC link"))?;
    Ok(())
}
