//! One consistent, encoded set of Envoy resources per xDS type, built from the pools and the
//! routing table, each resource with a version of its own. Built by one writer, and updated
//! pool by pool: a change re-encodes only the resources of the pools it touched. ADS streams
//! only read it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use sha2::{Digest, Sha256};

use super::clusters::{cluster, load_assignment};
use super::model::{cluster_name, Pool, RoutingTable};
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
    /// A hash of the name and the encoding: the resource keeps its version while its content
    /// stays the same, whatever else changes.
    pub version: String,
    /// The encoded message, as it goes into a discovery response.
    pub body: Any,
}

impl Resource {
    fn new<M: Message + Name>(name: String, message: &M) -> Self {
        let value = message.encode_to_vec();
        Self {
            version: digest([name.as_bytes(), value.as_slice()]),
            name,
            body: Any {
                type_url: M::type_url(),
                value,
            },
        }
    }
}

/// The first 8 bytes of a SHA-256 over `parts`, each prefixed with its length, in hex.
fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hex::encode(&hash.finalize()[..8])
}

/// The resources of one type by name, and the version of the whole set. Cloning is cheap.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    version: String,
    items: Arc<BTreeMap<String, Arc<Resource>>>,
}

impl Resources {
    /// The set of `items` (the first of equal names wins); its version derives from the
    /// resources' versions, so equal content always carries the same version.
    pub(crate) fn new(items: Vec<Resource>) -> Self {
        let mut by_name = BTreeMap::new();
        for item in items {
            by_name
                .entry(item.name.clone())
                .or_insert_with(|| Arc::new(item));
        }
        Self::from_map(by_name)
    }

    fn from_map(items: BTreeMap<String, Arc<Resource>>) -> Self {
        let version = digest(
            items
                .values()
                .flat_map(|r| [r.name.as_bytes(), r.version.as_bytes()]),
        );
        Self {
            version,
            items: Arc::new(items),
        }
    }

    /// These resources with `upserted` put in (in place of those of the same name) and
    /// `removed` taken out; the others are shared, not re-encoded.
    fn changed(&self, upserted: Vec<Resource>, removed: &[String]) -> Self {
        if upserted.is_empty() && removed.iter().all(|name| !self.items.contains_key(name)) {
            return self.clone();
        }
        let mut items = (*self.items).clone();
        for name in removed {
            items.remove(name);
        }
        for item in upserted {
            items.insert(item.name.clone(), Arc::new(item));
        }
        Self::from_map(items)
    }

    /// The version of the whole set, as Envoy sees it in `version_info`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every resource, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.items.values().map(AsRef::as_ref)
    }

    /// The resource named `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Resource> {
        self.items.get(name).map(AsRef::as_ref)
    }

    /// How many resources there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The names of the resources.
    pub fn names(&self) -> BTreeSet<&str> {
        self.items.keys().map(String::as_str).collect()
    }
}

