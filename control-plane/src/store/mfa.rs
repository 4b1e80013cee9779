//! [`MfaStore`] on SQL: the `totp_enrolments`, `mfa_backup_codes` and `mfa_challenges_spent`
//! tables.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::columns::{format_time, optional_time, required_time, to_i64, to_u64, touched};
use super::sql::Write;
use super::{SqlStore, StoreError, Written};
use crate::accounts::api_key::StoredKeyHash;
use crate::changes::audit::AuditEntry;
use crate::domain::ids::UserId;
use crate::domain::Timestamp;
use crate::identity::totp::TotpEnrolment;

/// Second factors: each user's TOTP authenticator, its backup codes, and the login challenges
/// already spent.
#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn totp_enrolment(&self, user: &UserId) -> Result<Option<TotpEnrolment>, StoreError>;
    /// Stores a pending enrolment, replacing the user's pending one; `Conflict` when the user
    /// has a confirmed one.
    async fn begin_totp_enrolment(&self, enrolment: &TotpEnrolment, audit: &AuditEntry) -> Written;
    /// Confirms the user's pending enrolment with a code of `step`, and replaces the user's
    /// backup codes with `backup_codes` in the same write; `NotFound` when nothing is pending
    /// (or it was confirmed meanwhile).
    async fn confirm_totp(
        &self,
        user: &UserId,
        step: u64,
        at: Timestamp,
        backup_codes: &[StoredKeyHash],
        audit: &AuditEntry,
    ) -> Written;
    /// Accepts a code of `step` for the user's confirmed TOTP, once: false when a code of this
    /// or a later step was accepted before (a replay), or nothing is confirmed.
    async fn use_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError>;
    /// Marks the user's backup code `code` used at `at`; false when it is unknown or used.
    async fn use_backup_code(
        &self,
        user: &UserId,
        code: &StoredKeyHash,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// How many of the user's backup codes are unused.
    async fn backup_codes_left(&self, user: &UserId) -> Result<u64, StoreError>;
    /// Removes the user's TOTP (pending or confirmed) and backup codes; `NotFound` when there
    /// was no TOTP.
    async fn remove_mfa(&self, user: &UserId, audit: &AuditEntry) -> Written;
    /// Whether the login challenge `id` was spent.
    async fn mfa_challenge_spent(&self, id: &str) -> Result<bool, StoreError>;
    /// Records the login challenge `id` as spent (kept until `expires_at`); false when it was
    /// spent before. Challenges expired before `now` are forgotten.
    async fn spend_mfa_challenge(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
impl MfaStore for SqlStore {
    async fn totp_enrolment(&self, user: &UserId) -> Result<Option<TotpEnrolment>, StoreError> {
        let sql = "SELECT user_id, sealed_secret, created_at, confirmed_at, last_used_step \
                   FROM totp_enrolments WHERE user_id = $1";
        match self.select_one(sql, user.as_str()).await {
            Ok(row) => enrolment_from_row(&row).map(Some),
            Err(StoreError::NotFound) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn begin_totp_enrolment(&self, enrolment: &TotpEnrolment, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            sqlx::query("DELETE FROM totp_enrolments WHERE user_id = $1 AND confirmed_at IS NULL")
                .bind(enrolment.user_id.as_str())
                .execute(write.rows())
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO totp_enrolments (user_id, sealed_secret, created_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(enrolment.user_id.as_str())
            .bind(&enrolment.sealed_secret)
            .bind(format_time(enrolment.created_at))
            .execute(write.rows())
            .await?;
            if inserted.rows_affected() == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict("a confirmed TOTP"))
            }
        })
        .await
    }

    async fn confirm_totp(
        &self,
        user: &UserId,
        step: u64,
        at: Timestamp,
        backup_codes: &[StoredKeyHash],
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            let confirmed = sqlx::query(
                "UPDATE totp_enrolments SET confirmed_at = $1, last_used_step = $2 \
                 WHERE user_id = $3 AND confirmed_at IS NULL",
            )
            .bind(format_time(at))
            .bind(to_i64(step))
            .bind(user.as_str())
            .execute(write.rows())
            .await?;
            touched(&confirmed)?;
            delete_backup_codes(write, user).await?;
            for code in backup_codes {
                sqlx::query("INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES ($1, $2)")
                    .bind(user.as_str())
                    .bind(code.as_str())
                    .execute(write.rows())
                    .await?;
            }
            Ok(())
        })
        .await
    }

    async fn use_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        let used = self
            .write(None, async |write| {
                Ok(sqlx::query(
                    "UPDATE totp_enrolments SET last_used_step = $1 WHERE user_id = $2 \
                     AND confirmed_at IS NOT NULL \
                     AND (last_used_step IS NULL OR last_used_step < $1)",
                )
                .bind(to_i64(step))
                .bind(user.as_str())
                .execute(write.rows())
                .await?)
            })
            .await?;
        Ok(used.rows_affected() == 1)
    }

    async fn use_backup_code(
        &self,
        user: &UserId,
        code: &StoredKeyHash,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let used = self
            .write(None, async |write| {
                Ok(sqlx::query(
                    "UPDATE mfa_backup_codes SET used_at = $1 \
                     WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                )
                .bind(format_time(at))
                .bind(user.as_str())
                .bind(code.as_str())
                .execute(write.rows())
                .await?)
            })
            .await?;
        Ok(used.rows_affected() == 1)
    }

    async fn backup_codes_left(&self, user: &UserId) -> Result<u64, StoreError> {
        self.count(
            "SELECT COUNT(*) FROM mfa_backup_codes WHERE user_id = $1 AND used_at IS NULL",
            &[user.as_str()],
        )
        .await
    }

    async fn remove_mfa(&self, user: &UserId, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            delete_backup_codes(write, user).await?;
            let removed = sqlx::query("DELETE FROM totp_enrolments WHERE user_id = $1")
                .bind(user.as_str())
                .execute(write.rows())
                .await?;
            touched(&removed)
        })
        .await
    }

    async fn mfa_challenge_spent(&self, id: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM mfa_challenges_spent WHERE id = $1";
        Ok(self.count(sql, &[id]).await? > 0)
    }

    async fn spend_mfa_challenge(
        &self,
        id: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let spent = self
            .write(None, async |write| {
                sqlx::query("DELETE FROM mfa_challenges_spent WHERE expires_at < $1")
                    .bind(format_time(now))
                    .execute(write.rows())
                    .await?;
                Ok(sqlx::query(
                    "INSERT INTO mfa_challenges_spent (id, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(format_time(expires_at))
                .execute(write.rows())
                .await?)
            })
            .await?;
        Ok(spent.rows_affected() == 1)
    }
}

async fn delete_backup_codes(write: &mut Write, user: &UserId) -> Written {
    sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
        .bind(user.as_str())
        .execute(write.rows())
        .await?;
    Ok(())
}

fn enrolment_from_row(row: &AnyRow) -> Result<TotpEnrolment, StoreError> {
    Ok(TotpEnrolment {
        user_id: UserId::from_string(row.try_get("user_id")?),
        sealed_secret: row.try_get("sealed_secret")?,
        created_at: required_time(row, "created_at")?,
        confirmed_at: optional_time(row, "confirmed_at")?,
        last_used_step: row.try_get::<Option<i64>, _>("last_used_step")?.map(to_u64),
    })
}
