//! The request decisions of the Tollgate Envoy filter, free of any proxy-wasm dependency so that
//! every rule runs as a plain `cargo test` on the host.
//!
//! The proxy-wasm crate reads the request, calls [`gate::Gate::decide`], and applies the
//! [`decision::Decision`] it gets back.

pub mod access;
pub mod cache;
pub mod callout;
pub mod clock;
pub mod config;
pub mod credential;
pub mod decision;
pub mod digest;
pub mod error_body;
pub mod freshness;
pub mod gate;
pub mod header_pairs;
pub mod hygiene;
pub mod limits;
pub mod local_cache;
pub mod local_digest;
pub mod resolved;
pub mod session;
pub mod sync;
pub mod usage;

/// Types of the filter <-> control plane protocol (`proto/tollgate/v1/filter.proto`).
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/tollgate.v1.rs"));
}
