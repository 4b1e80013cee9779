//! The authorization checks run on every request: which address the client has, whether that
//! address is on the user's allowlist, and whether the key's scopes cover the route.
//!
//! Each check is parsed once (when a principal is cached) and then answers without allocating.
//!
//! The scope check compares path prefixes, so it is only sound on normalised paths: Envoy's HTTP
//! connection manager must run with `normalize_path: true` and `merge_slashes: true` (and
//! `path_with_escaped_slashes_action` set to reject or unescape), so that a path such as
//! `/v1/images/../admin` never reaches the filter as written. [`Scopes::permits`] refuses such
//! paths anyway, in case that configuration is missing.

mod allowlist;
mod client_ip;
mod excerpt;
mod path;
mod scope;

pub use allowlist::{validate_allowlist_entry, AllowlistError, IpAllowlist};
pub use client_ip::{address_text, client_ip, AddressText, ClientIpError};
pub use path::PathFlaw;
pub use scope::{ScopeError, ScopeProblem, Scopes, ADMIN_API_SCOPE};
