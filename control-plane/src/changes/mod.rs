//! What changed and who did it: the audit log, the change feed that tells every Envoy which
//! cached principals are stale, and the signal that wakes the feed's watchers.
//!
//! Calls `domain` only; every capability records its changes through it.

pub mod audit;
pub mod feed;
pub mod signal;
