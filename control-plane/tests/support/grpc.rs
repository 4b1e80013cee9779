//! The application's gRPC port (filter service and ADS) on a free loopback port, called the
//! way Envoy calls it: with the deployment's credential.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tollgate::proto::v1::filter_service_client::FilterServiceClient;
use tollgate::server::serve_grpc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::app::Api;
use super::replica::Replica;

/// The Envoy credential every test application is configured with.
pub const ENVOY_CREDENTIAL: &str = "envoy-credential-of-the-test-deployment-0123";

/// Adds `authorization: Bearer <credential>` to every call, as Envoy's bootstrap does.
#[derive(Clone)]
pub struct SendsCredential(MetadataValue<Ascii>);

impl Interceptor for SendsCredential {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type FilterClient = FilterServiceClient<InterceptedService<Channel, SendsCredential>>;

/// The credential as Envoy sends it, in `authorization` metadata.
pub fn bearer() -> MetadataValue<Ascii> {
    format!("Bearer {ENVOY_CREDENTIAL}").parse().expect("ascii")
}

impl Api {
    /// Serves this application's gRPC port (filter service and ADS) on a free loopback port.
    pub async fn grpc_address(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (filter, xds, credential) = (
            self.filter.clone(),
            self.xds.clone(),
            self.envoy_credential.clone(),
        );
        tokio::spawn(async move {
            serve_grpc(listener, filter, &xds, credential, std::future::pending())
                .await
                .expect("gRPC server");
        });
        address
    }

    /// A client of this application's filter service that presents the credential.
    pub async fn filter_client(&self) -> FilterClient {
        client_of(self.grpc_address().await).await
    }
}

impl Replica {
    /// A client of the replica's filter service that presents the credential.
    pub async fn filter_client(&self) -> FilterClient {
        client_of(self.grpc).await
    }
}

async fn client_of(address: SocketAddr) -> FilterClient {
    let channel = Channel::from_shared(format!("http://{address}"))
        .expect("address")
        .connect()
        .await
        .expect("connect");
    FilterServiceClient::with_interceptor(channel, SendsCredential(bearer()))
}
