//! Which sync batches were charged recently, for one control plane on its own.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// The most batch ids remembered at once; beyond it the oldest are forgotten first. With
/// ids of at most 128 bytes that is at most about 20 MB.
pub const MAX_REMEMBERED_BATCHES: usize = 100_000;

/// Batch ids charged within the last `memory_us`, in µs of the owner's clock.
#[derive(Debug)]
pub struct RecentBatches {
    memory_us: u64,
    /// Oldest first, with when each may be forgotten.
    by_age: VecDeque<(u64, Arc<str>)>,
    ids: HashSet<Arc<str>>,
}

impl RecentBatches {
    pub fn new(memory_us: u64) -> Self {
        Self {
            memory_us,
            by_age: VecDeque::new(),
            ids: HashSet::new(),
        }
    }

    /// Records `batch_id` at `now_us`; false when it was already recorded.
    pub fn first_time(&mut self, batch_id: &str, now_us: u64) -> bool {
        while self
            .by_age
            .front()
            .is_some_and(|(forget_at_us, _)| *forget_at_us <= now_us)
        {
            self.forget_oldest();
        }
        if self.ids.contains(batch_id) {
            return false;
        }
        if self.by_age.len() == MAX_REMEMBERED_BATCHES {
            self.forget_oldest();
        }
        let id: Arc<str> = Arc::from(batch_id);
        self.ids.insert(id.clone());
        self.by_age
            .push_back((now_us.saturating_add(self.memory_us), id));
        true
    }

    fn forget_oldest(&mut self) {
        if let Some((_, oldest)) = self.by_age.pop_front() {
            self.ids.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE_US: u64 = 60_000_000;

    #[test]
    fn an_id_is_new_once_within_the_memory() {
        let mut batches = RecentBatches::new(MINUTE_US);
        assert!(batches.first_time("vm-1", 0));
        assert!(!batches.first_time("vm-1", MINUTE_US - 1));
        assert!(batches.first_time("vm-2", MINUTE_US - 1));
        assert!(batches.first_time("vm-1", MINUTE_US), "forgotten");
    }

    #[test]
    fn the_oldest_ids_make_room_beyond_the_cap() {
        let mut batches = RecentBatches::new(MINUTE_US);
        for id in 0..=MAX_REMEMBERED_BATCHES {
            assert!(batches.first_time(&id.to_string(), 0));
        }
        assert_eq!(batches.ids.len(), MAX_REMEMBERED_BATCHES);
        assert!(!batches.first_time(&MAX_REMEMBERED_BATCHES.to_string(), 0));
        assert!(batches.first_time("0", 0), "the oldest was forgotten");
    }
}
