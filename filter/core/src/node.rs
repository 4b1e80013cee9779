//! This Envoy's node id, which names it to the control plane.

use prost::Message;

use crate::host::Host;

/// `envoy.config.core.v3.Node`, as far as its id.
#[derive(Clone, PartialEq, Message)]
struct Node {
    #[prost(string, tag = "1")]
    id: String,
}

/// The node id from `node.id`, or, where Envoy gives no such property (a bootstrap service's
/// VM), from the `xds.node` message; empty when neither says.
pub fn node_id(host: &impl Host) -> String {
    host.property(&["node", "id"])
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| !id.is_empty())
        .or_else(|| {
            let node = host.property(&["xds", "node"])?;
            Node::decode(node.as_slice()).ok().map(|node| node.id)
        })
        .unwrap_or_default()
}
