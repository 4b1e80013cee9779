//! Persistence, one trait per capability ([`UserStore`], [`KeyStore`], [`GroupStore`],
//! [`SessionStore`], [`TenantStore`], [`LoginFailureStore`], [`RegistrationStore`], [`LdapLinkStore`],
//! [`OidcLinkStore`], [`MfaStore`], [`UsageStore`], [`AllowanceStore`], [`BackendStore`],
//! [`HealthCheckStore`], [`ChangeFeed`], [`RoutingFeed`], [`AuditLog`]), each implemented for
//! [`SqlStore`] in its own file beside its SQL. [`Store`] is all of them, so callers never see
//! which database is in use.
//!
//! Every change goes through [`SqlStore`]'s one write: the rows, their audit entry, the
//! change-feed records of what the data plane must drop and the routing-feed records of what
//! was rerouted commit together, and only then are this replica's followers woken. Calls
//! `domain` and the record types of `accounts`, `identity`, `limits`, `routing` and
//! `changes`; nothing above it.

mod allowances;
mod audit;
mod audit_pruning;
mod backends;
mod columns;
mod feed;
mod groups;
mod health_checks;
mod keys;
mod ldap_links;
mod login_failures;
mod mfa;
mod migrations;
mod oidc_links;
mod periods;
mod registrations;
mod routing_feed;
mod sessions;
mod sql;
mod tenants;
mod usage;
mod users;

use async_trait::async_trait;

use crate::changes::signal::Followers;

pub use allowances::{AllowanceGrant, AllowanceLease, AllowanceStore, PoolPeriod};
pub use audit::{ActionMatch, AuditFilter, AuditLog};
pub use audit_pruning::Pruned;
pub use backends::{BackendStore, PoolBackends};
pub use feed::ChangeFeed;
pub use groups::GroupStore;
pub use health_checks::{CheckerLease, HealthCheckStore};
pub use keys::{KeyOwner, KeyStore};
pub use ldap_links::{LdapLink, LdapLinkStore};
pub use login_failures::{KeptFailures, LoginFailureStore};
pub use mfa::MfaStore;
pub use oidc_links::{OidcLink, OidcLinkStore};
pub use registrations::RegistrationStore;
pub use routing_feed::RoutingFeed;
pub use sessions::SessionStore;
pub use sql::SqlStore;
pub use tenants::{TenantStatistics, TenantStore};
pub use usage::{UsageEntry, UsageOutcome, UsageStore};
pub use users::{LoginSource, UserOrder, UserQuery, UserStore};

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
    /// Stored data a pending migration would refuse; the operator must change it first.
    #[error("database migration blocked: {0}")]
    MigrationBlocked(String),
}

/// What a write answers: done, or why not.
pub type Written = Result<(), StoreError>;

/// One page of a listing and the number of matches over all pages.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Every capability's storage in one database.
#[async_trait]
pub trait Store:
    UserStore
    + KeyStore
    + GroupStore
    + SessionStore
    + TenantStore
    + LoginFailureStore
    + RegistrationStore
    + LdapLinkStore
    + MfaStore
    + OidcLinkStore
    + UsageStore
    + AllowanceStore
    + BackendStore
    + HealthCheckStore
    + ChangeFeed
    + RoutingFeed
    + AuditLog
{
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whom this store wakes after each committed change on this replica.
    fn followers(&self) -> &Followers;
}
