//! The credential every Envoy presents on the gRPC port (ADS and the filter service), as
//! `authorization: Bearer <credential>` metadata. One per deployment; without it the port
//! answers `UNAUTHENTICATED`.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

const BEARER: &str = "Bearer ";

/// Checks each gRPC request's credential in constant time.
#[derive(Clone)]
pub struct EnvoyCredential {
    /// SHA-256 of the credential, so comparisons take the same time whatever its length.
    expected: Arc<[u8; 32]>,
}

impl EnvoyCredential {
    pub fn new(credential: &str) -> Self {
        Self {
            expected: Arc::new(Sha256::digest(credential.as_bytes()).into()),
        }
    }

    fn admits(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        bool::from(presented.ct_eq(self.expected.as_ref()))
    }
}

impl Interceptor for EnvoyCredential {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.as_bytes().strip_prefix(BEARER.as_bytes()));
        match presented {
            Some(credential) if self.admits(credential) => Ok(request),
            _ => {
                metrics::counter!("tollgate_grpc_unauthenticated_total").increment(1);
                Err(Status::unauthenticated(
                    "this port answers Envoys of this deployment only: send its credential as \
                     `authorization: Bearer <credential>`",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn only_the_deployments_credential_passes() {
        let mut check = EnvoyCredential::new("s3cret-credential");
        assert!(check
            .call(request(Some("Bearer s3cret-credential")))
            .is_ok());
        for refused in [
            None,
            Some("Bearer s3cret-credentia"),
            Some("Bearer s3cret-credential "),
            Some("bearer s3cret-credential"),
            Some("s3cret-credential"),
            Some("Bearer "),
        ] {
            let status = check.call(request(refused)).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{refused:?}");
        }
    }
}
