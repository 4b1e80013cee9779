//! Where a request goes: backends and their pools, health checks of the backends, and the
//! clusters and routes served to Envoy over ADS.
//!
//! Calls `domain`, `accounts` for the groups that select pools, `changes` to hear of edits,
//! and `store`.

pub mod backend;
pub mod health_check;
pub mod pool;
pub mod topology;
pub mod upstream_tls;
pub mod xds;
