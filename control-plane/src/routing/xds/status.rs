//! What each Envoy runs and what it refused, for the admin API.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;

use super::protocol::AdsProtocol;
use super::stream::Rejection;
use crate::domain::Timestamp;

/// How many refusals are kept per Envoy.
const MAX_REJECTIONS_KEPT: usize = 16;

/// The configuration state of one Envoy (one node id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// ADS streams open now (more than one: several Envoys share the node id).
    pub open_streams: u32,
    /// The ADS variant of the newest stream: `state_of_the_world` or `delta`.
    pub protocol: &'static str,
    /// Type URL -> the version Envoy last accepted.
    pub acked_versions: BTreeMap<String, String>,
    /// Refused versions, oldest first (the most recent few).
    pub rejections: Vec<RecordedRejection>,
}

/// A version Envoy refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RecordedRejection {
    /// The type of the refused resources.
    pub type_url: String,
    /// The refused version; Envoy keeps running the one in `acked_versions`.
    pub version: String,
    /// Envoy's error message.
    pub message: String,
    /// When the refusal arrived.
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub at: Timestamp,
}

/// The status of every Envoy that has connected since start-up, shared between the ADS
/// streams (writers) and the admin API (reader). Cloning shares the same table.
#[derive(Debug, Clone, Default)]
pub struct NodeStatuses(Arc<RwLock<HashMap<String, NodeStatus>>>);

impl NodeStatuses {
    /// Every Envoy's status by node id.
    pub fn all(&self) -> BTreeMap<String, NodeStatus> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        table.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// One Envoy's status.
    pub fn get(&self, node_id: &str) -> Option<NodeStatus> {
        let table = self.0.read().unwrap_or_else(PoisonError::into_inner);
        table.get(node_id).cloned()
    }

    fn update<R>(&self, node_id: &str, change: impl FnOnce(&mut NodeStatus) -> R) -> R {
        let mut table = self.0.write().unwrap_or_else(PoisonError::into_inner);
        change(table.entry(node_id.to_string()).or_default())
    }

    /// Counts a stream for `node_id` until the returned guard is dropped.
    pub(crate) fn open(&self, node_id: &str, protocol: &'static str) -> OpenStream {
        self.update(node_id, |status| {
            status.open_streams += 1;
            status.protocol = protocol;
        });
        OpenStream {
            statuses: self.clone(),
            node_id: node_id.to_string(),
            last_rejection: None,
        }
    }
}

/// One stream's hold on its node's status.
pub(crate) struct OpenStream {
    statuses: NodeStatuses,
    node_id: String,
    /// The stream's newest rejection already recorded.
    last_rejection: Option<Rejection>,
}

impl OpenStream {
    pub(crate) fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Copies the stream's accepted versions, and returns refusals not seen before after
    /// recording them with the time `now`.
    pub(crate) fn record(&mut self, stream: &impl AdsProtocol, now: Timestamp) -> Vec<Rejection> {
        let all = stream.rejections();
        let new_from = self
            .last_rejection
            .as_ref()
            .and_then(|last| all.iter().rposition(|r| r == last))
            .map_or(0, |i| i + 1);
        let new: Vec<Rejection> = all[new_from..].to_vec();
        if let Some(last) = all.last() {
            self.last_rejection = Some(last.clone());
        }
        self.statuses.update(&self.node_id, |status| {
            for type_url in super::snapshot::TYPE_URLS {
                if let Some(version) = stream.acked_version(type_url) {
                    status
                        .acked_versions
                        .insert(type_url.to_string(), version.to_string());
                }
            }
            for rejection in &new {
                if status.rejections.len() == MAX_REJECTIONS_KEPT {
                    status.rejections.remove(0);
                }
                status.rejections.push(RecordedRejection {
                    type_url: rejection.type_url.clone(),
                    version: rejection.version.clone(),
                    message: rejection.message.clone(),
                    at: now,
                });
            }
        });
        new
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.statuses.update(&self.node_id, |status| {
            status.open_streams = status.open_streams.saturating_sub(1);
        });
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::google::rpc::Status;

    use super::*;
    use crate::routing::xds::snapshot::{Snapshot, CLUSTER_TYPE};
    use crate::routing::xds::stream::StreamState;

    fn refuse(stream: &mut StreamState, snapshot: &Snapshot, nonce: &str) {
        stream.on_request(
            DiscoveryRequest {
                type_url: CLUSTER_TYPE.into(),
                response_nonce: nonce.into(),
                error_detail: Some(Status {
                    code: 3,
                    message: format!("refused {nonce}"),
                    details: Vec::new(),
                }),
                ..DiscoveryRequest::default()
            },
            snapshot,
        );
    }

    #[test]
    fn each_refusal_is_recorded_once_and_streams_are_counted() {
        let statuses = NodeStatuses::default();
        let snapshot = Snapshot::default();
        let mut stream = StreamState::new();
        let mut open = statuses.open("envoy", "state_of_the_world");
        let first = stream.on_request(
            DiscoveryRequest {
                type_url: CLUSTER_TYPE.into(),
                ..DiscoveryRequest::default()
            },
            &snapshot,
        );
        refuse(&mut stream, &snapshot, &first[0].nonce);
        assert_eq!(open.record(&stream, crate::domain::now()).len(), 1);
        assert!(open.record(&stream, crate::domain::now()).is_empty());

        let status = statuses.get("envoy").expect("status");
        assert_eq!(status.open_streams, 1);
        assert_eq!(status.rejections.len(), 1);
        assert_eq!(
            status.rejections[0].message,
            format!("refused {}", first[0].nonce)
        );
        drop(open);
        assert_eq!(statuses.all()["envoy"].open_streams, 0);
    }
}
