//! Turns the stored backends, pools and groups into what Envoy is served over xDS, and
//! republishes whenever they change (or another replica changed them).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::accounts::group::Group;
use crate::changes::signal::ChangeSignal;
use crate::routing::backend::{Backend, HealthStatus};
use crate::routing::pool::{PoolName, DEFAULT_POOL};
use crate::routing::xds::{
    CertificateCheck, Endpoint, GroupRoute, HealthState, Pool, RoutingTable, TrustedCas,
    UpstreamTls, XdsPublisher,
};
use crate::store::{Store, StoreError};

/// Rebuilds at least this often, to pick up what other replicas wrote.
const REBUILD_INTERVAL: Duration = Duration::from_secs(2);

/// What the topology is built with besides the store.
#[derive(Debug, Clone)]
pub struct TopologyPolicy {
    /// A group whose pools are all down routes to the default pool instead of 503.
    pub fallback_to_default_pool: bool,
    /// The CA bundle on Envoy's host that `https` backends without a CA of their own are
    /// checked against.
    pub upstream_ca_file: String,
}

/// Publishes a fresh snapshot at start, on every announcement, and periodically.
pub async fn run(
    store: Arc<dyn Store>,
    publisher: Arc<XdsPublisher>,
    topology: ChangeSignal,
    policy: TopologyPolicy,
) {
    loop {
        let announced = topology.announced();
        match build(store.as_ref(), &policy).await {
            Ok((pools, routing)) => {
                publisher.publish(&pools, &routing);
            }
            Err(error) => tracing::warn!(%error, "cannot build the xDS snapshot"),
        }
        tokio::select! {
            () = announced => {}
            () = tokio::time::sleep(REBUILD_INTERVAL) => {}
        }
    }
}

/// The pools (enabled backends only) and the group routes, from the store.
pub async fn build(
    store: &dyn Store,
    policy: &TopologyPolicy,
) -> Result<(Vec<Pool>, RoutingTable), StoreError> {
    let backends = store.backends().await?;
    let groups = store.groups().await?;
    Ok(assemble(&backends, &groups, policy))
}

fn assemble(
    backends: &[Backend],
    groups: &[Group],
    policy: &TopologyPolicy,
) -> (Vec<Pool>, RoutingTable) {
    let mut by_pool: BTreeMap<&str, Vec<&Backend>> = BTreeMap::new();
    for backend in backends.iter().filter(|b| b.enabled) {
        by_pool
            .entry(backend.pool.as_str())
            .or_default()
            .push(backend);
    }
    let pools: Vec<Pool> = by_pool
        .iter()
        .map(|(name, members)| Pool {
            name: (*name).to_string(),
            endpoints: members.iter().map(|b| endpoint(b, policy)).collect(),
        })
        .collect();
    let available = |pool: &str| {
        by_pool.get(pool).is_some_and(|members| {
            members
                .iter()
                .any(|b| b.health.status != HealthStatus::Unhealthy)
        })
    };
    let default_pool = by_pool
        .contains_key(DEFAULT_POOL)
        .then(|| DEFAULT_POOL.to_string());
    let group_routes = groups
        .iter()
        .filter(|group| !group.pools.is_empty())
        .filter_map(|group| {
            let usable: Vec<String> = group
                .pools
                .iter()
                .filter(|pool| by_pool.contains_key(pool.as_str()))
                .map(PoolName::to_string)
                .collect();
            let any_available = usable.iter().any(|pool| available(pool));
            if !any_available && policy.fallback_to_default_pool && default_pool.is_some() {
                // Left out: the default route catches the group's requests.
                return None;
            }
            Some(GroupRoute {
                group_header_value: group.id.to_string(),
                pools: usable,
            })
        })
        .collect();
    (
        pools,
        RoutingTable {
            group_routes,
            default_pool,
        },
    )
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
