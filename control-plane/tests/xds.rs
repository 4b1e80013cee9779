//! Envoy's ADS stream over real gRPC on loopback, state of the world and delta, spoken by an
//! in-process client the way Envoy speaks it: subscribe, ACK, follow updates, NACK.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{data_source, transport_socket, Node};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use serde_json::json;
use support::app::Api;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tollgate::routing::xds::snapshot::{CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE};
use tollgate::routing::xds::{
    Endpoint, GroupRoute, HealthState, NodeStatus, Pool, RoutingTable, XdsPublisher,
};
use tonic::transport::Channel;
use tonic::Streaming;

const WAIT: Duration = Duration::from_secs(5);

/// Serves `publisher`'s ADS on a free loopback port.
async fn serve(publisher: &XdsPublisher) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let service = publisher.service();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("gRPC server");
    });
    address
}

async fn ads_client(address: SocketAddr) -> AggregatedDiscoveryServiceClient<Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{address}"))
        .await
        .expect("connect")
        .max_decoding_message_size(64 << 20)
}

/// The requests of a stream to Envoy's taste: where to send them, and the stream to open,
/// which carries the deployment's credential.
fn outgoing<T>() -> (mpsc::Sender<T>, tonic::Request<ReceiverStream<T>>) {
    let (requests, outgoing) = mpsc::channel(64);
    let mut stream = tonic::Request::new(ReceiverStream::new(outgoing));
    stream
        .metadata_mut()
        .insert("authorization", support::grpc::bearer());
    (requests, stream)
}

/// One simulated Envoy's ADS stream.
struct Envoy {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
    node_id: String,
}

impl Envoy {
    async fn connect(address: SocketAddr, node_id: &str) -> Self {
        let (requests, stream) = outgoing();
        let responses = ads_client(address)
            .await
            .stream_aggregated_resources(stream)
            .await
            .expect("ADS stream")
            .into_inner();
        Self {
            requests,
            responses,
            node_id: node_id.into(),
        }
    }

    async fn send(&self, type_url: &str, version: &str, nonce: &str, names: &[String]) {
        self.send_request(DiscoveryRequest {
            type_url: type_url.into(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            resource_names: names.to_vec(),
            ..DiscoveryRequest::default()
        })
        .await;
    }

    async fn send_request(&self, mut request: DiscoveryRequest) {
        request.node = Some(Node {
            id: self.node_id.clone(),
            cluster: "tollgate-test".into(),
            ..Node::default()
        });
        self.requests.send(request).await.expect("request queued");
    }

    async fn receive(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a response in time")
            .expect("a well-formed response")
            .expect("the stream is open")
    }

    async fn subscribe(&mut self, type_url: &str, names: &[&str]) -> DiscoveryResponse {
        let names: Vec<String> = names.iter().map(|n| (*n).into()).collect();
        self.send(type_url, "", "", &names).await;
        let response = self.receive().await;
        assert_eq!(response.type_url, type_url);
        response
    }

    async fn ack(&self, response: &DiscoveryResponse, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| (*n).into()).collect();
        self.send(
            &response.type_url,
            &response.version_info,
            &response.nonce,
            &names,
        )
        .await;
    }

    async fn nack(&self, response: &DiscoveryResponse, running: &str, names: &[&str], error: &str) {
        self.send_request(DiscoveryRequest {
            type_url: response.type_url.clone(),
            version_info: running.into(),
            response_nonce: response.nonce.clone(),
            resource_names: names.iter().map(|n| (*n).into()).collect(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: error.into(),
                details: Vec::new(),
            }),
            ..DiscoveryRequest::default()
        })
        .await;
    }

    /// Fails if anything arrives within a short while.
    async fn expect_silence(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(300), self.responses.message()).await;
        assert!(next.is_err(), "unexpected response: {next:?}");
    }
}

fn pool(name: &str, hosts: &[(&str, u32)]) -> Pool {
    Pool {
        name: name.into(),
        endpoints: hosts
            .iter()
            .enumerate()
            .map(|(i, (host, weight))| Endpoint {
                id: format!("{name}-{i}"),
                host: (*host).into(),
                port: 48080,
                weight: *weight,
                healthy: HealthState::Healthy,
                tls: None,
            })
            .collect(),
    }
}

fn cluster_names(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| Cluster::decode(any.value.as_slice()).expect("cluster").name)
        .collect()
}

