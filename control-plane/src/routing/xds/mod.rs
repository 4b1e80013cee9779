//! Envoy's clusters, endpoints and routes over gRPC ADS, state of the world or delta.
//!
//! The backend pools and the routing table are built into a [`Snapshot`] (pure, each
//! resource versioned by a hash of its encoding, updated pool by pool); the [`XdsPublisher`]
//! is its one writer, and each Envoy's stream runs a state machine that decides what to send:
//! [`stream::StreamState`] for state of the world, [`delta::DeltaStreamState`] for delta.
//! Listeners stay static in Envoy's bootstrap.

mod clusters;
pub mod delta;
pub mod model;
pub mod protocol;
mod routes;
pub mod server;
pub mod snapshot;
pub mod status;
pub mod stream;

pub use model::{
    cluster_name, CertificateCheck, Endpoint, GroupRoute, HealthState, Pool, RoutingTable,
    TrustedCas, UpstreamTls,
};
pub use routes::{ROUTE_CONFIG_NAME, ROUTE_GROUP_HEADER};
pub use server::{AdsService, XdsPublisher};
pub use snapshot::Snapshot;
pub use status::{NodeStatus, NodeStatuses, RecordedRejection};
