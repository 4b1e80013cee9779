//! The ADS gRPC service (tonic is only the transport) and the publisher that feeds it.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::delta::DeltaStreamState;
use super::model::{Pool, RoutingTable};
use super::protocol::AdsProtocol;
use super::snapshot::{Snapshot, TYPE_URLS};
use super::status::{NodeStatuses, OpenStream};
use super::stream::StreamState;

/// Responses queued per stream before its task waits for Envoy to read.
const RESPONSE_BUFFER: usize = 8;

/// The one writer of Envoy's configuration: builds snapshots and hands them to every ADS
/// stream. Keep a single publishing task so snapshots are published in the order their
/// input was read.
#[derive(Debug)]
pub struct XdsPublisher {
    snapshots: watch::Sender<Arc<Snapshot>>,
    statuses: NodeStatuses,
}

impl Default for XdsPublisher {
    fn default() -> Self {
        Self::new()
    }
}

impl XdsPublisher {
    /// Starts with no pools: until the first [`publish`](Self::publish), every request
    /// Envoy routes is answered 503.
    pub fn new() -> Self {
        let (snapshots, _) = watch::channel(Arc::new(Snapshot::default()));
        Self {
            snapshots,
            statuses: NodeStatuses::default(),
        }
    }

    /// Builds the snapshot for `pools` and `routing` afresh and, when it differs from the
    /// current one, sends it to every connected Envoy. Returns the snapshot now served.
    pub fn publish(&self, pools: &[Pool], routing: &RoutingTable) -> Arc<Snapshot> {
        self.offer(Snapshot::build(pools, routing))
    }

    /// Re-encodes only the `changed` pools, drops the `removed` ones and rebuilds the routes
    /// for `routing`, keeping every other resource of the current snapshot; then sends the
    /// result like [`publish`](Self::publish). Each pool name appears once in `changed`.
    pub fn publish_changes(
        &self,
        changed: &[Pool],
        removed: &[String],
        routing: &RoutingTable,
    ) -> Arc<Snapshot> {
        let next = self.snapshot().update(changed, removed, routing);
        self.offer(next)
    }

    fn offer(&self, next: Snapshot) -> Arc<Snapshot> {
        let next = Arc::new(next);
        self.snapshots.send_if_modified(|current| {
            let same = TYPE_URLS.iter().all(|type_url| {
                current.resources(type_url).map(|r| r.version())
                    == next.resources(type_url).map(|r| r.version())
            });
            if !same {
                *current = next.clone();
            }
            !same
        });
        self.snapshot()
    }

    /// The snapshot served now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// What each Envoy accepted and refused; a live view for the admin API.
    pub fn node_statuses(&self) -> NodeStatuses {
        self.statuses.clone()
    }

    /// The gRPC service to add to the tonic server.
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<AdsService> {
        AggregatedDiscoveryServiceServer::new(AdsService {
            snapshots: self.snapshots.subscribe(),
            statuses: self.statuses.clone(),
        })
    }
}

/// Serves ADS streams from the publisher's snapshots.
#[derive(Debug)]
pub struct AdsService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    statuses: NodeStatuses,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(self.serve::<StreamState>(request.into_inner()))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(self.serve::<DeltaStreamState>(request.into_inner()))
    }
}

impl AdsService {
    /// Runs the stream in a task of its own; its responses go out through the returned stream.
    fn serve<P: AdsProtocol>(
        &self,
        requests: Streaming<P::Request>,
    ) -> Response<ReceiverStream<Result<P::Response, Status>>> {
        let (responses, outgoing) = mpsc::channel(RESPONSE_BUFFER);
        tokio::spawn(serve_stream::<P>(
            requests,
            self.snapshots.clone(),
            self.statuses.clone(),
            responses,
        ));
        Response::new(ReceiverStream::new(outgoing))
    }
}

/// Runs one Envoy's stream: requests and new snapshots go through the state machine, its
/// answers go to Envoy, and what Envoy accepted or refused goes to the node statuses.
async fn serve_stream<P: AdsProtocol>(
    mut requests: Streaming<P::Request>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    statuses: NodeStatuses,
    responses: mpsc::Sender<Result<P::Response, Status>>,
) {
    let mut state = P::default();
    let mut node: Option<OpenStream> = None;
    loop {
        let answers = tokio::select! {
            request = requests.next() => match request {
                Some(Ok(request)) => {
                    if node.is_none() {
                        let id = P::node_id(&request);
                        if id.is_empty() {
                            let refusal = Status::invalid_argument(
                                "the first ADS request must carry node.id",
                            );
                            let _ = responses.send(Err(refusal)).await;
                            return;
                        }
                        tracing::info!(node = id, protocol = P::NAME, "Envoy opened an ADS stream");
                        node = Some(statuses.open(id, P::NAME));
                    }
                    // Not marked as seen: a newer snapshot still reaches every type below.
                    let snapshot = snapshots.borrow().clone();
                    state.on_request(request, &snapshot)
                }
                Some(Err(status)) => {
                    tracing::debug!(%status, "ADS stream failed");
                    break;
                }
                None => break,
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = snapshots.borrow_and_update().clone();
                state.on_snapshot(&snapshot)
            }
            () = responses.closed() => break,
        };
        if let Some(node) = node.as_mut() {
            for rejection in node.record(&state, crate::domain::now()) {
                metrics::counter!("tollgate_xds_rejections_total").increment(1);
                tracing::warn!(
                    node = node.node_id(),
                    type_url = %rejection.type_url,
                    version = %rejection.version,
                    error = %rejection.message,
                    "Envoy rejected a configuration update"
                );
            }
        }
        for answer in answers {
            if responses.send(Ok(answer)).await.is_err() {
                return;
            }
        }
    }
    if let Some(node) = &node {
        tracing::info!(node = node.node_id(), "Envoy closed its ADS stream");
    }
}
