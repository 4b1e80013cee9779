//! The Tollgate Envoy filter, free of any proxy-wasm dependency so that every rule runs as a
//! plain `cargo test` on the host.
//!
//! Envoy is reached through [`host::Host`]; the proxy-wasm crate implements it and hands each
//! callback to a [`request::RequestFlow`] (per request) or a [`worker::Worker`] (per VM).

pub mod access;
pub mod allowances;
pub mod background;
pub mod cache;
pub mod callout;
pub mod clock;
pub mod config;
pub mod control_plane_cluster;
pub mod credential;
pub mod decision;
pub mod digest;
pub mod error_body;
pub mod freshness;
pub mod gate;
pub mod header_pairs;
pub mod host;
pub mod hygiene;
pub mod limits;
pub mod local_cache;
pub mod local_digest;
pub mod metrics;
pub mod node;
pub mod principal_caches;
pub mod request;
pub mod resolved;
pub mod session;
pub mod sync;
pub mod usage;
pub mod worker;

/// Types of the filter <-> control plane protocol (`proto/tollgate/v1/filter.proto`).
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/tollgate.v1.rs"));
}
