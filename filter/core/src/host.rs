//! What the filter needs of Envoy: shared data with compare-and-swap, gRPC callouts to the
//! control plane, the clock, the request's and the response's headers, and answering the
//! client. The proxy-wasm crate implements [`Host`] over the host ABI; tests use
//! [`memory::MemoryHost`].

use std::fmt;
use std::time::Duration;

use crate::config::PluginConfig;

#[cfg(test)]
pub mod memory;

/// Why the host could not do what it was asked, in its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Another worker wrote the key since it was read: read it again and retry.
    CasMismatch,
    Failed(HostError),
}

/// A call to the control plane's `FilterService`.
pub struct GrpcCall<'a> {
    /// The upstream as Envoy takes it: a cluster's name, or a serialized `GrpcService`.
    pub cluster: &'a str,
    /// The `authorization` metadata: the control plane's credential.
    pub authorization: Option<&'a [u8]>,
    /// The `x-request-id` metadata: the client request the call is made for, if one is.
    pub request_id: Option<&'a [u8]>,
    pub method: &'a str,
    pub message: &'a [u8],
    pub timeout: Duration,
}

impl<'a> GrpcCall<'a> {
    /// A call on the configured cluster, with the configured callout timeout.
    pub fn new(config: &'a PluginConfig, method: &'a str, message: &'a [u8]) -> Self {
        Self {
            cluster: config.control_plane_cluster.callout_target(),
            authorization: config.control_plane_credential.authorization(),
            request_id: None,
            method,
            message,
            timeout: config.callout_timeout(),
        }
    }
}

/// One of the stream's header maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMap {
    Request,
    Response,
}

/// What the host does with the request once a callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Hold the request: it waits for a callout, or the filter answered it.
    Pause,
}

/// Envoy as the filter sees it.
pub trait Host {
    /// Envoy's clock, in Unix microseconds.
    fn now_us(&self) -> i64;
    /// A value every worker VM of this Envoy shares, with its version for
    /// [`Host::shared_data_set`]; `None` when the key holds nothing.
    fn shared_data_get(&self, key: &str) -> Option<(Vec<u8>, Option<u32>)>;
    /// Writes a shared value; with `cas`, only if it is still at that version.
    fn shared_data_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError>;
    /// Starts a call; its answer comes back with the returned token.
    fn dispatch_grpc_call(&self, call: GrpcCall<'_>) -> Result<u32, HostError>;
    /// Abandons a call started with [`Host::dispatch_grpc_call`]: its answer never comes.
    fn cancel_grpc_call(&self, token: u32);
    /// A property of the stream, such as `["source", "address"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// The headers, serialized as [`crate::header_pairs::parse_pairs`] reads them.
    fn headers(&self, map: HeaderMap) -> Vec<u8>;
    /// Replaces a header, or removes it when `value` is `None`.
    fn set_header(&self, map: HeaderMap, name: &str, value: Option<&str>);
    fn add_header(&self, map: HeaderMap, name: &str, value: &str);
    /// Makes Envoy choose the request's route again.
    fn clear_route_cache(&self);
    /// Answers the client; the request never reaches the upstream.
    fn send_reply(&self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]);
}
