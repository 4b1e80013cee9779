//! A bounded per-VM cache in front of Envoy's shared data, which takes one Envoy-wide lock per
//! read.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Something that stops being fresh at a point in time.
pub trait Expiring {
    /// Unix milliseconds after which the value is stale.
    fn expires_at_ms(&self) -> i64;
}

/// Values by key, held by one wasm VM and never more than its capacity. Stale values are kept
/// for `keep_stale_ms` past their expiry, to serve while the control plane is unreachable.
#[derive(Debug)]
pub struct LocalCache<K, V> {
    entries: HashMap<K, V>,
    capacity: usize,
    keep_stale_ms: i64,
}

impl<K: Hash + Eq, V: Expiring> LocalCache<K, V> {
    /// An empty cache that never holds more than `capacity` values.
    pub fn new(capacity: usize, keep_stale_ms: i64) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            keep_stale_ms,
        }
    }

    /// The value for `key`, fresh or stale; the caller judges.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key)
    }

    /// Remembers `value`. When the cache is full, values past their stale period go first; if it
    /// is still full (a flood of distinct keys), everything goes, since shared data holds it all.
    pub fn insert(&mut self, key: K, value: V, now_ms: i64) {
        if self.capacity == 0 {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let keep_stale_ms = self.keep_stale_ms;
            self.entries
                .retain(|_, kept| now_ms < kept.expires_at_ms().saturating_add(keep_stale_ms));
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(key, value);
    }

    /// Forgets everything, e.g. after the control plane's history was reset.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Expires(i64);

    impl Expiring for Expires {
        fn expires_at_ms(&self) -> i64 {
            self.0
        }
    }

    #[test]
    fn returns_what_was_inserted_fresh_or_not() {
        let mut cache = LocalCache::new(4, 0);
        cache.insert(1, Expires(100), 0);
        assert_eq!(cache.get(&1), Some(&Expires(100)));
        assert_eq!(cache.get(&2), None);
    }

    #[test]
    fn insert_replaces_the_value_of_the_same_key() {
        let mut cache = LocalCache::new(1, 0);
        cache.insert(1, Expires(100), 0);
        cache.insert(1, Expires(200), 0);
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.get(&1), Some(&Expires(200)));
    }

    #[test]
    fn a_full_cache_drops_values_past_their_stale_period_first() {
        let mut cache = LocalCache::new(3, 100);
        cache.insert(1, Expires(10), 0);
        cache.insert(2, Expires(450), 0);
        cache.insert(3, Expires(1_000), 0);
        cache.insert(4, Expires(1_000), 500);
        assert_eq!(cache.get(&1), None, "10 + 100 < 500: gone");
        assert!(
            cache.get(&2).is_some(),
            "450 + 100 > 500: kept for the stale period"
        );
        assert!(cache.get(&4).is_some());
    }

    #[test]
    fn never_grows_past_its_capacity() {
        let mut cache = LocalCache::new(3, 0);
        for n in 0..100 {
            cache.insert(n, Expires(1_000), 0);
            assert!(cache.entries.len() <= 3);
        }
        assert!(cache.get(&99).is_some());
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut cache = LocalCache::new(0, 0);
        cache.insert(1, Expires(1_000), 0);
        assert!(cache.entries.is_empty());
    }
}
