//! The change feed: what the data plane must stop trusting from its caches.

use crate::domain::ids::{ApiKeyId, SessionId, UserId};

/// What became stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// Anything cached about the user (status, allowlist, tenant, groups).
    User(UserId),
    /// One API key (revoked or rotated).
    Key(ApiKeyId),
    /// A session ended; its access tokens stay refused until they expire.
    Session {
        id: SessionId,
        /// Unix seconds after which every token of the session has expired anyway.
        tokens_expire_at: i64,
    },
}

/// One entry of the feed, at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub cursor: u64,
    pub stale: Stale,
}
