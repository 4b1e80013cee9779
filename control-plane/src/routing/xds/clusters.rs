//! Clusters (CDS) and load assignments (EDS) for the pools.
//!
//! A pool whose endpoints are all IP addresses is an EDS cluster fed over ADS, so endpoint
//! changes reach Envoy without touching the cluster. Envoy resolves no names in EDS (an EDS
//! host must be an IP address), so a pool with a DNS host becomes a STRICT_DNS cluster with
//! its load assignment inline: Envoy resolves the names itself, and any change to that pool's
//! endpoints is a CDS update of that one cluster.
//!
//! Nothing here sets a protobuf map with more than one entry: prost encodes maps in hash
//! order, and the snapshot's version is a hash of the encoding.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy, TransportSocketMatch,
};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, OutlierDetection};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, data_source, socket_address, transport_socket, Address,
    AggregatedConfigSource, ApiVersion, ConfigSource, DataSource, HealthStatus, Metadata,
    SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context, subject_alt_name_matcher, CertificateValidationContext, CommonTlsContext,
    SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{self, value, Struct, UInt32Value, Value};
use envoy_types::util::pack_any;
use sha2::{Digest, Sha256};

use super::model::{
    cluster_name, CertificateCheck, Endpoint, HealthState, Pool, TrustedCas, UpstreamTls,
};
use crate::routing::backend::Weight;

/// How long Envoy waits for a TCP connection to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Envoy ejects a backend after this many 5xx answers in a row...
const OUTLIER_CONSECUTIVE_5XX: u32 = 3;
/// ...checking every this long...
const OUTLIER_INTERVAL: Duration = Duration::from_secs(5);
/// ...for this long (times the number of ejections)...
const OUTLIER_BASE_EJECTION: Duration = Duration::from_secs(10);
/// ...but never more than this share of a pool.
const OUTLIER_MAX_EJECTION_PERCENT: u32 = 50;

/// Endpoint metadata namespace Envoy reads to pick a cluster's transport socket.
const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
/// Key under [`TRANSPORT_SOCKET_MATCH`] naming the TLS settings of an endpoint that speaks TLS.
const TLS_KEY: &str = "tollgate_tls";
const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// The cluster for `pool`. Its load assignment is inline when the pool has a DNS host;
/// otherwise it is EDS over ADS and [`load_assignment`] is served separately.
pub(crate) fn cluster(pool: &Pool) -> Cluster {
    let mut cluster = Cluster {
        name: cluster_name(&pool.name),
        connect_timeout: Some(duration(CONNECT_TIMEOUT)),
        lb_policy: LbPolicy::RoundRobin.into(),
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx: Some(UInt32Value {
                value: OUTLIER_CONSECUTIVE_5XX,
            }),
            interval: Some(duration(OUTLIER_INTERVAL)),
            base_ejection_time: Some(duration(OUTLIER_BASE_EJECTION)),
            max_ejection_percent: Some(UInt32Value {
                value: OUTLIER_MAX_EJECTION_PERCENT,
            }),
            ..OutlierDetection::default()
        }),
        transport_socket_matches: tls_matches(pool),
        ..Cluster::default()
    };
    if pool.all_ip() {
        cluster.cluster_discovery_type =
            Some(ClusterDiscoveryType::Type(DiscoveryType::Eds.into()));
        cluster.eds_cluster_config = Some(EdsClusterConfig {
            eds_config: Some(ConfigSource {
                resource_api_version: ApiVersion::V3.into(),
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                ..ConfigSource::default()
            }),
            // Empty: the EDS resource is named like the cluster.
            service_name: String::new(),
        });
    } else {
        cluster.cluster_discovery_type =
            Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns.into()));
        cluster.load_assignment = Some(load_assignment(pool));
    }
    cluster
}

/// The weighted endpoints of `pool` with the health the control plane last saw.
pub(crate) fn load_assignment(pool: &Pool) -> ClusterLoadAssignment {
    let mut endpoints: Vec<&Endpoint> = pool.endpoints.iter().collect();
    endpoints.sort_by(|a, b| (&a.id, &a.host, a.port).cmp(&(&b.id, &b.host, b.port)));
    let lb_endpoints: Vec<LbEndpoint> = endpoints.into_iter().map(lb_endpoint).collect();
    ClusterLoadAssignment {
        cluster_name: cluster_name(&pool.name),
        endpoints: if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints {
                lb_endpoints,
                ..LocalityLbEndpoints::default()
            }]
        },
        ..ClusterLoadAssignment::default()
    }
}

