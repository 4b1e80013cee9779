//! One Envoy's ADS stream (state of the world) as a state machine without I/O: it takes
//! Envoy's requests and new snapshots, and says what to send.
//!
//! Clusters go whole in every response, as the protocol demands for CDS. Load assignments and
//! routes go by resource: a response carries those Envoy subscribed to whose version it has
//! not been sent on this stream, since Envoy keeps the ones a response leaves out. So a
//! change to one pool sends that pool's load assignment only.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::protocol::AdsProtocol;
use super::snapshot::{
    Resource, Resources, Snapshot, CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, TYPE_URLS,
};

/// How many rejections a stream remembers.
const MAX_REJECTIONS: usize = 16;

/// A response Envoy refused (a NACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The type of the refused response.
    pub type_url: String,
    /// The version Envoy refused; it keeps running the one it last accepted.
    pub version: String,
    /// The nonce of the refused response, unique on the stream.
    pub nonce: String,
    /// Envoy's explanation.
    pub message: String,
}

/// The protocol state of one ADS stream.
#[derive(Debug, Default)]
pub struct StreamState {
    types: BTreeMap<&'static str, TypeState>,
    responses_sent: u64,
    rejections: Vec<Rejection>,
}

#[derive(Debug, Default)]
struct TypeState {
    /// `None` until Envoy first asks for the type.
    subscription: Option<Subscription>,
    sent: Option<Sent>,
    /// Name -> version of each load assignment or route configuration sent on the stream.
    sent_versions: BTreeMap<String, String>,
    acked: Option<String>,
    rejected: Option<String>,
}

#[derive(Debug)]
struct Sent {
    resources: Resources,
    nonce: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subscription {
    /// Every resource of the type.
    Wildcard,
    /// Only these (possibly none: Envoy unsubscribed from all).
    Names(BTreeSet<String>),
}

impl Subscription {
    /// Reads a request's names with xDS's rules: `*` or, until Envoy has named resources,
    /// an empty list means all; afterwards an empty list means none.
    fn from_request(type_url: &str, names: &[String], previous: Option<&Self>) -> Self {
        // Envoy always wants every cluster.
        if type_url == CLUSTER_TYPE || names.iter().any(|n| n == "*") {
            return Self::Wildcard;
        }
        if names.is_empty() && !matches!(previous, Some(Self::Names(_))) {
            return Self::Wildcard;
        }
        Self::Names(names.iter().cloned().collect())
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::Names(names) if names.is_empty())
    }

    fn includes(&self, name: &str) -> bool {
        match self {
            Self::Wildcard => true,
            Self::Names(names) => names.contains(name),
        }
    }
}

impl StreamState {
    /// A stream on which Envoy has asked for nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Clusters sent last that `snapshot` no longer has.
    fn leaving_clusters(&self, snapshot: &Snapshot) -> Vec<Resource> {
        let Some(sent) = self.types.get(CLUSTER_TYPE).and_then(|t| t.sent.as_ref()) else {
            return Vec::new();
        };
        let staying = snapshot.clusters().names();
        sent.resources
            .iter()
            .filter(|r| !staying.contains(r.name.as_str()))
            .cloned()
            .collect()
    }

    /// Answers unless Envoy has this version already, refused it, or wants nothing.
    fn respond_if_new(
        &mut self,
        type_url: &'static str,
        resources: &Resources,
    ) -> Option<DiscoveryResponse> {
        let state = self.types.get(type_url)?;
        let version = Some(resources.version());
        if state.sent.as_ref().map(|s| s.resources.version()) == version
            || state.rejected.as_deref() == version
        {
            return None;
        }
        self.respond(type_url, resources, Answer::WhenNews)
    }

    /// What Envoy subscribed to of `resources` and lacks (every cluster, for CDS), if it
    /// subscribed to anything of the type.
    fn respond(
        &mut self,
        type_url: &'static str,
        resources: &Resources,
        answer: Answer,
    ) -> Option<DiscoveryResponse> {
        let state = self.types.get_mut(type_url)?;
        let subscription = state.subscription.as_ref()?;
        if subscription.is_empty() {
            return None;
        }
        let whole = type_url == CLUSTER_TYPE;
        let news: Vec<&Resource> = resources
            .iter()
            .filter(|r| subscription.includes(&r.name))
            .filter(|r| whole || state.sent_versions.get(&r.name) != Some(&r.version))
            .collect();
        if news.is_empty() && !whole && answer == Answer::WhenNews {
            return None;
        }
        if !whole {
            for resource in &news {
                state
                    .sent_versions
                    .insert(resource.name.clone(), resource.version.clone());
            }
        }
        let bodies = news.into_iter().map(|r| r.body.clone()).collect();
        self.responses_sent += 1;
        let nonce = self.responses_sent.to_string();
        state.sent = Some(Sent {
            resources: resources.clone(),
            nonce: nonce.clone(),
        });
        Some(DiscoveryResponse {
            version_info: resources.version().to_string(),
            resources: bodies,
            type_url: type_url.to_string(),
            nonce,
            ..DiscoveryResponse::default()
        })
    }
}

