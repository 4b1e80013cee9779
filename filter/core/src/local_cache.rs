//! A bounded per-VM cache in front of Envoy's shared data, which takes one Envoy-wide lock per
//! read.

use std::collections::HashMap;

use crate::cache::CacheEntry;
use crate::digest::KeyDigest;

/// Cache entries by key digest, held by one wasm VM and never larger than its capacity.
#[derive(Debug)]
pub struct LocalCache {
    entries: HashMap<KeyDigest, CacheEntry>,
    capacity: usize,
}

impl LocalCache {
    /// An empty cache that never holds more than `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// The entry for `digest` if it is still fresh at `now_ms`.
    pub fn get_fresh(&self, digest: &KeyDigest, now_ms: i64) -> Option<&CacheEntry> {
        self.entries
            .get(digest)
            .filter(|entry| entry.is_fresh(now_ms))
    }

    /// Remembers `entry`. When the cache is full, stale entries go first; if it is still full
    /// (a flood of distinct keys), everything goes, since the shared data still holds it all.
    pub fn insert(&mut self, digest: KeyDigest, entry: CacheEntry, now_ms: i64) {
        if !self.entries.contains_key(&digest) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, kept| kept.is_fresh(now_ms));
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        if self.capacity > 0 {
            self.entries.insert(digest, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u32) -> KeyDigest {
        KeyDigest::of_key(&n.to_be_bytes())
    }

    fn expiring_at(expires_at_ms: i64) -> CacheEntry {
        CacheEntry {
            principal: None,
            expires_at_ms,
        }
    }

    #[test]
    fn returns_a_fresh_entry() {
        let mut cache = LocalCache::with_capacity(4);
        cache.insert(digest(1), expiring_at(100), 0);

        assert_eq!(cache.get_fresh(&digest(1), 99), Some(&expiring_at(100)));
        assert_eq!(cache.get_fresh(&digest(2), 99), None);
    }

    #[test]
    fn expired_entry_is_a_miss() {
        let mut cache = LocalCache::with_capacity(4);
        cache.insert(digest(1), expiring_at(100), 0);

        assert_eq!(cache.get_fresh(&digest(1), 100), None);
    }

    #[test]
    fn insert_replaces_the_entry_of_the_same_key() {
        let mut cache = LocalCache::with_capacity(1);
        cache.insert(digest(1), expiring_at(100), 0);
        cache.insert(digest(1), expiring_at(200), 0);

        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.get_fresh(&digest(1), 150), Some(&expiring_at(200)));
    }

    #[test]
    fn a_full_cache_drops_stale_entries_first() {
        let mut cache = LocalCache::with_capacity(2);
        cache.insert(digest(1), expiring_at(10), 0);
        cache.insert(digest(2), expiring_at(1_000), 0);

        cache.insert(digest(3), expiring_at(1_000), 500);

        assert_eq!(cache.entries.len(), 2);
        assert!(cache.get_fresh(&digest(2), 500).is_some());
        assert!(cache.get_fresh(&digest(3), 500).is_some());
    }

    #[test]
    fn never_grows_past_its_capacity() {
        let mut cache = LocalCache::with_capacity(3);
        for n in 0..100 {
            cache.insert(digest(n), expiring_at(1_000), 0);
            assert!(cache.entries.len() <= 3);
        }

        assert!(cache.get_fresh(&digest(99), 0).is_some());
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut cache = LocalCache::with_capacity(0);
        cache.insert(digest(1), expiring_at(1_000), 0);

        assert!(cache.entries.is_empty());
    }
}