fn lb_endpoint(endpoint: &Endpoint) -> LbEndpoint {
    let host = endpoint
        .ip()
        .map_or_else(|| endpoint.host.clone(), |ip| ip.to_string());
    let health_status = match endpoint.healthy {
        HealthState::Healthy => HealthStatus::Healthy,
        HealthState::Unhealthy => HealthStatus::Unhealthy,
        HealthState::Unknown => HealthStatus::Unknown,
    };
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: host,
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(
                        endpoint.port.into(),
                    )),
                    ..SocketAddress::default()
                })),
            }),
            ..EnvoyEndpoint::default()
        })),
        health_status: health_status.into(),
        load_balancing_weight: Some(UInt32Value {
            value: endpoint
                .weight
                .clamp(*Weight::RANGE.start(), *Weight::RANGE.end()),
        }),
        metadata: endpoint.tls.as_ref().map(tls_metadata),
    }
}

/// One transport socket per distinct TLS setting in the pool (server name and what the
/// certificate is checked against), chosen by the endpoint's metadata, so TLS and plaintext
/// backends (and several server names) can share a pool. Endpoints without TLS match none and
/// use the cluster's default, plaintext.
fn tls_matches(pool: &Pool) -> Vec<TransportSocketMatch> {
    let distinct: BTreeSet<&UpstreamTls> = pool
        .endpoints
        .iter()
        .filter_map(|e| e.tls.as_ref())
        .collect();
    distinct
        .into_iter()
        .map(|tls| TransportSocketMatch {
            name: format!("tls:{}:{}", tls.sni, tls_id(tls)),
            r#match: Some(tls_selector(tls)),
            transport_socket: Some(TransportSocket {
                name: TLS_TRANSPORT_SOCKET.into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                    UpstreamTlsContext {
                        sni: tls.sni.clone(),
                        common_tls_context: certificate_validation(&tls.check),
                        ..UpstreamTlsContext::default()
                    },
                ))),
            }),
        })
        .collect()
}

/// The trusted CAs and the name the backend's certificate must carry; nothing (Envoy then
/// accepts any certificate) for a backend that opted out.
fn certificate_validation(check: &CertificateCheck) -> Option<CommonTlsContext> {
    let CertificateCheck::Verified {
        trusted,
        server_name,
    } = check
    else {
        return None;
    };
    let trusted_ca = match trusted {
        TrustedCas::File(path) => data_source::Specifier::Filename(path.clone()),
        TrustedCas::Pem(pem) => data_source::Specifier::InlineString(pem.clone()),
    };
    let san_type = if server_name.parse::<IpAddr>().is_ok() {
        subject_alt_name_matcher::SanType::IpAddress
    } else {
        subject_alt_name_matcher::SanType::Dns
    };
    Some(CommonTlsContext {
        validation_context_type: Some(
            common_tls_context::ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(DataSource {
                        specifier: Some(trusted_ca),
                        ..DataSource::default()
                    }),
                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                        san_type: san_type.into(),
                        matcher: Some(StringMatcher {
                            match_pattern: Some(string_matcher::MatchPattern::Exact(
                                server_name.clone(),
                            )),
                            ignore_case: false,
                        }),
                        ..SubjectAltNameMatcher::default()
                    }],
                    ..CertificateValidationContext::default()
                },
            ),
        ),
        ..CommonTlsContext::default()
    })
}

/// Names one TLS setting in metadata: a digest, since a CA may be long.
fn tls_id(tls: &UpstreamTls) -> String {
    let mut digest = Sha256::new();
    digest.update(tls.sni.as_bytes());
    match &tls.check {
        CertificateCheck::Verified {
            trusted,
            server_name,
        } => {
            let (kind, cas) = match trusted {
                TrustedCas::File(path) => ("file", path),
                TrustedCas::Pem(pem) => ("pem", pem),
            };
            for part in ["verified", server_name, kind, cas] {
                digest.update([0]);
                digest.update(part.as_bytes());
            }
        }
        CertificateCheck::Unverified => digest.update(b"\0unverified"),
    }
    hex::encode(&digest.finalize()[..8])
}

