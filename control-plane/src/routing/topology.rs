//! Turns the stored backends, pools and groups into what Envoy is served over xDS.
//!
//! Everything is read once, at start and again whenever the routing feed cannot be followed
//! (a store error, changes pruned before they were read). Otherwise the topology follows the
//! routing feed: it reads back only the backends and groups that changed, and republishes
//! only the pools they touched, so a change to one pool re-encodes one pool.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accounts::group::Group;
use crate::changes::position::FeedPosition;
use crate::changes::routing::{Rerouted, RoutingChange};
use crate::changes::signal::ChangeSignal;
use crate::domain::at_most_every::AtMostEvery;
use crate::domain::ids::BackendId;
use crate::routing::backend::{Backend, HealthStatus};
use crate::routing::pool::{PoolName, DEFAULT_POOL};
use crate::routing::xds::{
    CertificateCheck, Endpoint, GroupRoute, HealthState, Pool, RoutingTable, TrustedCas,
    UpstreamTls, XdsPublisher,
};
use crate::store::{Store, StoreError};

/// How often the routing feed is read for what other replicas wrote; this replica's own
/// writes wake the topology at once.
const FEED_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The most routing changes read at once.
const FEED_PAGE: u64 = 1000;
/// How many positions before the newest a full read checks for writes still to commit.
const RECENT_POSITIONS: u64 = FEED_PAGE;
/// Routing changes are kept this long, for replicas that fell behind.
const FEED_RETENTION: Duration = Duration::from_secs(3600);
/// Old routing changes are pruned at most this often.
const PRUNE_INTERVAL_SECS: i64 = 600;

/// What the topology is built with besides the store.
#[derive(Debug, Clone)]
pub struct TopologyPolicy {
    /// A group whose pools are all down routes to the default pool instead of 503.
    pub fallback_to_default_pool: bool,
    /// The CA bundle on Envoy's host that `https` backends without a CA of their own are
    /// checked against.
    pub upstream_ca_file: String,
}

/// Publishes the routing at start, then what changed of it, on every announcement and at
/// every poll of the routing feed.
pub async fn run(
    store: Arc<dyn Store>,
    publisher: Arc<XdsPublisher>,
    topology: ChangeSignal,
    policy: TopologyPolicy,
) {
    let pruning = AtMostEvery::new(PRUNE_INTERVAL_SECS);
    let mut followed: Option<Topology> = None;
    loop {
        let announced = topology.announced();
        let step = match followed.as_mut() {
            Some(current) => current.follow(store.as_ref(), &publisher).await,
            None => match Topology::load(store.as_ref(), &policy, &publisher).await {
                Ok(loaded) => {
                    followed = Some(loaded);
                    Ok(())
                }
                Err(error) => Err(error.into()),
            },
        };
        if let Err(error) = step {
            tracing::warn!(%error, "cannot follow the routing; reading it all again");
            followed = None;
        }
        if pruning.take_turn(crate::domain::now()) {
            prune(store.as_ref()).await;
        }
        tokio::select! {
            () = announced => {}
            () = tokio::time::sleep(FEED_POLL_INTERVAL) => {}
        }
    }
}

async fn prune(store: &dyn Store) {
    let Ok(retention) = chrono::Duration::from_std(FEED_RETENTION) else {
        return;
    };
    if let Err(error) = store
        .prune_routing_changes(crate::domain::now() - retention)
        .await
    {
        tracing::warn!(%error, "cannot prune the routing feed");
    }
}

/// Why the routing feed cannot be followed from where the topology stands.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the routing feed no longer holds the changes after position {0}")]
    Lost(u64),
}

/// The routing as last read, and how far the routing feed has been followed.
struct Topology {
    policy: TopologyPolicy,
    backends: HashMap<BackendId, Backend>,
    /// Pool name -> its enabled backends; a pool without any is absent.
    pools: BTreeMap<String, HashSet<BackendId>>,
    groups: Vec<Group>,
    position: FeedPosition,
}

