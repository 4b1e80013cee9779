//! The change-feed watches held open now, by the Envoy (node id) that sent each. An Envoy
//! follows the feed with one watch, whichever of its VMs is the syncer, so the two gauges
//! `tollgate_change_watches` and `tollgate_change_watching_envoys` are equal unless some
//! Envoy watches twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Open watches per node id, shared by every call.
#[derive(Clone, Default)]
pub struct OpenWatches {
    by_node: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open watch; dropping it (the call answered, or the Envoy gave up on it) closes it.
pub struct OpenWatch {
    watches: OpenWatches,
    node_id: String,
}

impl OpenWatches {
    /// Counts a watch from `node_id` until the returned guard is dropped.
    pub fn open(&self, node_id: &str) -> OpenWatch {
        self.change(|by_node| *by_node.entry(node_id.to_owned()).or_default() += 1);
        OpenWatch {
            watches: self.clone(),
            node_id: node_id.to_owned(),
        }
    }

    /// Watches open now, and the Envoys they come from.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        totals(&self.by_node.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn change(&self, change: impl FnOnce(&mut HashMap<String, usize>)) {
        let mut by_node = self.by_node.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut by_node);
        by_node.retain(|_, open| *open > 0);
        let (watches, envoys) = totals(&by_node);
        metrics::gauge!("tollgate_change_watches").set(watches as f64);
        metrics::gauge!("tollgate_change_watching_envoys").set(envoys as f64);
    }
}

fn totals(by_node: &HashMap<String, usize>) -> (usize, usize) {
    (by_node.values().sum(), by_node.len())
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.watches.change(|by_node| {
            if let Some(open) = by_node.get_mut(&self.node_id) {
                *open = open.saturating_sub(1);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_counted_per_envoy_until_they_close() {
        let watches = OpenWatches::default();
        let first = watches.open("envoy-1");
        let second = watches.open("envoy-2");
        let twice = watches.open("envoy-1");
        assert_eq!(watches.counts(), (3, 2));
        drop(twice);
        assert_eq!(watches.counts(), (2, 2));
        drop(first);
        drop(second);
        assert_eq!(watches.counts(), (0, 0));
    }
}
