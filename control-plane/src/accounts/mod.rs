//! Who may use the gateway: tenants, users, their API keys and their groups, and the first
//! admin.
//!
//! Owns the rules of these objects (states, key format and hashing, group routing). Calls
//! `domain`, `limits` for the settings a user, key or group carries, and `store` to persist.

pub mod api_key;
pub mod bootstrap;
pub mod group;
pub mod ip_allowlist;
pub mod tenant;
pub mod user;
