//! One consistent, encoded set of Envoy resources per xDS type, built from the pools and the
//! routing table. Built by one writer; ADS streams only read it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use sha2::{Digest, Sha256};

use super::clusters::{cluster, load_assignment};
use super::model::{Pool, RoutingTable};
use super::routes::route_configuration;

/// Type URL of clusters (CDS).
pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// Type URL of cluster load assignments (EDS).
pub const ENDPOINT_TYPE: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// Type URL of route configurations (RDS).
pub const ROUTE_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Every type URL Tollgate serves.
pub const TYPE_URLS: [&str; 3] = [CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE];

/// One named resource, encoded as Envoy receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The resource's name (cluster name, or route configuration name).
    pub name: String,
    /// The encoded message, as it goes into a `DiscoveryResponse`.
    pub body: Any,
}

impl Resource {
    fn new<M: Message + Name>(name: String, message: &M) -> Self {
        Self {
            name,
            body: Any {
                type_url: M::type_url(),
                value: message.encode_to_vec(),
            },
        }
    }
}

/// The resources of one type, sorted by name, and their version. Cloning is cheap.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    version: String,
    items: Arc<[Resource]>,
}

impl Resources {
    /// Sorts `items` by name (the first of equal names wins) and derives the version from
    /// their encoding, so equal content always carries the same version.
    pub(crate) fn new(mut items: Vec<Resource>) -> Self {
        items.sort_by(|a, b| a.name.cmp(&b.name));
        items.dedup_by(|later, first| later.name == first.name);
        let mut hash = Sha256::new();
        for item in &items {
            for part in [item.name.as_bytes(), &item.body.value] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part);
            }
        }
        Self {
            version: hex::encode(&hash.finalize()[..8]),
            items: items.into(),
        }
    }

    /// The version Envoy sees in `version_info` for these resources.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every resource, sorted by name.
    pub fn items(&self) -> &[Resource] {
        &self.items
    }

    /// The names of the resources.
    pub fn names(&self) -> BTreeSet<&str> {
        self.items.iter().map(|r| r.name.as_str()).collect()
    }
}

/// Envoy's whole dynamic configuration (CDS, EDS, RDS) at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    clusters: Resources,
    endpoints: Resources,
    routes: Resources,
}

impl Snapshot {
    /// Builds the resources: one cluster per pool (over EDS, or STRICT_DNS with inline
    /// endpoints when a pool has a DNS host, since EDS takes only IP addresses), one load
    /// assignment per EDS cluster, and the route configuration. Pool names are unique; of
    /// duplicates the first is used.
    pub fn build(pools: &[Pool], routing: &RoutingTable) -> Self {
        let mut by_name: BTreeMap<&str, &Pool> = BTreeMap::new();
        for pool in pools {
            by_name.entry(pool.name.as_str()).or_insert(pool);
        }
        let mut clusters = Vec::with_capacity(by_name.len());
        let mut endpoints = Vec::with_capacity(by_name.len());
        for pool in by_name.values() {
            let cluster = cluster(pool);
            if cluster.load_assignment.is_none() {
                let assignment = load_assignment(pool);
                endpoints.push(Resource::new(assignment.cluster_name.clone(), &assignment));
            }
            clusters.push(Resource::new(cluster.name.clone(), &cluster));
        }
        let routes = route_configuration(&by_name, routing);
        Self {
            clusters: Resources::new(clusters),
            endpoints: Resources::new(endpoints),
            routes: Resources::new(vec![Resource::new(routes.name.clone(), &routes)]),
        }
    }

    /// The resources of one type URL, or `None` for a type Tollgate does not serve.
    pub fn resources(&self, type_url: &str) -> Option<&Resources> {
        match type_url {
            CLUSTER_TYPE => Some(&self.clusters),
            ENDPOINT_TYPE => Some(&self.endpoints),
            ROUTE_TYPE => Some(&self.routes),
            _ => None,
        }
    }

    /// The clusters (CDS).
    pub fn clusters(&self) -> &Resources {
        &self.clusters
    }

    /// The load assignments of EDS clusters (EDS).
    pub fn endpoints(&self) -> &Resources {
        &self.endpoints
    }

    /// The route configuration (RDS).
    pub fn routes(&self) -> &Resources {
        &self.routes
    }
}

