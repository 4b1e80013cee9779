//! Tollgate's control plane: users, API keys and the services Envoy talks to.

pub mod accounts;
pub mod api;
pub mod audit_retention;
pub mod changes;
pub mod config;
pub mod domain;
pub mod filter_service;
pub mod identity;
pub mod limits;
pub mod logging;
pub mod mail;
pub mod proto;
pub mod reload;
pub mod routing;
pub mod server;
pub mod store;
