//! End-to-end: real Envoy with the built filter, the real control plane, echo upstreams.

mod admin;
mod allowances;
mod authorization;
mod bad_input;
mod changes;
mod deployment;
mod failures;
mod istio;
mod keys;
mod limits;
mod manifests;
mod mfa;
mod observability;
mod oidc;
mod quotas;
mod routing;
mod sessions;
mod tenants;
mod tls;
