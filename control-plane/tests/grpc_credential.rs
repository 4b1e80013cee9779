//! The gRPC port (ADS and the filter service) answers only callers that present the
//! deployment's Envoy credential.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use tokio::net::TcpListener;
use tollgate::config::Config;
use tollgate::proto::v1::filter_service_client::FilterServiceClient;
use tollgate::proto::v1::{LookupUserRequest, WatchChangesRequest};
use tollgate::server::{open_store, serve_grpc, services};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request};

const CREDENTIAL: &str = "envoy-credential-of-this-deployment-0123456789";

/// A control plane's gRPC port on loopback, and its data folder.
async fn grpc_port() -> (SocketAddr, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().expect("data dir");
    let mut config = Config {
        data_dir: data_dir.path().to_path_buf(),
        ..Config::default()
    };
    config.grpc.credential = Some(CREDENTIAL.into());
    let config = config.validate().expect("valid config");
    let store = open_store(&config).await.expect("store");
    let services = services(&config, Arc::new(store)).await.expect("services");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        serve_grpc(
            listener,
            Arc::new(services.filter),
            &services.xds,
            services.envoy_credential,
            std::future::pending(),
        )
        .await
        .expect("gRPC server");
    });
    (address, data_dir)
}

fn with_credential<T>(message: T, credential: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(credential) = credential {
        let value: MetadataValue<_> = format!("Bearer {credential}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::test]
async fn the_filter_service_refuses_callers_without_the_credential() {
    let (address, _data_dir) = grpc_port().await;
    let mut client = FilterServiceClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let lookup = || LookupUserRequest {
        user_id: "u_nobody".into(),
    };
    for credential in [None, Some("guessed"), Some(&CREDENTIAL[1..])] {
        let refused = client
            .lookup_user(with_credential(lookup(), credential))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{credential:?}");
        let refused = client
            .watch_changes(with_credential(WatchChangesRequest::default(), credential))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{credential:?}");
    }
    let answer = client
        .lookup_user(with_credential(lookup(), Some(CREDENTIAL)))
        .await
        .expect("answered");
    assert!(answer.into_inner().principal.is_none());
}

#[tokio::test]
async fn ads_refuses_callers_without_the_credential() {
    let (address, _data_dir) = grpc_port().await;
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let requests = || tokio_stream::iter([DiscoveryRequest::default()]);
    let refused = client
        .stream_aggregated_resources(with_credential(requests(), None))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    client
        .stream_aggregated_resources(with_credential(requests(), Some(CREDENTIAL)))
        .await
        .expect("a stream with the credential is accepted");
}
