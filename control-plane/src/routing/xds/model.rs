//! What Envoy's configuration is built from: backend pools and the routing table, as plain
//! values with no storage types, so a snapshot can be built (and tested) from anything.

use std::net::IpAddr;

/// A named set of backends; Envoy sees it as one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Unique among pools; the cluster is named after it (see [`cluster_name`]).
    pub name: String,
    /// The backends; a pool with none answers nothing (its routes fall back, see
    /// [`RoutingTable`]). Envoy runs no active health checks: it learns the control plane's
    /// verdict through each endpoint's health status.
    pub endpoints: Vec<Endpoint>,
}

/// One backend of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The backend's id; orders the endpoints so equal input encodes identically.
    pub id: String,
    /// An IP address (IPv6 with or without brackets) or a DNS name.
    pub host: String,
    /// The backend's TCP port.
    pub port: u16,
    /// Share of the pool's traffic relative to its siblings, clamped into [`Weight::RANGE`].
    ///
    /// [`Weight::RANGE`]: crate::routing::backend::Weight::RANGE
    pub weight: u32,
    /// The latest verdict of the control plane's health checks.
    pub healthy: HealthState,
    /// Speak TLS to this backend; plaintext when `None`.
    pub tls: Option<UpstreamTls>,
}

/// The health of an endpoint as the control plane last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    Healthy,
    Unhealthy,
    /// Not checked yet; Envoy treats it as usable.
    Unknown,
}

/// TLS towards a backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamTls {
    /// Server name sent in the handshake; empty sends none.
    pub sni: String,
    /// How the backend's certificate is checked.
    pub check: CertificateCheck,
}

/// What Envoy demands of a backend's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertificateCheck {
    /// It chains to `trusted` and names `server_name` (a DNS name or an IP address) in its
    /// subject alternative names.
    Verified {
        trusted: TrustedCas,
        server_name: String,
    },
    /// Nothing: the operator turned the check off for this backend.
    Unverified,
}

/// The CA certificates a backend's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrustedCas {
    /// A PEM bundle on Envoy's host.
    File(String),
    /// PEM certificates sent with the configuration.
    Pem(String),
}

/// Which pool serves which request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTable {
    /// Requests whose `x-tollgate-route-group` header (set by the filter) has a group's
    /// value go to that group's pools.
    pub group_routes: Vec<GroupRoute>,
    /// Serves every request no group route claims; with none, such requests get a 503.
    pub default_pool: Option<String>,
}

/// The pools of one routing group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRoute {
    /// The exact value of `x-tollgate-route-group` this route matches.
    pub group_header_value: String,
    /// Pool names in precedence order: the first one that can serve takes the traffic.
    pub pools: Vec<String>,
}

/// The name of the Envoy cluster that serves `pool`.
pub fn cluster_name(pool: &str) -> String {
    format!("tollgate_pool_{pool}")
}

impl Endpoint {
    /// The host as an IP address, or `None` for a DNS name.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        let bare = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        bare.parse().ok()
    }
}

impl Pool {
    /// Whether routing traffic here can succeed: at least one endpoint is not known to be
    /// unhealthy. An empty pool cannot serve.
    pub(crate) fn can_serve(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.healthy != HealthState::Unhealthy)
    }

    /// Whether every endpoint is an IP address, so Envoy can take them over EDS.
    pub(crate) fn all_ip(&self) -> bool {
        self.endpoints.iter().all(|e| e.ip().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: &str, healthy: HealthState) -> Endpoint {
        Endpoint {
            id: host.into(),
            host: host.into(),
            port: 80,
            weight: 1,
            healthy,
            tls: None,
        }
    }

    #[test]
    fn hosts_are_ips_or_dns_names() {
        assert!(endpoint("10.0.0.1", HealthState::Healthy).ip().is_some());
        assert!(endpoint("::1", HealthState::Healthy).ip().is_some());
        assert!(endpoint("[2001:db8::1]", HealthState::Healthy)
            .ip()
            .is_some());
        assert!(endpoint("backend.internal", HealthState::Healthy)
            .ip()
            .is_none());
    }

    #[test]
    fn a_pool_serves_while_one_endpoint_is_not_unhealthy() {
        let mut pool = Pool {
            name: "p".into(),
            endpoints: vec![],
        };
        assert!(!pool.can_serve());
        pool.endpoints
            .push(endpoint("10.0.0.1", HealthState::Unhealthy));
        assert!(!pool.can_serve());
        pool.endpoints
            .push(endpoint("10.0.0.2", HealthState::Unknown));
        assert!(pool.can_serve());
    }
}
