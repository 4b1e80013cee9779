//! What the ADS service needs of a stream's state machine, so that state-of-the-world and
//! delta streams share one transport loop.

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

use super::delta::DeltaStreamState;
use super::snapshot::Snapshot;
use super::stream::{Rejection, StreamState};

/// One variant of the ADS protocol, as a state machine without I/O.
pub(crate) trait AdsProtocol: Default + Send + 'static {
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

impl AdsProtocol for StreamState {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "state_of_the_world";

    fn node_id(request: &DiscoveryRequest) -> &str {
        request.node.as_ref().map_or("", |n| n.id.as_str())
    }

    fn on_request(
        &mut self,
        request: DiscoveryRequest,
        snapshot: &Snapshot,
    ) -> Vec<Self::Response> {
        Self::on_request(self, request, snapshot)
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<Self::Response> {
        Self::on_snapshot(self, snapshot)
    }

    fn acked_version(&self, type_url: &str) -> Option<&str> {
        Self::acked_version(self, type_url)
    }

    fn rejections(&self) -> &[Rejection] {
        Self::rejections(self)
    }
}

impl AdsProtocol for DeltaStreamState {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";

    fn node_id(request: &DeltaDiscoveryRequest) -> &str {
        request.node.as_ref().map_or("", |n| n.id.as_str())
    }

    fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> Vec<Self::Response> {
        Self::on_request(self, request, snapshot)
    }

    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<Self::Response> {
        Self::on_snapshot(self, snapshot)
    }

    fn acked_version(&self, type_url: &str) -> Option<&str> {
        Self::acked_version(self, type_url)
    }

    fn rejections(&self) -> &[Rejection] {
        Self::rejections(self)
    }
}