fn assignment_names(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| {
            ClusterLoadAssignment::decode(any.value.as_slice())
                .expect("assignment")
                .cluster_name
        })
        .collect()
}

/// Waits until the node's status satisfies `done`.
async fn status_when(
    publisher: &XdsPublisher,
    node_id: &str,
    done: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = publisher.node_statuses().get(node_id) {
            if done(&status) {
                return status;
            }
        }
        assert!(Instant::now() < deadline, "node status never settled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn envoy_follows_publishes_and_its_refusals_are_reported() {
    let publisher = XdsPublisher::new();
    let routing = RoutingTable {
        group_routes: Vec::new(),
        default_pool: Some("default".into()),
    };
    let first = publisher.publish(
        &[pool("default", &[("127.0.0.1", 70), ("127.0.0.2", 30)])],
        &routing,
    );
    let address = serve(&publisher).await;
    let mut envoy = Envoy::connect(address, "envoy-1").await;

    let cds = envoy.subscribe(CLUSTER_TYPE, &[]).await;
    assert_eq!(cluster_names(&cds), ["tollgate_pool_default"]);
    envoy.ack(&cds, &[]).await;
    let eds = envoy
        .subscribe(ENDPOINT_TYPE, &["tollgate_pool_default"])
        .await;
    assert_eq!(assignment_names(&eds), ["tollgate_pool_default"]);
    envoy.ack(&eds, &["tollgate_pool_default"]).await;
    let rds = envoy.subscribe(ROUTE_TYPE, &["tollgate_routes"]).await;
    assert_eq!(rds.version_info, first.routes().version());
    envoy.ack(&rds, &["tollgate_routes"]).await;

    let status = status_when(&publisher, "envoy-1", |s| s.acked_versions.len() == 3).await;
    assert_eq!(status.open_streams, 1);
    assert_eq!(
        status.acked_versions[CLUSTER_TYPE],
        first.clusters().version()
    );
    assert!(status.rejections.is_empty());

    // An admin adds a pool and routes a group to it.
    let routing = RoutingTable {
        group_routes: vec![GroupRoute {
            group_header_value: "premium".into(),
            pools: vec!["premium".into()],
        }],
        default_pool: Some("default".into()),
    };
    let second = publisher.publish(
        &[
            pool("default", &[("127.0.0.1", 70), ("127.0.0.2", 30)]),
            pool("premium", &[("127.0.0.3", 100)]),
        ],
        &routing,
    );
    let cds = envoy.receive().await;
    let rds = envoy.receive().await;
    assert_eq!([&cds.type_url, &rds.type_url], [CLUSTER_TYPE, ROUTE_TYPE]);
    assert_eq!(cds.version_info, second.clusters().version());
    assert_eq!(
        cluster_names(&cds),
        ["tollgate_pool_default", "tollgate_pool_premium"]
    );
    // Envoy subscribed to the unchanged `default` assignment only; it asks for the new
    // cluster's next, and gets that one alone.
    envoy.ack(&cds, &[]).await;
    let both = ["tollgate_pool_default", "tollgate_pool_premium"];
    envoy
        .send(
            ENDPOINT_TYPE,
            &eds.version_info,
            &eds.nonce,
            &both.map(String::from),
        )
        .await;
    let eds = envoy.receive().await;
    assert_eq!(assignment_names(&eds), ["tollgate_pool_premium"]);
    assert_eq!(eds.version_info, second.endpoints().version());
    envoy.ack(&eds, &both).await;

    // Envoy refuses the routes: it keeps the old ones, and nothing is resent.
    envoy
        .nack(
            &rds,
            first.routes().version(),
            &["tollgate_routes"],
            "route: unknown cluster 'tollgate_pool_premium'",
        )
        .await;
    let status = status_when(&publisher, "envoy-1", |s| !s.rejections.is_empty()).await;
    assert_eq!(status.rejections.len(), 1);
    let refused = &status.rejections[0];
    assert_eq!(refused.type_url, ROUTE_TYPE);
    assert_eq!(refused.version, second.routes().version());
    assert_eq!(
        refused.message,
        "route: unknown cluster 'tollgate_pool_premium'"
    );
    assert_eq!(status.acked_versions[ROUTE_TYPE], first.routes().version());
    assert_eq!(
        status.acked_versions[CLUSTER_TYPE],
        second.clusters().version()
    );
    assert_eq!(
        status.acked_versions[ENDPOINT_TYPE],
        second.endpoints().version()
    );
    envoy.expect_silence().await;

    drop(envoy);
    status_when(&publisher, "envoy-1", |s| s.open_streams == 0).await;
}

#[tokio::test]
async fn publishing_the_same_input_sends_nothing() {
    let publisher = XdsPublisher::new();
    let pools = [pool("default", &[("127.0.0.1", 1)])];
    let routing = RoutingTable::default();
    publisher.publish(&pools, &routing);
    let mut envoy = Envoy::connect(serve(&publisher).await, "envoy-2").await;
    let cds = envoy.subscribe(CLUSTER_TYPE, &[]).await;
    envoy.ack(&cds, &[]).await;
    publisher.publish(&pools, &routing);
    envoy.expect_silence().await;
}

#[tokio::test]
async fn a_stream_without_a_node_id_is_refused() {
    let publisher = XdsPublisher::new();
    let address = serve(&publisher).await;
    let mut envoy = Envoy::connect(address, "").await;
    envoy
        .requests
        .send(DiscoveryRequest {
            type_url: CLUSTER_TYPE.into(),
            ..DiscoveryRequest::default()
        })
        .await
        .expect("request queued");
    let refusal = tokio::time::timeout(WAIT, envoy.responses.message())
        .await
        .expect("an answer in time")
        .expect_err("a refusal");
    assert_eq!(refusal.code(), tonic::Code::InvalidArgument);
    assert!(publisher.node_statuses().all().is_empty());
}

/// One simulated Envoy's delta ADS stream.
struct DeltaEnvoy {
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
    node_id: String,
}

impl DeltaEnvoy {
    async fn connect(address: SocketAddr, node_id: &str) -> Self {
        let (requests, stream) = outgoing();
        let responses = ads_client(address)
            .await
            .delta_aggregated_resources(stream)
            .await
            .expect("delta ADS stream")
            .into_inner();
        Self {
            requests,
            responses,
            node_id: node_id.into(),
        }
    }

    async fn send(&self, mut request: DeltaDiscoveryRequest) {
        request.node = Some(Node {
            id: self.node_id.clone(),
            cluster: "tollgate-test".into(),
            ..Node::default()
        });
        self.requests.send(request).await.expect("request queued");
    }

    async fn subscribe(&self, type_url: &str, names: &[&str]) {
        self.send(DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: names.iter().map(|n| (*n).into()).collect(),
            ..DeltaDiscoveryRequest::default()
        })
        .await;
    }

    async fn answer(&self, response: &DeltaDiscoveryResponse, refusal: Option<&str>) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: refusal.map(|message| RpcStatus {
                code: 3,
                message: message.into(),
                details: Vec::new(),
            }),
            ..DeltaDiscoveryRequest::default()
        })
        .await;
    }

    async fn receive(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a response in time")
            .expect("a well-formed response")
            .expect("the stream is open")
    }

    /// Acknowledges responses of `type_url` until one satisfies `done`, and returns it.
    async fn until(
        &mut self,
        type_url: &str,
        done: impl Fn(&DeltaDiscoveryResponse) -> bool,
    ) -> DeltaDiscoveryResponse {
        loop {
            let response = self.receive().await;
            self.answer(&response, None).await;
            if response.type_url == type_url && done(&response) {
                return response;
            }
        }
    }

    async fn expect_silence(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(300), self.responses.message()).await;
        assert!(next.is_err(), "unexpected response: {next:?}");
    }
}