impl Default for Snapshot {
    /// No pools and no default pool: every request is answered 503 by the routes.
    fn default() -> Self {
        Self::build(&[], &RoutingTable::default())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

    use super::*;
    use crate::routing::xds::model::{Endpoint, GroupRoute, HealthState};

    pub(crate) fn endpoint(id: &str, host: &str, weight: u32, healthy: HealthState) -> Endpoint {
        Endpoint {
            id: id.into(),
            host: host.into(),
            port: 8080,
            weight,
            healthy,
            tls: None,
        }
    }

    pub(crate) fn pool(name: &str, endpoints: Vec<Endpoint>) -> Pool {
        Pool {
            name: name.into(),
            endpoints,
        }
    }

    pub(crate) fn healthy_pool(name: &str, host: &str) -> Pool {
        pool(name, vec![endpoint("e1", host, 1, HealthState::Healthy)])
    }

    pub(crate) fn routing(default_pool: Option<&str>, groups: &[(&str, &[&str])]) -> RoutingTable {
        RoutingTable {
            group_routes: groups
                .iter()
                .map(|(value, pools)| GroupRoute {
                    group_header_value: (*value).into(),
                    pools: pools.iter().map(|p| (*p).into()).collect(),
                })
                .collect(),
            default_pool: default_pool.map(Into::into),
        }
    }

    #[test]
    fn type_urls_are_those_of_the_messages() {
        assert_eq!(CLUSTER_TYPE, Cluster::type_url());
        assert_eq!(ENDPOINT_TYPE, ClusterLoadAssignment::type_url());
        assert_eq!(ROUTE_TYPE, RouteConfiguration::type_url());
    }

    #[test]
    fn equal_input_gives_equal_versions_whatever_the_order() {
        let mut a = pool(
            "a",
            vec![
                endpoint("e1", "10.0.0.1", 70, HealthState::Healthy),
                endpoint("e2", "10.0.0.2", 30, HealthState::Unknown),
            ],
        );
        let b = healthy_pool("b", "10.0.1.1");
        let table = routing(Some("a"), &[("gold", &["b", "a"]), ("silver", &["a"])]);
        let first = Snapshot::build(&[a.clone(), b.clone()], &table);

        a.endpoints.reverse();
        let mut reordered = table.clone();
        reordered.group_routes.reverse();
        let second = Snapshot::build(&[b, a], &reordered);
        assert_eq!(first, second);
        assert_eq!(first.clusters().version().len(), 16);
    }

    #[test]
    fn any_change_moves_only_the_version_of_its_type() {
        let table = routing(Some("a"), &[]);
        let before = Snapshot::build(&[healthy_pool("a", "10.0.0.1")], &table);
        let mut changed = healthy_pool("a", "10.0.0.1");
        changed.endpoints[0].weight = 50;
        let after = Snapshot::build(&[changed], &table);
        assert_eq!(before.clusters().version(), after.clusters().version());
        assert_ne!(before.endpoints().version(), after.endpoints().version());
        assert_eq!(before.routes().version(), after.routes().version());
    }

    #[test]
    fn resources_are_sorted_by_name_and_typed() {
        let pools = [
            healthy_pool("zeta", "10.0.0.3"),
            healthy_pool("alpha", "10.0.0.1"),
            healthy_pool("dns", "backend.internal"),
        ];
        let snapshot = Snapshot::build(&pools, &RoutingTable::default());
        let names: Vec<&str> = snapshot
            .clusters()
            .items()
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "tollgate_pool_alpha",
                "tollgate_pool_dns",
                "tollgate_pool_zeta"
            ]
        );
        // The DNS pool carries its endpoints inline, so EDS serves only the other two.
        assert_eq!(
            snapshot.endpoints().names().into_iter().collect::<Vec<_>>(),
            ["tollgate_pool_alpha", "tollgate_pool_zeta"]
        );
        assert!(snapshot
            .endpoints()
            .items()
            .iter()
            .all(|r| r.body.type_url == ENDPOINT_TYPE));
        assert_eq!(
            snapshot.routes().names().into_iter().collect::<Vec<_>>(),
            ["tollgate_routes"]
        );
        assert!(snapshot.resources("type.googleapis.com/other").is_none());
    }

    #[test]
    fn duplicate_pool_names_keep_the_first() {
        let snapshot = Snapshot::build(
            &[healthy_pool("a", "10.0.0.1"), healthy_pool("a", "10.0.0.2")],
            &RoutingTable::default(),
        );
        assert_eq!(snapshot.clusters().items().len(), 1);
        let expected = Snapshot::build(&[healthy_pool("a", "10.0.0.1")], &RoutingTable::default());
        assert_eq!(snapshot, expected);
    }
}
