//! Which Envoys synced recently, for one control plane on its own.

use std::collections::HashMap;

/// Node ids and when each last synced, in µs of the owner's clock.
#[derive(Debug, Default)]
pub struct RecentEnvoys {
    last_seen_us: HashMap<String, u64>,
}

impl RecentEnvoys {
    /// Records `node_id` at `now_us`, forgets Envoys silent for `presence_us`, and
    /// answers how many remain.
    pub fn seen(&mut self, node_id: &str, now_us: u64, presence_us: u64) -> u32 {
        self.last_seen_us
            .retain(|_, seen| now_us.saturating_sub(*seen) < presence_us);
        self.last_seen_us.insert(node_id.to_string(), now_us);
        u32::try_from(self.last_seen_us.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::RecentEnvoys;

    #[test]
    fn envoys_are_counted_once_and_forgotten_when_silent() {
        let mut envoys = RecentEnvoys::default();
        assert_eq!(envoys.seen("a", 0, 60), 1);
        assert_eq!(envoys.seen("b", 10, 60), 2);
        assert_eq!(envoys.seen("a", 20, 60), 2);
        assert_eq!(envoys.seen("a", 70, 60), 1);
    }
}
