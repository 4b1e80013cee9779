//! The two cache levels in front of the control plane: this VM's own map, then Envoy's shared
//! data, which every worker VM of the Envoy reads.

use std::cell::RefCell;

use proxy_wasm::hostcalls;
use tollgate_filter_core::cache::{shared_data_key, CacheEntry};
use tollgate_filter_core::digest::KeyDigest;
use tollgate_filter_core::local_cache::LocalCache;

/// Cached control plane answers by key digest.
pub struct KeyCache {
    local: RefCell<LocalCache>,
}

impl KeyCache {
    /// A cache whose VM-local level holds at most `local_capacity` entries.
    pub fn new(local_capacity: usize) -> Self {
        Self {
            local: RefCell::new(LocalCache::with_capacity(local_capacity)),
        }
    }

    /// The fresh entry for `digest`, from this VM if it has one, else from shared data.
    pub fn fresh_entry(&self, digest: &KeyDigest, now_ms: i64) -> Option<CacheEntry> {
        if let Some(entry) = self.local_fresh_entry(digest, now_ms) {
            return Some(entry);
        }
        let entry = shared_entry(digest).filter(|entry| entry.is_fresh(now_ms))?;
        self.remember_locally(*digest, entry.clone(), now_ms);
        Some(entry)
    }

    /// Keeps `entry` in shared data for every VM, and in this VM.
    pub fn remember(&self, digest: KeyDigest, entry: CacheEntry, now_ms: i64) {
        let stored =
            hostcalls::set_shared_data(&shared_data_key(&digest), Some(&entry.to_bytes()), None);
        if let Err(status) = stored {
            log::warn!("could not write a key cache entry to shared data: {status:?}");
        }
        self.remember_locally(digest, entry, now_ms);
    }

    // The cell is only ever borrowed for the length of one call below, so a failed borrow cannot
    // happen; it is handled as a cache miss rather than a panic all the same.
    fn local_fresh_entry(&self, digest: &KeyDigest, now_ms: i64) -> Option<CacheEntry> {
        self.local
            .try_borrow()
            .ok()?
            .get_fresh(digest, now_ms)
            .cloned()
    }

    fn remember_locally(&self, digest: KeyDigest, entry: CacheEntry, now_ms: i64) {
        if let Ok(mut local) = self.local.try_borrow_mut() {
            local.insert(digest, entry, now_ms);
        }
    }
}

fn shared_entry(digest: &KeyDigest) -> Option<CacheEntry> {
    match hostcalls::get_shared_data(&shared_data_key(digest)) {
        Ok((Some(bytes), _cas)) => CacheEntry::from_bytes(&bytes),
        Ok((None, _cas)) => None,
        Err(status) => {
            log::warn!("could not read the key cache in shared data: {status:?}");
            None
        }
    }
}
