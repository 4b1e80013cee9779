//! [`RegistrationStore`] on SQL: accounts people registered themselves, and whether the owner
//! of the email has proved it yet (the `email_verifications` table).

use async_trait::async_trait;

use super::columns::{format_time, touched};
use super::users::insert_user;
use super::{SqlStore, StoreError, Written};
use crate::accounts::user::User;
use crate::changes::audit::AuditEntry;
use crate::domain::ids::UserId;
use crate::domain::Timestamp;

#[async_trait]
pub trait RegistrationStore: Send + Sync {
    /// Creates a user who registered themselves, its email not yet verified; `Conflict` when
    /// the username or email is taken.
    async fn register_user(&self, user: &User, audit: &AuditEntry) -> Written;
    /// Whether `user` registered themselves and has not yet verified their email.
    async fn email_verification_pending(&self, user: &UserId) -> Result<bool, StoreError>;
    /// Marks `email` verified for `user` at `at`, if that is the email the user registered
    /// with and is not yet verified; `NotFound`, changing nothing, otherwise.
    async fn verify_email(
        &self,
        user: &UserId,
        email: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Written;
}

#[async_trait]
impl RegistrationStore for SqlStore {
    async fn register_user(&self, user: &User, audit: &AuditEntry) -> Written {
        let email = user
            .email
            .as_deref()
            .ok_or(StoreError::Corrupt("a registered user has an email".into()))?;
        self.write(audit, async |write| {
            insert_user(write, user).await?;
            sqlx::query(
                "INSERT INTO email_verifications (user_id, email, requested_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(user.id.as_str())
            .bind(email)
            .bind(format_time(user.created_at))
            .execute(write.rows())
            .await?;
            Ok(())
        })
        .await
    }

    async fn email_verification_pending(&self, user: &UserId) -> Result<bool, StoreError> {
        let pending = self
            .count(
                "SELECT COUNT(*) FROM email_verifications \
                 WHERE user_id = $1 AND verified_at IS NULL",
                &[user.as_str()],
            )
            .await?;
        Ok(pending > 0)
    }

    async fn verify_email(
        &self,
        user: &UserId,
        email: &str,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            let updated = sqlx::query(
                "UPDATE email_verifications SET verified_at = $1 WHERE user_id = $2 \
                 AND LOWER(email) = LOWER($3) AND verified_at IS NULL",
            )
            .bind(format_time(at))
            .bind(user.as_str())
            .bind(email)
            .execute(write.rows())
            .await?;
            touched(&updated)
        })
        .await
    }
}
