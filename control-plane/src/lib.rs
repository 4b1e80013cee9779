//! Tollgate's control plane: users, API keys and the services Envoy talks to.

pub mod api;
pub mod bootstrap;
pub mod changes;
pub mod config;
pub mod counters;
pub mod domain;
pub mod filter_limits;
pub mod filter_service;
pub mod health;
pub mod identity;
pub mod proto;
pub mod quota_state;
pub mod refusal_log;
pub mod server;
pub mod store;
pub mod topology;
pub mod usage_reports;
pub mod xds;
