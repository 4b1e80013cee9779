//! Tollgate's proxy-wasm HTTP filter: authenticates every request by API key or session, and,
//! as a singleton service, keeps every worker's caches fresh from the control plane.
//!
//! This crate only talks to the host (headers, shared data, gRPC callouts, clock); every
//! decision comes from `tollgate-filter-core`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod address_failures;
mod background;
mod caches;
mod clock;
mod header_map;
mod limiter;
mod metrics;
mod request;
mod root;
mod sync_service;
mod worker;

use proxy_wasm::types::LogLevel;

use crate::root::TollgateRoot;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_context_id| Box::new(TollgateRoot::new()));
}}
