//! End-to-end: real Envoy with the built filter, the real control plane, echo upstreams.

mod admin;
mod failures;
mod keys;
