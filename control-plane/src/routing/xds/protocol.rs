//! What the ADS service needs of a stream's state machine, so that state-of-the-world and
//! delta streams share one transport loop.

use super::snapshot::Snapshot;
use super::stream::Rejection;

/// One variant of the ADS protocol, as a state machine without I/O: implemented by
/// [`StreamState`](super::stream::StreamState) and
/// [`DeltaStreamState`](super::delta::DeltaStreamState).
pub trait AdsProtocol: Default + Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: Send + 'static;
    /// How node statuses name the variant.
    const NAME: &'static str;

    /// The node id the request carries; empty when it carries none.
    fn node_id(request: &Self::Request) -> &str;
    fn on_request(&mut self, request: Self::Request, snapshot: &Snapshot) -> Vec<Self::Response>;
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<Self::Response>;
    fn acked_version(&self, type_url: &str) -> Option<&str>;
    fn rejections(&self) -> &[Rejection];
}
