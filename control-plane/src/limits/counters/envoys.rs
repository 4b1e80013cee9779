//! Which Envoys synced recently, for one control plane on its own.

use std::collections::HashMap;

/// Node ids and when each last synced, in µs of the owner's clock.
#[derive(Debug, Default)]
pub struct RecentEnvoys {
    last_seen_us: HashMap<String, u64>,
}

/// How many Envoys share the `fast` limits, and whether the caller is one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub envoys: u32,
    /// False when `max_envoys` others were already counted: the caller's syncs are charged
    /// but it does not divide anyone's share.
    pub counted: bool,
}

impl RecentEnvoys {
    /// Forgets Envoys silent for `presence_us`, records `node_id` at `now_us` unless
    /// `max_envoys` others remain, and answers how many remain.
    pub fn seen(
        &mut self,
        node_id: &str,
        now_us: u64,
        presence_us: u64,
        max_envoys: u32,
    ) -> Presence {
        self.last_seen_us
            .retain(|_, seen| now_us.saturating_sub(*seen) < presence_us);
        let room = usize::try_from(max_envoys).unwrap_or(usize::MAX);
        let counted = self.last_seen_us.contains_key(node_id) || self.last_seen_us.len() < room;
        if counted {
            self.last_seen_us.insert(node_id.to_string(), now_us);
        }
        Presence {
            envoys: u32::try_from(self.last_seen_us.len()).unwrap_or(u32::MAX),
            counted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Presence, RecentEnvoys};

    fn envoys(presence: Presence) -> u32 {
        presence.envoys
    }

    #[test]
    fn envoys_are_counted_once_and_forgotten_when_silent() {
        let mut recent = RecentEnvoys::default();
        assert_eq!(envoys(recent.seen("a", 0, 60, 10)), 1);
        assert_eq!(envoys(recent.seen("b", 10, 60, 10)), 2);
        assert_eq!(envoys(recent.seen("a", 20, 60, 10)), 2);
        assert_eq!(envoys(recent.seen("a", 70, 60, 10)), 1);
    }

    #[test]
    fn envoys_beyond_the_cap_are_not_counted_until_others_fall_silent() {
        let mut recent = RecentEnvoys::default();
        assert!(recent.seen("a", 0, 60, 2).counted);
        assert!(recent.seen("b", 0, 60, 2).counted);
        let refused = recent.seen("c", 0, 60, 2);
        assert_eq!((refused.envoys, refused.counted), (2, false));
        assert!(recent.seen("a", 30, 60, 2).counted, "a counted Envoy stays");
        let later = recent.seen("c", 65, 60, 2);
        assert_eq!((later.envoys, later.counted), (2, true));
    }
}
