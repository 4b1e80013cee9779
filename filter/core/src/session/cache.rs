//! Tokens this VM has already verified, so that each token's signature is checked once.
//!
//! Only successes are kept: a refused token is never remembered, since an attacker can vary
//! bad tokens endlessly and would only fill the cache.

use std::collections::HashMap;
use std::fmt;

use super::claims::SessionClaims;
use crate::local_digest::LocalDigest;

struct Entry {
    claims: SessionClaims,
    /// Insertion order, to drop the oldest entries when the cache overflows.
    sequence: u64,
}

/// Verified claims by the token's [`LocalDigest`] (never the token itself), each until its
/// token's `exp`, held by one wasm VM and never more than its capacity.
///
/// The claims were checked against one key set and one set of expectations: call
/// [`VerifiedTokens::clear`] when either changes, or a token signed by a withdrawn key would
/// stay accepted until it expires.
pub struct VerifiedTokens {
    entries: HashMap<LocalDigest, Entry>,
    capacity: usize,
    next_sequence: u64,
}

impl VerifiedTokens {
    /// An empty cache that never holds more than `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            next_sequence: 0,
        }
    }

    /// The claims of `token` if it was verified and has not expired at `now_secs`.
    pub fn get(&self, token: &LocalDigest, now_secs: i64) -> Option<&SessionClaims> {
        self.entries
            .get(token)
            .map(|entry| &entry.claims)
            .filter(|claims| now_secs < claims.expires_at)
    }

    /// Remembers the claims of a token that just verified. When the cache is full, expired
    /// entries go first and then, if it is still full, the older half: that costs O(n) once
    /// per n/2 insertions, and nothing on the way of a cache hit.
    pub fn insert(&mut self, token: LocalDigest, claims: SessionClaims, now_secs: i64) {
        if self.capacity == 0 || claims.expires_at <= now_secs {
            return;
        }
        if !self.entries.contains_key(&token) && self.entries.len() >= self.capacity {
            self.entries
                .retain(|_, entry| now_secs < entry.claims.expires_at);
            if self.entries.len() >= self.capacity {
                self.drop_older_half();
            }
        }
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.entries.insert(token, Entry { claims, sequence });
    }

    /// Forgets every token, for a new key set or new expectations.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// How many tokens are held, expired ones included until they are dropped.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the newest `len / 2` entries (rounded down), so at least one slot is free.
    fn drop_older_half(&mut self) {
        let mut sequences: Vec<u64> = self.entries.values().map(|entry| entry.sequence).collect();
        if sequences.is_empty() {
            return;
        }
        let middle = sequences.len().saturating_sub(1) / 2;
        let (_, &mut newest_dropped, _) = sequences.select_nth_unstable(middle);
        self.entries
            .retain(|_, entry| entry.sequence > newest_dropped);
    }
}

impl fmt::Debug for VerifiedTokens {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("VerifiedTokens")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_digest::LocalDigester;

    fn digest(n: u32) -> LocalDigest {
        LocalDigester::new([1; 16]).digest(format!("token-{n}").as_bytes())
    }

    fn expiring_at(expires_at: i64) -> SessionClaims {
        SessionClaims {
            user_id: "u_alice".to_owned(),
            session_id: "s_1".to_owned(),
            tenant_id: None,
            groups: Vec::new(),
            role: None,
            expires_at,
        }
    }

    #[test]
    fn returns_the_claims_of_a_verified_token() {
        let mut cache = VerifiedTokens::new(4);
        cache.insert(digest(1), expiring_at(100), 0);

        assert_eq!(cache.get(&digest(1), 99), Some(&expiring_at(100)));
        assert_eq!(cache.get(&digest(2), 99), None);
    }

    #[test]
    fn a_token_is_a_miss_from_its_expiry_on() {
        let mut cache = VerifiedTokens::new(4);
        cache.insert(digest(1), expiring_at(100), 0);

        assert_eq!(cache.get(&digest(1), 100), None);
        assert_eq!(cache.get(&digest(1), 1_000), None);
    }

    #[test]
    fn an_already_expired_token_is_not_kept() {
        let mut cache = VerifiedTokens::new(4);
        cache.insert(digest(1), expiring_at(100), 100);

        assert!(cache.is_empty());
    }

    #[test]
    fn insert_replaces_the_entry_of_the_same_token() {
        let mut cache = VerifiedTokens::new(1);
        cache.insert(digest(1), expiring_at(100), 0);
        cache.insert(digest(1), expiring_at(200), 0);

        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&digest(1), 150), Some(&expiring_at(200)));
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let mut cache = VerifiedTokens::new(3);
        cache.insert(digest(1), expiring_at(1_000), 0);
        cache.insert(digest(2), expiring_at(10), 0);
        cache.insert(digest(3), expiring_at(1_000), 0);

        cache.insert(digest(4), expiring_at(1_000), 500);

        assert_eq!(cache.len(), 3);
        for kept in [1, 3, 4] {
            assert!(cache.get(&digest(kept), 500).is_some(), "token {kept}");
        }
    }

    #[test]
    fn a_cache_full_of_live_tokens_drops_the_older_half() {
        let mut cache = VerifiedTokens::new(4);
        for n in 1..=4 {
            cache.insert(digest(n), expiring_at(1_000), 0);
        }

        cache.insert(digest(5), expiring_at(1_000), 0);

        assert_eq!(cache.len(), 3);
        for dropped in [1, 2] {
            assert!(cache.get(&digest(dropped), 0).is_none(), "token {dropped}");
        }
        for kept in [3, 4, 5] {
            assert!(cache.get(&digest(kept), 0).is_some(), "token {kept}");
        }
    }

    #[test]
    fn a_replaced_entry_counts_as_new() {
        let mut cache = VerifiedTokens::new(2);
        cache.insert(digest(1), expiring_at(1_000), 0);
        cache.insert(digest(2), expiring_at(1_000), 0);
        cache.insert(digest(1), expiring_at(1_000), 0);

        cache.insert(digest(3), expiring_at(1_000), 0);

        assert!(cache.get(&digest(1), 0).is_some());
        assert!(cache.get(&digest(2), 0).is_none());
    }

    #[test]
    fn never_grows_past_its_capacity() {
        for capacity in 1..=5 {
            let mut cache = VerifiedTokens::new(capacity);
            for n in 0..100 {
                cache.insert(digest(n), expiring_at(1_000), 0);
                assert!(cache.len() <= capacity, "capacity {capacity}");
                assert!(cache.get(&digest(n), 0).is_some(), "capacity {capacity}");
            }
        }
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut cache = VerifiedTokens::new(0);
        cache.insert(digest(1), expiring_at(1_000), 0);

        assert!(cache.is_empty());
    }

    #[test]
    fn clear_forgets_every_token() {
        let mut cache = VerifiedTokens::new(4);
        cache.insert(digest(1), expiring_at(1_000), 0);
        cache.clear();

        assert_eq!(cache.get(&digest(1), 0), None);
        assert!(cache.is_empty());
    }
}