impl AdsProtocol for StreamState {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "state_of_the_world";

    fn node_id(request: &DiscoveryRequest) -> &str {
        request.node.as_ref().map_or("", |n| n.id.as_str())
    }

    /// Takes one request from Envoy and returns what to answer.
    ///
    /// The first request for a type is answered with the snapshot's resources. A request
    /// carrying the nonce of the last response for its type acknowledges it (ACK) or, with
    /// `error_detail`, refuses it (NACK): the refusal is recorded and that version is not
    /// sent again, Envoy keeps the last version it accepted. A request with an older nonce
    /// is stale and ignored, since Envoy will answer the newer response too. A changed
    /// subscription is answered, even with a refused version, so that new clusters can warm.
    /// Types other than CDS, EDS and RDS are ignored.
    fn on_request(
        &mut self,
        request: DiscoveryRequest,
        snapshot: &Snapshot,
    ) -> Vec<DiscoveryResponse> {
        let Some((type_url, resources)) = known_type(&request.type_url, snapshot) else {
            return Vec::new();
        };
        let state = self.types.entry(type_url).or_default();
        if request.response_nonce.is_empty() || state.sent.is_none() {
            // A first request; after a reconnection it names the version Envoy runs. A
            // nonce from another stream means nothing here.
            if !request.version_info.is_empty() {
                state.acked = Some(request.version_info.clone());
            }
        } else {
            let Some(sent) = state
                .sent
                .as_ref()
                .filter(|sent| sent.nonce == request.response_nonce)
            else {
                return Vec::new();
            };
            let version = sent.resources.version().to_string();
            match &request.error_detail {
                Some(error) => {
                    remember(
                        &mut self.rejections,
                        Rejection {
                            type_url: type_url.to_string(),
                            version: version.clone(),
                            nonce: request.response_nonce.clone(),
                            message: error.message.clone(),
                        },
                    );
                    state.rejected = Some(version);
                }
                None if request.version_info == version => state.acked = Some(version),
                None => {}
            }
        }
        let subscription = Subscription::from_request(
            type_url,
            &request.resource_names,
            state.subscription.as_ref(),
        );
        let changed = state.subscription.as_ref() != Some(&subscription);
        state
            .sent_versions
            .retain(|name, _| subscription.includes(name));
        state.subscription = Some(subscription);
        let response = if changed {
            self.respond(type_url, resources, Answer::Always)
        } else {
            self.respond_if_new(type_url, resources)
        };
        response.into_iter().collect()
    }

    /// Takes a new snapshot and returns the updates for what Envoy subscribed to, in
    /// make-before-break order: clusters, then endpoints, then routes, so routes only name
    /// clusters Envoy has. When clusters disappear, Envoy first gets the new clusters with
    /// the disappearing ones kept, and the clusters without them only after the routes that
    /// stopped naming them.
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Vec<DiscoveryResponse> {
        let leaving = self.leaving_clusters(snapshot);
        let mut responses = Vec::new();
        if leaving.is_empty() {
            responses.extend(self.respond_if_new(CLUSTER_TYPE, snapshot.clusters()));
        } else {
            let mut bridge: Vec<Resource> = snapshot.clusters().iter().cloned().collect();
            bridge.extend(leaving);
            responses.extend(self.respond_if_new(CLUSTER_TYPE, &Resources::new(bridge)));
        }
        responses.extend(self.respond_if_new(ENDPOINT_TYPE, snapshot.endpoints()));
        responses.extend(self.respond_if_new(ROUTE_TYPE, snapshot.routes()));
        responses.extend(self.respond_if_new(CLUSTER_TYPE, snapshot.clusters()));
        responses
    }

    /// The version Envoy last accepted for a type on this stream.
    fn acked_version(&self, type_url: &str) -> Option<&str> {
        self.types.get(type_url)?.acked.as_deref()
    }

    /// The responses Envoy refused on this stream, oldest first (the most recent few).
    fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }
}

/// Whether a response goes out when it would carry nothing new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Yes: Envoy asked (a changed subscription) and waits for an answer.
    Always,
    /// Only with news, or for CDS, where the whole set is the news.
    WhenNews,
}

/// Keeps `rejection`, forgetting the oldest beyond the most recent few.
pub(crate) fn remember(rejections: &mut Vec<Rejection>, rejection: Rejection) {
    if rejections.len() == MAX_REJECTIONS {
        rejections.remove(0);
    }
    rejections.push(rejection);
}

fn known_type<'s>(type_url: &str, snapshot: &'s Snapshot) -> Option<(&'static str, &'s Resources)> {
    let known = TYPE_URLS.into_iter().find(|known| *known == type_url)?;
    Some((known, snapshot.resources(known)?))
}

#[cfg(test)]
mod tests;