/// Envoy's whole dynamic configuration (CDS, EDS, RDS) at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    clusters: Resources,
    endpoints: Resources,
    routes: Resources,
    /// The pools that can serve, which the routes send traffic to.
    serving: Arc<BTreeSet<String>>,
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
        let empty = Self {
            clusters: Resources::new(Vec::new()),
            endpoints: Resources::new(Vec::new()),
            routes: Resources::new(Vec::new()),
            serving: Arc::default(),
        };
        empty.apply(by_name.into_values(), &[], routing)
    }

    /// This snapshot with the resources of `changed` pools encoded afresh, those of `removed`
    /// pools taken out, and the routes rebuilt for `routing`; every other resource is kept
    /// as it is, with its version. Each pool name appears once in `changed`.
    pub fn update(&self, changed: &[Pool], removed: &[String], routing: &RoutingTable) -> Self {
        self.apply(changed.iter(), removed, routing)
    }

    fn apply<'p>(
        &self,
        changed: impl IntoIterator<Item = &'p Pool>,
        removed: &[String],
        routing: &RoutingTable,
    ) -> Self {
        let mut serving = (*self.serving).clone();
        let mut gone_clusters: Vec<String> = Vec::new();
        for pool in removed {
            serving.remove(pool);
            gone_clusters.push(cluster_name(pool));
        }
        let mut gone_endpoints = gone_clusters.clone();
        let mut clusters = Vec::new();
        let mut endpoints = Vec::new();
        for pool in changed {
            let cluster = cluster(pool);
            if cluster.load_assignment.is_none() {
                let assignment = load_assignment(pool);
                endpoints.push(Resource::new(assignment.cluster_name.clone(), &assignment));
            } else {
                gone_endpoints.push(cluster.name.clone());
            }
            clusters.push(Resource::new(cluster.name.clone(), &cluster));
            if pool.can_serve() {
                serving.insert(pool.name.clone());
            } else {
                serving.remove(&pool.name);
            }
        }
        let routes = route_configuration(&serving, routing);
        Self {
            clusters: self.clusters.changed(clusters, &gone_clusters),
            endpoints: self.endpoints.changed(endpoints, &gone_endpoints),
            routes: Resources::new(vec![Resource::new(routes.name.clone(), &routes)]),
            serving: Arc::new(serving),
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
        assert_eq!(snapshot.clusters().len(), 1);
        let expected = Snapshot::build(&[healthy_pool("a", "10.0.0.1")], &RoutingTable::default());
        assert_eq!(snapshot, expected);
    }

    #[test]
    fn an_update_reencodes_only_the_pools_it_names() {
        let table = routing(Some("a"), &[("gold", &["b", "a"])]);
        let before = Snapshot::build(
            &[healthy_pool("a", "10.0.0.1"), healthy_pool("b", "10.0.1.1")],
            &table,
        );
        let mut heavier = healthy_pool("b", "10.0.1.1");
        heavier.endpoints[0].weight = 50;
        let after = before.update(std::slice::from_ref(&heavier), &[], &table);

        let version = |s: &Snapshot, name: &str| s.endpoints().get(name).map(|r| r.version.clone());
        assert_eq!(
            version(&before, "tollgate_pool_a"),
            version(&after, "tollgate_pool_a")
        );
        assert_ne!(
            version(&before, "tollgate_pool_b"),
            version(&after, "tollgate_pool_b")
        );
        assert_ne!(before.endpoints().version(), after.endpoints().version());
        assert_eq!(before.clusters(), after.clusters());
        assert_eq!(before.routes(), after.routes());
        // Updating pool by pool ends where building from scratch does.
        let rebuilt = Snapshot::build(&[healthy_pool("a", "10.0.0.1"), heavier], &table);
        assert_eq!(after, rebuilt);
    }

    #[test]
    fn an_update_removes_pools_and_follows_their_health_into_the_routes() {
        let table = routing(Some("a"), &[("gold", &["b", "a"])]);
        let before = Snapshot::build(
            &[healthy_pool("a", "10.0.0.1"), healthy_pool("b", "10.0.1.1")],
            &table,
        );
        let down = pool(
            "b",
            vec![endpoint("e1", "10.0.1.1", 1, HealthState::Unhealthy)],
        );
        let after = before.update(std::slice::from_ref(&down), &[], &table);
        assert_ne!(before.routes(), after.routes());
        assert_eq!(
            after,
            Snapshot::build(&[healthy_pool("a", "10.0.0.1"), down], &table)
        );

        let without_b = after.update(&[], &["b".to_string()], &table);
        assert_eq!(
            without_b,
            Snapshot::build(&[healthy_pool("a", "10.0.0.1")], &table)
        );
        // A pool that turns to DNS names keeps its cluster and loses its EDS resource.
        let dns = without_b.update(&[healthy_pool("a", "a.internal")], &[], &table);
        assert!(dns.endpoints().is_empty());
        assert_eq!(dns.clusters().names().len(), 1);
    }
}