impl Topology {
    /// Reads the whole routing and publishes it.
    async fn load(
        store: &dyn Store,
        policy: &TopologyPolicy,
        publisher: &XdsPublisher,
    ) -> Result<Self, StoreError> {
        // The feed first: whatever commits after this read is found in the feed later.
        let latest = store.latest_routing_change().await?;
        let mut position = FeedPosition::at(latest.saturating_sub(RECENT_POSITIONS));
        for change in store
            .routing_changes_since(position.read_after(), FEED_PAGE)
            .await?
        {
            position.take(change.cursor);
        }
        position.settle(Instant::now());
        let mut topology = Self {
            policy: policy.clone(),
            backends: HashMap::new(),
            pools: BTreeMap::new(),
            groups: store.groups().await?,
            position,
        };
        for backend in store.backends().await? {
            topology.put(backend.id.clone(), Some(backend));
        }
        let pools: Vec<Pool> = topology
            .pools
            .keys()
            .filter_map(|name| topology.pool(name))
            .collect();
        publisher.publish(&pools, &topology.routing_table());
        Ok(topology)
    }

    /// Applies the changes in the routing feed since the last call, and publishes the pools
    /// they touched.
    async fn follow(
        &mut self,
        store: &dyn Store,
        publisher: &XdsPublisher,
    ) -> Result<(), FollowError> {
        let changes = self.read_feed(store).await?;
        let mut backends = HashSet::new();
        let mut groups_changed = false;
        for change in changes {
            match change.rerouted {
                Rerouted::Backend(id) => {
                    backends.insert(id);
                }
                Rerouted::Group(_) => groups_changed = true,
                // Health-check settings are not part of Envoy's configuration.
                Rerouted::Pool(_) => {}
            }
        }
        if groups_changed {
            self.groups = store.groups().await?;
        }
        let mut touched = BTreeSet::new();
        for id in backends {
            let current = match store.backend(&id).await {
                Ok(backend) => Some(backend),
                Err(StoreError::NotFound) => None,
                Err(error) => return Err(error.into()),
            };
            touched.extend(self.put(id, current));
        }
        if touched.is_empty() && !groups_changed {
            return Ok(());
        }
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for name in touched {
            match self.pool(&name) {
                Some(pool) => changed.push(pool),
                None => removed.push(name),
            }
        }
        publisher.publish_changes(&changed, &removed, &self.routing_table());
        Ok(())
    }

    /// The changes not applied yet, oldest first.
    async fn read_feed(&mut self, store: &dyn Store) -> Result<Vec<RoutingChange>, FollowError> {
        let settled = self.position.read_after();
        let mut after = settled;
        let mut fresh = Vec::new();
        loop {
            let page = store.routing_changes_since(after, FEED_PAGE).await?;
            if after == settled {
                self.check_still_held(store, page.first()).await?;
            }
            let full = page.len() as u64 == FEED_PAGE;
            after = page.last().map_or(after, |change| change.cursor);
            fresh.extend(
                page.into_iter()
                    .filter(|change| self.position.take(change.cursor)),
            );
            if !full {
                break;
            }
        }
        self.position.settle(Instant::now());
        Ok(fresh)
    }

    /// Fails when the feed no longer holds what follows the settled position: it was pruned
    /// meanwhile, or the database was replaced by one with a shorter feed.
    async fn check_still_held(
        &self,
        store: &dyn Store,
        first: Option<&RoutingChange>,
    ) -> Result<(), FollowError> {
        let settled = self.position.read_after();
        let lost = match first {
            Some(change) if change.cursor > settled + 1 => store
                .oldest_routing_change()
                .await?
                .is_some_and(|oldest| oldest > settled + 1),
            Some(_) => false,
            None => store.latest_routing_change().await? < self.position.newest(),
        };
        if lost {
            return Err(FollowError::Lost(settled));
        }
        Ok(())
    }