fn tls_metadata(tls: &UpstreamTls) -> Metadata {
    Metadata {
        filter_metadata: HashMap::from([(TRANSPORT_SOCKET_MATCH.to_string(), tls_selector(tls))]),
        ..Metadata::default()
    }
}

fn tls_selector(tls: &UpstreamTls) -> Struct {
    Struct {
        fields: HashMap::from([(
            TLS_KEY.to_string(),
            Value {
                kind: Some(value::Kind::StringValue(tls_id(tls))),
            },
        )]),
    }
}

fn duration(d: Duration) -> protobuf::Duration {
    protobuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::xds::snapshot::tests::{endpoint, healthy_pool, pool};

    fn socket(lb: &LbEndpoint) -> (&str, u32) {
        let Some(lb_endpoint::HostIdentifier::Endpoint(e)) = &lb.host_identifier else {
            panic!("no endpoint");
        };
        let Some(address::Address::SocketAddress(s)) =
            e.address.as_ref().and_then(|a| a.address.as_ref())
        else {
            panic!("no socket address");
        };
        let Some(socket_address::PortSpecifier::PortValue(port)) = s.port_specifier else {
            panic!("no port");
        };
        (&s.address, port)
    }

    fn discovery_type(cluster: &Cluster) -> DiscoveryType {
        match cluster.cluster_discovery_type {
            Some(ClusterDiscoveryType::Type(t)) => {
                DiscoveryType::try_from(t).expect("discovery type")
            }
            _ => panic!("no discovery type"),
        }
    }

    #[test]
    fn ip_pools_are_eds_clusters_over_ads() {
        let cluster = cluster(&healthy_pool("api", "10.0.0.1"));
        assert_eq!(cluster.name, "tollgate_pool_api");
        assert_eq!(discovery_type(&cluster), DiscoveryType::Eds);
        let eds = cluster.eds_cluster_config.expect("eds config");
        assert!(matches!(
            eds.eds_config.and_then(|c| c.config_source_specifier),
            Some(config_source::ConfigSourceSpecifier::Ads(_))
        ));
        assert!(cluster.load_assignment.is_none());
        assert_eq!(
            cluster.connect_timeout,
            Some(duration(Duration::from_secs(1)))
        );
        assert_eq!(cluster.lb_policy, i32::from(LbPolicy::RoundRobin));
        let outlier = cluster.outlier_detection.expect("outlier detection");
        assert_eq!(outlier.consecutive_5xx.map(|v| v.value), Some(3));
        assert_eq!(outlier.interval, Some(duration(Duration::from_secs(5))));
        assert_eq!(
            outlier.base_ejection_time,
            Some(duration(Duration::from_secs(10)))
        );
        assert_eq!(outlier.max_ejection_percent.map(|v| v.value), Some(50));
        assert!(cluster.transport_socket_matches.is_empty());
    }

    #[test]
    fn endpoints_carry_weights_and_health() {
        let pool = pool(
            "api",
            vec![
                endpoint("b", "10.0.0.2", 30, HealthState::Unhealthy),
                endpoint("a", "10.0.0.1", 70, HealthState::Healthy),
                endpoint("c", "[2001:db8::1]", 0, HealthState::Unknown),
                endpoint("d", "10.0.0.4", 500, HealthState::Healthy),
            ],
        );
        let assignment = load_assignment(&pool);
        assert_eq!(assignment.cluster_name, "tollgate_pool_api");
        let lbs = &assignment.endpoints[0].lb_endpoints;
        let seen: Vec<(&str, u32, u32, HealthStatus)> = lbs
            .iter()
            .map(|lb| {
                let (host, port) = socket(lb);
                (
                    host,
                    port,
                    lb.load_balancing_weight.map_or(0, |w| w.value),
                    HealthStatus::try_from(lb.health_status).expect("health status"),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("10.0.0.1", 8080, 70, HealthStatus::Healthy),
                ("10.0.0.2", 8080, 30, HealthStatus::Unhealthy),
                ("2001:db8::1", 8080, 1, HealthStatus::Unknown),
                ("10.0.0.4", 8080, 100, HealthStatus::Healthy),
            ]
        );
    }

    #[test]
    fn an_empty_pool_has_no_locality() {
        assert!(load_assignment(&pool("empty", vec![])).endpoints.is_empty());
    }

    #[test]
    fn a_dns_host_makes_a_strict_dns_cluster_with_inline_endpoints() {
        let pool = pool(
            "mixed",
            vec![
                endpoint("a", "10.0.0.1", 10, HealthState::Healthy),
                endpoint("b", "backend.internal", 20, HealthState::Unhealthy),
            ],
        );
        let cluster = cluster(&pool);
        assert_eq!(discovery_type(&cluster), DiscoveryType::StrictDns);
        assert!(cluster.eds_cluster_config.is_none());
        let assignment = cluster.load_assignment.expect("inline load assignment");
        let lbs = &assignment.endpoints[0].lb_endpoints;
        assert_eq!(socket(&lbs[1]), ("backend.internal", 8080));
        assert_eq!(lbs[1].health_status, i32::from(HealthStatus::Unhealthy));
    }

    fn tls_context(matched: &TransportSocketMatch) -> UpstreamTlsContext {
        let socket = matched.transport_socket.as_ref().expect("socket");
        assert_eq!(socket.name, "envoy.transport_sockets.tls");
        let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else {
            panic!("no TLS config");
        };
        <UpstreamTlsContext as prost::Message>::decode(any.value.as_slice()).expect("TLS context")
    }

    fn verified(server_name: &str, trusted: TrustedCas) -> UpstreamTls {
        UpstreamTls {
            sni: server_name.into(),
            check: CertificateCheck::Verified {
                trusted,
                server_name: server_name.into(),
            },
        }
    }

    #[test]
    fn tls_endpoints_get_a_transport_socket_with_their_sni() {
        let mut pool = pool(
            "tls",
            vec![
                endpoint("a", "10.0.0.1", 1, HealthState::Healthy),
                endpoint("b", "10.0.0.2", 1, HealthState::Healthy),
                endpoint("c", "10.0.0.3", 1, HealthState::Healthy),
            ],
        );
        let tls = verified("api.example.com", TrustedCas::File("/etc/ca.pem".into()));
        pool.endpoints[0].tls = Some(tls.clone());
        pool.endpoints[1].tls = Some(tls.clone());
        let cluster = cluster(&pool);
        assert_eq!(cluster.transport_socket_matches.len(), 1);
        let matched = &cluster.transport_socket_matches[0];
        assert_eq!(matched.r#match, Some(tls_selector(&tls)));
        assert_eq!(tls_context(matched).sni, "api.example.com");

        let lbs = &load_assignment(&pool).endpoints[0].lb_endpoints;
        let selector = lbs[0]
            .metadata
            .as_ref()
            .and_then(|m| m.filter_metadata.get(TRANSPORT_SOCKET_MATCH));
        assert_eq!(selector, matched.r#match.as_ref());
        assert!(lbs[2].metadata.is_none());
    }

    #[test]
    fn the_same_name_checked_differently_gets_a_socket_of_its_own() {
        let mut pool = pool(
            "tls",
            vec![
                endpoint("a", "10.0.0.1", 1, HealthState::Healthy),
                endpoint("b", "10.0.0.2", 1, HealthState::Healthy),
            ],
        );
        pool.endpoints[0].tls = Some(verified(
            "api.example.com",
            TrustedCas::File("/etc/ca.pem".into()),
        ));
        pool.endpoints[1].tls = Some(UpstreamTls {
            sni: "api.example.com".into(),
            check: CertificateCheck::Unverified,
        });
        let cluster = cluster(&pool);
        assert_eq!(cluster.transport_socket_matches.len(), 2);
        let selectors: BTreeSet<_> = cluster
            .transport_socket_matches
            .iter()
            .map(|m| format!("{:?}", m.r#match))
            .collect();
        assert_eq!(selectors.len(), 2);
    }
}
