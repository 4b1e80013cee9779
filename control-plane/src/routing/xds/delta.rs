//! One Envoy's incremental (delta) ADS stream as a state machine without I/O: it takes
//! Envoy's requests and new snapshots, and says what to send.
//!
//! The stream remembers which version of each resource Envoy has (what Envoy reported when it
//! connected, then what was sent), and sends only resources whose version differs, plus the
//! names of those that disappeared in `removed_resources`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};

use super::protocol::AdsProtocol;
use super::snapshot::{Snapshot, CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, TYPE_URLS};
use super::stream::{remember, Rejection};

/// How many unanswered responses a type remembers; Envoy answers each one in order.
const MAX_PENDING: usize = 16;
/// The name that stands for every resource of a type.
const WILDCARD: &str = "*";

/// The protocol state of one delta ADS stream.
#[derive(Debug, Default)]
pub struct DeltaStreamState {
    types: BTreeMap<&'static str, TypeState>,
    responses_sent: u64,
    rejections: Vec<Rejection>,
}

#[derive(Debug, Default)]
struct TypeState {
    /// Every resource of the type, beside `names`.
    wildcard: bool,
    names: BTreeSet<String>,
    /// Name -> the version Envoy has.
    known: BTreeMap<String, String>,
    /// Responses not yet answered: nonce and the snapshot's version of the type.
    pending: VecDeque<(String, String)>,
    acked: Option<String>,
}

impl TypeState {
    fn includes(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// Whether a response may tell Envoy to drop resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removals {
    Send,
    /// Not yet: clusters leave only after the routes stopped naming them.
    Hold,
}

impl DeltaStreamState {
    /// A stream on which Envoy has asked for nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscribed resources whose version Envoy lacks, and the names Envoy has (or newly
    /// `asked_for`) that do not exist; `None` when there is nothing to say and Envoy is not
    /// waiting for a `first` answer.
    fn respond(
        &mut self,
        type_url: &'static str,
        snapshot: &Snapshot,
        removals: Removals,
        asked_for: &[String],
        first: bool,
    ) -> Option<DeltaDiscoveryResponse> {
        let state = self.types.get_mut(type_url)?;
        let resources = snapshot.resources(type_url)?;
        let changed: Vec<DeltaResource> = resources
            .iter()
            .filter(|r| state.includes(&r.name))
            .filter(|r| state.known.get(&r.name) != Some(&r.version))
            .map(|r| DeltaResource {
                name: r.name.clone(),
                version: r.version.clone(),
                resource: Some(r.body.clone()),
                ..DeltaResource::default()
            })
            .collect();
        let mut removed: Vec<String> = Vec::new();
        if removals == Removals::Send {
            let missing = |name: &&String| resources.get(name).is_none();
            removed.extend(state.known.keys().filter(missing).cloned());
            removed.extend(asked_for.iter().filter(missing).cloned());
            removed.sort();
            removed.dedup();
        }
        if changed.is_empty() && removed.is_empty() && !first {
            return None;
        }
        for resource in &changed {
            state
                .known
                .insert(resource.name.clone(), resource.version.clone());
        }
        for name in &removed {
            state.known.remove(name);
        }
        self.responses_sent += 1;
        let nonce = self.responses_sent.to_string();
        if state.pending.len() == MAX_PENDING {
            state.pending.pop_front();
        }
        state
            .pending
            .push_back((nonce.clone(), resources.version().to_string()));
        Some(DeltaDiscoveryResponse {
            system_version_info: resources.version().to_string(),
            resources: changed,
            type_url: type_url.to_string(),
            removed_resources: removed,
            nonce,
            ..DeltaDiscoveryResponse::default()
        })
    }
}

impl AdsProtocol for DeltaStreamState {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";

    fn node_id(request: &DeltaDiscoveryRequest) -> &str {
        request.node.as_ref().map_or("", |n| n.id.as_str())
    }

    /// Takes one request from Envoy and returns what to answer.
    ///
    /// The first request for a type subscribes (with no names: to everything) and tells which
    /// versions Envoy already has; it is always answered. A request carrying the nonce of an
    /// unanswered response acknowledges it or, with `error_detail`, refuses it: the refusal is
    /// recorded and those versions are not sent again. Newly subscribed resources are sent,
    /// those that do not exist are named in `removed_resources`. Types other than CDS, EDS
    /// and RDS are ignored.
    fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        snapshot: &Snapshot,
    ) -> Vec<DeltaDiscoveryResponse> {
        let Some(type_url) = TYPE_URLS.into_iter().find(|t| *t == request.type_url) else {
            return Vec::new();
        };
        let first = !self.types.contains_key(type_url);
        let state = self.types.entry(type_url).or_default();
        if first {
            state.known = request.initial_resource_versions.into_iter().collect();
            state.wildcard = request.resource_names_subscribe.is_empty();
        }
        if let Some(at) = state
            .pending
            .iter()
            .position(|(nonce, _)| *nonce == request.response_nonce)
        {
            let (nonce, version) = state.pending.remove(at).unwrap_or_default();
            match request.error_detail {
                Some(error) => remember(
                    &mut self.rejections,
                    Rejection {
                        type_url: type_url.to_string(),
                        version,
                        nonce,
                        message: error.message,
                    },
                ),
                None => state.acked = Some(version),
            }
        }
        let mut asked_for = Vec::new();
        for name in request.resource_names_subscribe {
            if name == WILDCARD {
                state.wildcard = true;
            } else if state.names.insert(name.clone()) {
                asked_for.push(name);
            }
        }
        for name in request.resource_names_unsubscribe {
            if name == WILDCARD {
                state.wildcard = false;
            } else {
                state.names.remove(&name);
            }
        }
        state
            .known
            .retain(|name, _| state.wildcard || state.names.contains(name));
        self.respond(type_url, snapshot, Removals::Send, &asked_for, first)
            .into_iter()
            .collect()
    }

    /// Takes a new snapshot and returns what changed of what Envoy subscribed to, in
    /// make-before-break order: new and changed clusters, then endpoints, then routes, and
    /// only then the clusters that left, once the routes no longer name them.
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        [
            (CLUSTER_TYPE, Removals::Hold),
            (ENDPOINT_TYPE, Removals::Send),
            (ROUTE_TYPE, Removals::Send),
            (CLUSTER_TYPE, Removals::Send),
        ]
        .into_iter()
        .filter_map(|(type_url, removals)| self.respond(type_url, snapshot, removals, &[], false))
        .collect()
    }

    /// The snapshot version of the type Envoy last acknowledged on this stream.
    fn acked_version(&self, type_url: &str) -> Option<&str> {
        self.types.get(type_url)?.acked.as_deref()
    }

    /// The responses Envoy refused on this stream, oldest first (the most recent few).
    fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }
}

#[cfg(test)]
mod tests;
