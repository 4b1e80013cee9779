//! What the filter needs of Envoy: shared data with compare-and-swap, gRPC callouts to the
//! control plane, the clock, the request's and the response's headers, and answering the
//! client. The proxy-wasm crate implements [`Host`] over the host ABI; tests use
//! [`memory::MemoryHost`].

use std::fmt;
use std::time::Duration;

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
    /// Starts a gRPC call on `cluster`; its answer comes back with the returned token.
    fn dispatch_grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// A property of the stream, such as `["source", "address"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// The request's headers, serialized as [`crate::header_pairs::parse_pairs`] reads them.
    fn request_headers(&self) -> Vec<u8>;
    /// Replaces a request header, or removes it when `value` is `None`.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    fn add_request_header(&self, name: &str, value: &str);
    /// Makes Envoy choose the request's route again.
    fn clear_route_cache(&self);
    /// The response's headers, serialized like [`Host::request_headers`].
    fn response_headers(&self) -> Vec<u8>;
    fn set_response_header(&self, name: &str, value: Option<&str>);
    fn add_response_header(&self, name: &str, value: &str);
    /// Answers the client; the request never reaches the upstream.
    fn send_reply(&self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]);
}
