//! The routing feed: which backends, pools and groups changed, so that followers (the health
//! checker) reload only what is named instead of reading every backend again.

use crate::domain::ids::{BackendId, GroupId};

/// What a committed write changed in the routing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rerouted {
    /// A backend was added, changed, removed, or its health status changed.
    Backend(BackendId),
    /// A pool's health-check settings changed.
    Pool(String),
    /// A group's pools changed, or the group was added or removed.
    Group(GroupId),
}

/// One entry of the routing feed, at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingChange {
    pub cursor: u64,
    pub rerouted: Rerouted,
}
