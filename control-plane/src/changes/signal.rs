//! Wakes this replica's followers as soon as a change is committed: the data plane's long
//! polls on the change feed, and the xDS snapshot builder. Other replicas' changes are found
//! by polling the store while waiting.

use std::sync::Arc;

use tokio::sync::Notify;

/// Completes a wait at the next announcement.
#[derive(Clone, Default)]
pub struct ChangeSignal(Arc<Notify>);

impl ChangeSignal {
    /// Completes at the next announcement.
    pub async fn announced(&self) {
        self.0.notified().await;
    }
}

/// Which followers a committed change concerns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// The change feed moved or the signing keys changed.
    pub feed: bool,
    /// Backends, pools or group routes changed.
    pub routing: bool,
}

impl Reach {
    /// The change-feed watchers only.
    pub const FEED: Self = Self {
        feed: true,
        routing: false,
    };
}

/// The signals of one replica, shared by everything that writes and everything that follows.
#[derive(Clone, Default)]
pub struct Followers {
    /// Wakes the data plane's change-feed watchers.
    pub feed: ChangeSignal,
    /// Wakes the xDS snapshot builder.
    pub routing: ChangeSignal,
}

impl Followers {
    /// Wakes every follower that `reach` concerns; called only once a change is committed.
    pub fn announce(&self, reach: Reach) {
        if reach.feed {
            self.feed.0.notify_waiters();
        }
        if reach.routing {
            self.routing.0.notify_waiters();
        }
    }
}
