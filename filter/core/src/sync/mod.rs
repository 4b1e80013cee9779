//! Keeping every worker's view of the control plane's change feed fresh. One syncer per Envoy
//! follows the feed ([`follower`]) and publishes a [`SyncState`] in shared data, which every
//! worker reads on its tick. The syncer is the `tollgate_sync` service where Envoy's bootstrap
//! runs it, else the worker that holds the [`lease`] ([`elected`]).

pub mod elected;
pub mod follower;
pub mod lease;
mod state;

pub use state::{SyncState, MAX_RECENT_INVALIDATIONS, SYNC_STATE_KEY};
