//! What changed and who did it: the audit log, the change feed that tells every Envoy which
//! cached principals are stale, the routing feed that names the backends, pools and groups
//! that changed, and the followers (the feed's watchers, the xDS snapshot builder, the health
//! checker) woken once a change is committed.
//!
//! Calls `domain` only. Every change is recorded through the store's one write, which takes
//! the audit entry, appends to the feed and wakes the followers after the commit. Only the
//! signing keys announce elsewhere: once the replica has loaded them, as the watchers hand out
//! the loaded keys.

pub mod audit;
pub mod audit_chain;
pub mod feed;
pub mod position;
pub mod request_context;
pub mod routing;
pub mod signal;