    /// Replaces what is known of backend `id` (`None`: it is gone); returns the pools whose
    /// resources may have changed.
    fn put(&mut self, id: BackendId, current: Option<Backend>) -> Vec<String> {
        let mut touched = Vec::new();
        if let Some(previous) = self.backends.remove(&id) {
            let pool = previous.pool.to_string();
            if let Some(members) = self.pools.get_mut(&pool) {
                members.remove(&id);
                if members.is_empty() {
                    self.pools.remove(&pool);
                }
            }
            touched.push(pool);
        }
        if let Some(backend) = current {
            let pool = backend.pool.to_string();
            if backend.enabled {
                self.pools
                    .entry(pool.clone())
                    .or_default()
                    .insert(id.clone());
            }
            self.backends.insert(id, backend);
            touched.push(pool);
        }
        touched
    }

    /// The pool named `name` with its enabled backends; `None` when it has none.
    fn pool(&self, name: &str) -> Option<Pool> {
        let members = self.pools.get(name)?;
        Some(Pool {
            name: name.to_string(),
            endpoints: members
                .iter()
                .filter_map(|id| self.backends.get(id))
                .map(|backend| endpoint(backend, &self.policy))
                .collect(),
        })
    }

    /// Whether pool `name` has an enabled backend not known to be unhealthy.
    fn available(&self, name: &str) -> bool {
        self.pools.get(name).is_some_and(|members| {
            members.iter().any(|id| {
                self.backends
                    .get(id)
                    .is_some_and(|b| b.health.status != HealthStatus::Unhealthy)
            })
        })
    }

    /// The group routes over the pools that exist.
    fn routing_table(&self) -> RoutingTable {
        let default_pool = self
            .pools
            .contains_key(DEFAULT_POOL)
            .then(|| DEFAULT_POOL.to_string());
        let group_routes = self
            .groups
            .iter()
            .filter(|group| !group.pools.is_empty())
            .filter_map(|group| {
                let usable: Vec<String> = group
                    .pools
                    .iter()
                    .filter(|pool| self.pools.contains_key(pool.as_str()))
                    .map(PoolName::to_string)
                    .collect();
                let any_available = usable.iter().any(|pool| self.available(pool));
                if !any_available && self.policy.fallback_to_default_pool && default_pool.is_some()
                {
                    // Left out: the default route catches the group's requests.
                    return None;
                }
                Some(GroupRoute {
                    group_header_value: group.id.to_string(),
                    pools: usable,
                })
            })
            .collect();
        RoutingTable {
            group_routes,
            default_pool,
        }
    }
}

fn endpoint(backend: &Backend, policy: &TopologyPolicy) -> Endpoint {
    Endpoint {
        id: backend.id.to_string(),
        host: backend.url.host.clone(),
        port: backend.url.port,
        weight: backend.weight.get(),
        healthy: match backend.health.status {
            HealthStatus::Healthy => HealthState::Healthy,
            HealthStatus::Unhealthy => HealthState::Unhealthy,
            HealthStatus::Unknown => HealthState::Unknown,
        },
        tls: backend.url.tls.then(|| upstream_tls(backend, policy)),
    }
}

/// The server name is the backend's `tls_sni`, else its URL's host; unless the backend opted
/// out, its certificate must carry that name and chain to the backend's CA or the bundle.
fn upstream_tls(backend: &Backend, policy: &TopologyPolicy) -> UpstreamTls {
    let server_name = backend
        .tls_sni
        .clone()
        .unwrap_or_else(|| backend.url.host.clone());
    let check = if backend.tls_insecure {
        CertificateCheck::Unverified
    } else {
        let trusted = match &backend.tls_ca {
            Some(ca) => TrustedCas::Pem(ca.as_str().to_string()),
            None => TrustedCas::File(policy.upstream_ca_file.clone()),
        };
        CertificateCheck::Verified {
            trusted,
            server_name: server_name.clone(),
        }
    };
    UpstreamTls {
        sni: server_name,
        check,
    }
}
