//! The Envoy cluster the filter calls, and how a callout names it to Envoy.
//!
//! Envoy sends a gRPC callout with the cluster's name as its `:authority` unless told another,
//! and the control plane refuses a request whose authority is not one. Istio names the cluster
//! of a service port `outbound|<port>|<subset>|<host>`, which is not: for such a cluster the
//! callout names a serialized `envoy.config.core.v3.GrpcService` instead, with the cluster and
//! the authority `<host>:<port>`.

use std::fmt;

use prost::Message;
use serde::Deserialize;

/// `envoy.config.core.v3.GrpcService`, as far as a callout needs it.
#[derive(Clone, PartialEq, Message)]
struct GrpcService {
    #[prost(message, optional, tag = "1")]
    envoy_grpc: Option<EnvoyGrpc>,
}

/// `envoy.config.core.v3.GrpcService.EnvoyGrpc`.
#[derive(Clone, PartialEq, Message)]
struct EnvoyGrpc {
    #[prost(string, tag = "1")]
    cluster_name: String,
    #[prost(string, tag = "2")]
    authority: String,
}

/// The control plane's cluster, checked, with what a callout hands Envoy to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ControlPlaneCluster {
    name: String,
    target: String,
}

impl ControlPlaneCluster {
    /// What a gRPC callout names as its upstream: the cluster's name, or a serialized
    /// `GrpcService` with the authority Istio's cluster names call for.
    pub fn callout_target(&self) -> &str {
        &self.target
    }
}

impl TryFrom<String> for ControlPlaneCluster {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        if name.trim().is_empty() {
            return Err("must name an Envoy cluster".to_owned());
        }
        if is_authority(&name) {
            return Ok(Self {
                target: name.clone(),
                name,
            });
        }
        let Some(authority) = istio_authority(&name) else {
            return Err(
                "must be usable as an HTTP authority, or name a cluster as Istio does \
                 (outbound|<port>|<subset>|<host>)"
                    .to_owned(),
            );
        };
        let service = GrpcService {
            envoy_grpc: Some(EnvoyGrpc {
                cluster_name: name.clone(),
                authority,
            }),
        };
        // The SDK hands the target over as text: the encoding must be ASCII, which it is while
        // the name and the authority stay short enough for one-byte lengths.
        let target = String::from_utf8(service.encode_to_vec())
            .ok()
            .filter(|encoded| encoded.is_ascii())
            .ok_or_else(|| {
                "is too long for a callout target (at most about 60 characters)".to_owned()
            })?;
        Ok(Self { name, target })
    }
}

impl Default for ControlPlaneCluster {
    fn default() -> Self {
        let name = "tollgate_control_plane".to_owned();
        Self {
            target: name.clone(),
            name,
        }
    }
}

impl fmt::Display for ControlPlaneCluster {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.name)
    }
}

impl PartialEq<&str> for ControlPlaneCluster {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

/// Whether `name` may stand as a request's `:authority` (RFC 3986's characters of one).
fn is_authority(name: &str) -> bool {
    name.bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@[]%".contains(&byte))
}

/// `<host>:<port>` of an Istio cluster name `outbound|<port>|<subset>|<host>`.
fn istio_authority(name: &str) -> Option<String> {
    let mut parts = name.split('|');
    let (Some("outbound"), Some(port), Some(_subset), Some(host), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && is_authority(host)).then(|| format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str) -> Result<ControlPlaneCluster, String> {
        ControlPlaneCluster::try_from(name.to_owned())
    }

    #[test]
    fn a_plain_cluster_name_is_its_own_target() {
        let plain = cluster("tollgate_control_plane").expect("valid");
        assert_eq!(plain.callout_target(), "tollgate_control_plane");
        assert_eq!(plain, ControlPlaneCluster::default());
    }

    #[test]
    fn an_istio_cluster_is_called_with_its_host_as_the_authority() {
        let name = "outbound|18000||tollgate.tollgate-system.svc.cluster.local";
        let istio = cluster(name).expect("valid");
        let service =
            GrpcService::decode(istio.callout_target().as_bytes()).expect("a GrpcService");
        assert_eq!(
            service.envoy_grpc,
            Some(EnvoyGrpc {
                cluster_name: name.to_owned(),
                authority: "tollgate.tollgate-system.svc.cluster.local:18000".to_owned(),
            })
        );
        assert_eq!(istio.to_string(), name);
    }

    #[test]
    fn names_that_cannot_be_called_are_refused() {
        for name in [
            " ",
            "my cluster",
            "outbound|http||tollgate.svc",
            "inbound|18000||tollgate.svc",
            "outbound|18000||",
            &format!("outbound|18000||{}.svc.cluster.local", "x".repeat(80)),
        ] {
            assert!(cluster(name).is_err(), "{name}");
        }
    }
}
