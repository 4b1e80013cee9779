//! Records as stored, for tests that write them to a store directly.

use tollgate::accounts::group::Group;
use tollgate::accounts::user::{Role, User, UserStatus};
use tollgate::domain::ids::{GroupId, UserId};
use tollgate::domain::now;
use tollgate::limits::quota::Quotas;
use tollgate::limits::rate_limits::RateLimits;

/// An active user with defaults and an (unusable) Argon2id hash.
pub fn stored_user(username: &str, email: &str) -> User {
    User {
        email: Some(email.to_string()),
        password_hash: Some("$argon2id$old".to_string()),
        ..User::new(UserId::generate(), username.to_string(), Role::User, now())
    }
}

/// A group of priority 0 without pools or limits.
pub fn stored_group(name: &str) -> Group {
    Group {
        id: GroupId::generate(),
        name: name.to_string(),
        tenant_id: None,
        priority: 0,
        pools: Vec::new(),
        rate_limits: RateLimits::default(),
        quotas: Quotas::default(),
        created_at: now(),
        updated_at: now(),
    }
}
