//! Persistence behind one trait, so handlers never see which database is in use.

mod sql;

use async_trait::async_trait;

use crate::accounts::api_key::{ApiKey, StoredKeyHash};
use crate::accounts::group::Group;
use crate::accounts::user::{User, UserStatus};
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Change;
use crate::domain::ids::{ApiKeyId, BackendId, GroupId, SessionId, UserId};
use crate::domain::Timestamp;
use crate::identity::session::Session;
use crate::identity::signing::SigningKeyRecord;
use crate::limits::quota::{EffectiveQuotas, Period, QuotaName, Usage};
use crate::limits::rate_limits::RateLimits;
use crate::routing::backend::{Backend, BackendHealth};
use crate::routing::pool::HealthCheckSettings;

pub use sql::SqlStore;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database unavailable: {0}")]
    Unavailable(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// Which users a listing returns, and which page of them.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Matches a substring of username, email or name.
    pub text: Option<String>,
    pub status: Option<UserStatus>,
    pub offset: u64,
    pub limit: u64,
}

/// One page of a listing and the number of matches over all pages.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// A key together with its owner, as needed to authenticate a request.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub key: ApiKey,
    pub user: User,
}

/// Usage of one user to add, with the quotas that apply to it in its period.
#[derive(Debug, Clone)]
pub struct UsageEntry {
    pub user: UserId,
    pub period: Period,
    pub quotas: EffectiveQuotas,
    pub requests: u64,
    pub bytes: u64,
    /// Storage added (positive) or freed (negative); the total never drops below 0.
    pub storage_bytes: i64,
}

/// What applying a usage batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageOutcome {
    /// The batch had been applied before; nothing changed.
    AlreadyApplied,
    /// The batch was applied; these quotas were reached by it.
    Applied(Vec<(UserId, QuotaName)>),
}

/// Every write takes the audit entry that records it, stored in the same transaction.
/// Writes that make something the data plane caches stale (a user's state, a key, a
/// session) append to the change feed in that transaction too.
#[async_trait]
pub trait Store: Send + Sync {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_user(&self, user: &User, audit: &AuditEntry) -> Result<(), StoreError>;
    async fn update_user(&self, user: &User, audit: &AuditEntry) -> Result<(), StoreError>;
    async fn user(&self, id: &UserId) -> Result<User, StoreError>;
    async fn user_by_username(&self, username: &str) -> Result<User, StoreError>;
    async fn users(&self, query: &UserQuery) -> Result<Page<User>, StoreError>;

    async fn create_key(&self, key: &ApiKey, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Revokes `old` and creates `new` atomically.
    async fn rotate_key(
        &self,
        old: &ApiKeyId,
        new: &ApiKey,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    async fn revoke_key(
        &self,
        id: &ApiKeyId,
        at: Timestamp,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Replaces a key's rate limits; the data plane's copy of the key becomes stale.
    async fn set_key_limits(
        &self,
        id: &ApiKeyId,
        limits: &RateLimits,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    async fn keys_of(&self, user: &UserId) -> Result<Vec<ApiKey>, StoreError>;
    /// The key with this hash in any state, with its owner.
    async fn key_by_hash(&self, hash: &StoredKeyHash) -> Result<KeyOwner, StoreError>;

    async fn audit_entries(&self, offset: u64, limit: u64) -> Result<Page<AuditEntry>, StoreError>;
    /// An entry about something that changed nothing stored (a refusal the data plane saw).
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    async fn create_session(&self, session: &Session, audit: &AuditEntry)
        -> Result<(), StoreError>;
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
    ) -> Result<(), StoreError>;
    /// Ends a session; its tokens stay refused by the data plane until `tokens_expire_at`.
    async fn revoke_session(
        &self,
        id: &SessionId,
        at: Timestamp,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;

    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Adds a key; keys without a retirement time get `retire_others_at`.
    async fn add_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_at: Option<Timestamp>,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;

    /// The newest position of the change feed (0 when empty).
    async fn latest_change(&self) -> Result<u64, StoreError>;
    /// Changes after `cursor`, oldest first, at most `limit`.
    async fn changes_since(&self, cursor: u64, limit: u64) -> Result<Vec<Change>, StoreError>;
    /// Session revocations whose tokens may still be presented at `now_secs`.
    async fn live_session_revocations(&self, now_secs: i64) -> Result<Vec<Change>, StoreError>;

    async fn create_group(&self, group: &Group, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Changes a group; its members' cached state becomes stale.
    async fn update_group(&self, group: &Group, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Deletes a group and its memberships; its members' cached state becomes stale.
    async fn delete_group(&self, id: &GroupId, audit: &AuditEntry) -> Result<(), StoreError>;
    async fn group(&self, id: &GroupId) -> Result<Group, StoreError>;
    /// Every group, highest priority first.
    async fn groups(&self) -> Result<Vec<Group>, StoreError>;
    async fn add_member(
        &self,
        group: &GroupId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    async fn remove_member(
        &self,
        group: &GroupId,
        user: &UserId,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    async fn members(&self, group: &GroupId) -> Result<Vec<UserId>, StoreError>;
    /// The user's groups, highest priority first.
    async fn groups_of(&self, user: &UserId) -> Result<Vec<Group>, StoreError>;

    async fn create_backend(&self, backend: &Backend, audit: &AuditEntry)
        -> Result<(), StoreError>;
    async fn update_backend(&self, backend: &Backend, audit: &AuditEntry)
        -> Result<(), StoreError>;
    async fn delete_backend(&self, id: &BackendId, audit: &AuditEntry) -> Result<(), StoreError>;
    async fn backend(&self, id: &BackendId) -> Result<Backend, StoreError>;
    /// Every backend, by pool then creation.
    async fn backends(&self) -> Result<Vec<Backend>, StoreError>;
    /// Records a health check's outcome; a status change comes with its audit entry.
    async fn record_health(
        &self,
        id: &BackendId,
        health: &BackendHealth,
        audit: Option<&AuditEntry>,
    ) -> Result<(), StoreError>;

    /// Applies a usage batch once, all of it or nothing. A user whose usage reaches a quota
    /// becomes stale and the crossing is audited, in the same transaction.
    async fn apply_usage(
        &self,
        batch_id: &str,
        entries: &[UsageEntry],
        at: Timestamp,
    ) -> Result<UsageOutcome, StoreError>;
    /// Forgets applied batch ids older than `before`; returns how many.
    async fn prune_usage_batches(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// The user's requests and bytes in the period starting at `period_start`, and the
    /// storage they hold now.
    async fn usage(&self, user: &UserId, period_start: Timestamp) -> Result<Usage, StoreError>;

    /// The pools with health-check settings of their own.
    async fn pool_settings(&self) -> Result<Vec<(String, HealthCheckSettings)>, StoreError>;
    async fn set_pool_settings(
        &self,
        pool: &str,
        settings: &HealthCheckSettings,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
}
