//! Wakes the data plane's long polls as soon as this replica records a change.
//! Other replicas' changes are found by polling the store while waiting.

use std::sync::Arc;

use tokio::sync::Notify;

/// Signals that the change feed or the signing keys moved.
#[derive(Clone, Default)]
pub struct ChangeSignal(Arc<Notify>);

impl ChangeSignal {
    /// Wakes every waiting watcher.
    pub fn announce(&self) {
        self.0.notify_waiters();
    }

    /// Completes at the next announcement.
    pub async fn announced(&self) {
        self.0.notified().await;
    }
}
