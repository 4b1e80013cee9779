//! Tollgate's proxy-wasm HTTP filter: authenticates every request by API key or session, and,
//! as a singleton service, keeps every worker's caches fresh from the control plane.
//!
//! This crate only translates: it implements the core's `Host` over proxy-wasm's host calls
//! and hands Envoy's callbacks to `tollgate-filter-core`, where every decision is made.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod header_map;
mod host;
mod metric_ids;
mod request;
mod root;
mod sync_service;

use proxy_wasm::types::LogLevel;

use crate::root::TollgateRoot;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_context_id| Box::new(TollgateRoot::new()));
}}