fn delta_names(response: &DeltaDiscoveryResponse) -> Vec<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

fn weights(response: &DeltaDiscoveryResponse) -> Vec<u32> {
    response
        .resources
        .iter()
        .filter_map(|r| r.resource.as_ref())
        .flat_map(|any| {
            ClusterLoadAssignment::decode(any.value.as_slice())
                .expect("assignment")
                .endpoints
        })
        .flat_map(|locality| locality.lb_endpoints)
        .filter_map(|endpoint| endpoint.load_balancing_weight.map(|w| w.value))
        .collect()
}

#[tokio::test]
async fn delta_envoy_gets_only_what_changed_and_removals() {
    let api = Api::start().await;
    let mut backends = BTreeMap::new();
    for (pool, host) in [("alpha", "10.0.0.1"), ("beta", "10.0.0.2")] {
        let body = json!({"url": format!("http://{host}:8080"), "pool": pool, "weight": 10});
        let (status, created) = api.admin("POST", "/api/v1/backends", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        backends.insert(pool, created["id"].as_str().expect("id").to_string());
    }
    let (alpha, beta) = ("tollgate_pool_alpha", "tollgate_pool_beta");
    let mut envoy = DeltaEnvoy::connect(api.grpc_address().await, "envoy-delta").await;
    envoy.subscribe(CLUSTER_TYPE, &[]).await;
    // The snapshot follows the admin API's writes: gather clusters until both are there.
    let mut clusters = std::collections::BTreeSet::new();
    while clusters.len() < 2 {
        let cds = envoy.until(CLUSTER_TYPE, |_| true).await;
        assert!(cds.resources.iter().all(|r| !r.version.is_empty()));
        clusters.extend(delta_names(&cds).into_iter().map(String::from));
    }
    assert_eq!(clusters.into_iter().collect::<Vec<_>>(), [alpha, beta]);
    envoy.subscribe(ENDPOINT_TYPE, &[alpha, beta]).await;
    let eds = envoy.until(ENDPOINT_TYPE, |_| true).await;
    assert_eq!(delta_names(&eds), [alpha, beta]);
    envoy.subscribe(ROUTE_TYPE, &["tollgate_routes"]).await;
    envoy.until(ROUTE_TYPE, |_| true).await;
    envoy.expect_silence().await;

    // A weight change in one pool sends that pool's load assignment and nothing else.
    let (status, _) = api
        .admin(
            "PATCH",
            &format!("/api/v1/backends/{}", backends["beta"]),
            Some(json!({"weight": 40})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let changed = envoy.receive().await;
    assert_eq!(changed.type_url, ENDPOINT_TYPE);
    assert_eq!(delta_names(&changed), [beta]);
    assert_eq!(weights(&changed), [40]);
    assert!(changed.removed_resources.is_empty());
    // Refused: recorded for the admin API, and not sent again.
    envoy.answer(&changed, Some("weight refused")).await;
    envoy.expect_silence().await;
    let (_, nodes) = api.admin("GET", "/api/v1/xds/nodes", None).await;
    let node = &nodes["nodes"]["envoy-delta"];
    assert_eq!(node["protocol"], "delta");
    assert_eq!(node["rejections"][0]["message"], "weight refused");
    assert_eq!(node["rejections"][0]["type_url"], ENDPOINT_TYPE);

    // The last backend of a pool goes: its load assignment, then its cluster, are removed.
    let (status, _) = api
        .admin(
            "DELETE",
            &format!("/api/v1/backends/{}", backends["alpha"]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let eds = envoy.receive().await;
    assert_eq!(eds.type_url, ENDPOINT_TYPE);
    assert_eq!(eds.removed_resources, [alpha]);
    assert!(eds.resources.is_empty());
    envoy.answer(&eds, None).await;
    let cds = envoy.until(CLUSTER_TYPE, |_| true).await;
    assert_eq!(cds.removed_resources, [alpha]);
    assert!(cds.resources.is_empty());
    envoy.expect_silence().await;
}

/// A simulated Envoy for the scale check: ACKs everything, follows new clusters with an EDS
/// subscription, and reports once it has accepted `target` for every type.
async fn follow(
    mut envoy: Envoy,
    mut targets: tokio::sync::watch::Receiver<[String; 3]>,
    synced: mpsc::Sender<()>,
) {
    let mut eds_names: Vec<String> = Vec::new();
    let mut acked = [String::new(), String::new(), String::new()];
    envoy.send(CLUSTER_TYPE, "", "", &[]).await;
    envoy
        .send(ROUTE_TYPE, "", "", &["tollgate_routes".into()])
        .await;
    let mut reported: Option<[String; 3]> = None;
    while let Ok(Some(response)) = envoy.responses.message().await {
        let slot = match response.type_url.as_str() {
            CLUSTER_TYPE => 0,
            ENDPOINT_TYPE => 1,
            _ => 2,
        };
        let names = match slot {
            1 => eds_names.clone(),
            2 => vec!["tollgate_routes".into()],
            _ => Vec::new(),
        };
        envoy
            .send(
                &response.type_url,
                &response.version_info,
                &response.nonce,
                &names,
            )
            .await;
        // An EDS answer counts once it covers every cluster (after the re-subscription).
        if slot != 1 || response.resources.len() == eds_names.len() {
            acked[slot] = response.version_info.clone();
        }
        if slot == 0 {
            let clusters = cluster_names(&response);
            if clusters != eds_names {
                eds_names = clusters;
                envoy.send(ENDPOINT_TYPE, &acked[1], "", &eds_names).await;
            }
        }
        let target = targets.borrow_and_update().clone();
        if acked == target && reported.as_ref() != Some(&target) {
            reported = Some(target);
            let _ = synced.send(()).await;
        }
    }
}

fn rss_mib() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!("VmRSS {} (peak {})", field("VmRSS:"), field("VmHWM:"))
}

fn scale_pools(pools: usize, endpoints: usize, weight: u32) -> Vec<Pool> {
    (0..pools)
        .map(|p| Pool {
            name: format!("pool{p:04}"),
            endpoints: (0..endpoints)
                .map(|e| Endpoint {
                    id: format!("p{p}e{e}"),
                    host: format!("10.{}.{}.{}", p / 256, p % 256, e + 1),
                    port: 8080,
                    weight,
                    healthy: HealthState::Healthy,
                    tls: None,
                })
                .collect(),
        })
        .collect()
}

fn scale_routing(pools: usize) -> RoutingTable {
    RoutingTable {
        group_routes: (0..pools)
            .map(|p| GroupRoute {
                group_header_value: format!("group{p:04}"),
                pools: vec![format!("pool{p:04}"), "pool0000".into()],
            })
            .collect(),
        default_pool: Some("pool0000".into()),
    }
}

/// Not a test: the figures for 1,000 pools x 10 endpoints and 50 Envoys. Run by hand:
/// `cargo test --release -p tollgate --test xds -- --ignored --nocapture scale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand in release"]
async fn scale_1000_pools_50_envoys() {
    const POOLS: usize = 1000;
    const ENDPOINTS: usize = 10;
    const ENVOYS: usize = 50;
    println!("start: {}", rss_mib());
    let publisher = XdsPublisher::new();
    let started = Instant::now();
    let snapshot = publisher.publish(&scale_pools(POOLS, ENDPOINTS, 10), &scale_routing(POOLS));
    println!(
        "snapshot build: {:?}; encoded CDS {} KiB, EDS {} KiB, RDS {} KiB; {}",
        started.elapsed(),
        size(snapshot.clusters()) / 1024,
        size(snapshot.endpoints()) / 1024,
        size(snapshot.routes()) / 1024,
        rss_mib()
    );
    let address = serve(&publisher).await;
    let versions = |s: &tollgate::routing::xds::Snapshot| {
        [
            s.clusters().version().to_string(),
            s.endpoints().version().to_string(),
            s.routes().version().to_string(),
        ]
    };
    let (targets, targets_rx) = tokio::sync::watch::channel(versions(&snapshot));
    let (synced, mut synced_rx) = mpsc::channel(ENVOYS);
    let started = Instant::now();
    for i in 0..ENVOYS {
        let envoy = Envoy::connect(address, &format!("envoy-{i}")).await;
        tokio::spawn(follow(envoy, targets_rx.clone(), synced.clone()));
    }
    let initial_sync = format!("initial sync of {ENVOYS} Envoys:");
    print_when_synced(&mut synced_rx, ENVOYS, started, &initial_sync).await;

    for (label, pools, routing) in [
        (
            "every endpoint weight changed (EDS only)",
            scale_pools(POOLS, ENDPOINTS, 20),
            scale_routing(POOLS),
        ),
        (
            "one pool added (CDS + EDS + RDS, new EDS subscription)",
            scale_pools(POOLS + 1, ENDPOINTS, 20),
            scale_routing(POOLS + 1),
        ),
    ] {
        let next = tollgate::routing::xds::Snapshot::build(&pools, &routing);
        targets.send_replace(versions(&next));
        let started = Instant::now();
        publisher.publish(&pools, &routing);
        let publish = format!("{label}: publish to last ACK");
        print_when_synced(&mut synced_rx, ENVOYS, started, &publish).await;
    }
    let acked = publisher
        .node_statuses()
        .all()
        .values()
        .filter(|s| s.acked_versions.len() == 3)
        .count();
    assert_eq!(acked, ENVOYS);
}

/// Waits for `envoys` reports of being in sync, then prints the time `since`.
async fn print_when_synced(rx: &mut mpsc::Receiver<()>, envoys: usize, since: Instant, what: &str) {
    for _ in 0..envoys {
        rx.recv().await.expect("synced");
    }
    println!("{what} {:?}; {}", since.elapsed(), rss_mib());
}

fn size(resources: &tollgate::routing::xds::snapshot::Resources) -> usize {
    resources.iter().map(|r| r.body.value.len()).sum()
}

/// What a TLS context demands of the backend's certificate: the trusted CAs (a file or the
/// PEM itself) and the subject alternative names.
type Demands = (String, Vec<(SanType, String)>);

/// What `context` demands; `None` when it demands nothing.
fn demanded(context: &UpstreamTlsContext) -> Option<Demands> {
    let Some(ValidationContextType::ValidationContext(validation)) = context
        .common_tls_context
        .as_ref()
        .and_then(|common| common.validation_context_type.as_ref())
    else {
        return None;
    };
    let trusted = match validation
        .trusted_ca
        .as_ref()
        .and_then(|ca| ca.specifier.as_ref())
    {
        Some(data_source::Specifier::Filename(path)) => format!("file {path}"),
        Some(data_source::Specifier::InlineString(pem)) => format!("pem {pem}"),
        other => panic!("unexpected trusted CA {other:?}"),
    };
    let names = validation
        .match_typed_subject_alt_names
        .iter()
        .map(|san| {
            let Some(MatchPattern::Exact(name)) =
                san.matcher.as_ref().and_then(|m| m.match_pattern.as_ref())
            else {
                panic!("not an exact match: {san:?}");
            };
            (
                SanType::try_from(san.san_type).expect("SAN type"),
                name.clone(),
            )
        })
        .collect();
    Some((trusted, names))
}

#[tokio::test]
async fn https_backends_are_verified_unless_they_opt_out() {
    let bundle = "/etc/tollgate/upstream-cas.pem";
    let api = Api::start_with(|config| config.routing.upstream_ca_file = bundle.into()).await;
    let ca = include_str!("../../tests/fixtures/upstream-tls/ca.pem");
    for body in [
        json!({"url": "https://api.example.com:8443"}),
        json!({"url": "https://10.0.0.9", "tls_ca": ca}),
        json!({"url": "https://10.0.0.10", "tls_sni": "internal.example.com"}),
        json!({"url": "https://legacy.internal", "tls_insecure": true}),
        json!({"url": "http://plain.internal"}),
    ] {
        let (status, created) = api.admin("POST", "/api/v1/backends", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    let mut envoy = Envoy::connect(api.grpc_address().await, "envoy-tls").await;
    let mut cds = envoy.subscribe(CLUSTER_TYPE, &[]).await;
    // The snapshot follows the admin API's writes: wait for all five backends.
    let cluster = loop {
        let cluster = cds
            .resources
            .iter()
            .map(|any| Cluster::decode(any.value.as_slice()).expect("cluster"))
            .find(|cluster| cluster.name == "tollgate_pool_default");
        let endpoints = cluster
            .as_ref()
            .and_then(|c| c.load_assignment.as_ref())
            .map_or(0, |a| {
                a.endpoints.iter().map(|l| l.lb_endpoints.len()).sum()
            });
        if let (Some(cluster), 5) = (cluster, endpoints) {
            break cluster;
        }
        envoy.ack(&cds, &[]).await;
        cds = envoy.receive().await;
    };
    let contexts: BTreeMap<String, Option<Demands>> = cluster
        .transport_socket_matches
        .iter()
        .map(|matched| {
            let socket = matched.transport_socket.as_ref().expect("socket");
            let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
                panic!("no TLS config");
            };
            let context = UpstreamTlsContext::decode(any.value.as_slice()).expect("TLS context");
            (context.sni.clone(), demanded(&context))
        })
        .collect();
    let expected = BTreeMap::from([
        (
            "api.example.com".to_string(),
            Some((
                format!("file {bundle}"),
                vec![(SanType::Dns, "api.example.com".to_string())],
            )),
        ),
        (
            "10.0.0.9".to_string(),
            Some((
                format!("pem {ca}"),
                vec![(SanType::IpAddress, "10.0.0.9".to_string())],
            )),
        ),
        (
            "internal.example.com".to_string(),
            Some((
                format!("file {bundle}"),
                vec![(SanType::Dns, "internal.example.com".to_string())],
            )),
        ),
        ("legacy.internal".to_string(), None),
    ]);
    assert_eq!(contexts, expected);
}
