//! The routing feed: which backends, groups and pools changed, in commit order, for the
//! followers that keep a copy of the routing in memory (the xDS topology) and need to read
//! back only what changed.

use crate::domain::ids::{BackendId, GroupId};

/// What a routing change touched; a follower reads its current state back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rerouted {
    /// A backend was created, changed (its health included), or deleted.
    Backend(BackendId),
    /// A group's pools changed, or the group was created or deleted.
    Group(GroupId),
    /// A pool's health-check settings changed.
    Pool(String),
}

/// One entry of the routing feed, at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingChange {
    pub cursor: u64,
    pub rerouted: Rerouted,
}
