//! The two cache levels in front of the control plane: this VM's own maps, then Envoy's
//! shared data, which every worker VM of the Envoy reads.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::hash::Hash;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use tollgate_filter_core::cache::{shared_data_key, shared_user_key, CacheEntry};
use tollgate_filter_core::callout::Lookup;
use tollgate_filter_core::credential::PresentedCredential;
use tollgate_filter_core::gate::Principals;
use tollgate_filter_core::local_cache::LocalCache;
use tollgate_filter_core::local_digest::LocalDigest;
use tollgate_filter_core::resolved::Resolved;

use crate::clock::now_ms;
use crate::metrics::Metrics;

/// Bounds the memory one VM spends on cached principals; shared data still holds them all.
const LOCAL_CAPACITY_ENTRIES: usize = 10_000;

/// Cached control-plane answers for keys and users. This VM's own map holds keys by their
/// [`LocalDigest`]; shared data holds them by SHA-256, computed only when this VM misses.
pub struct PrincipalCaches {
    keys: RefCell<LocalCache<LocalDigest, Resolved>>,
    users: RefCell<LocalCache<String, Resolved>>,
    metrics: Rc<Metrics>,
}

impl PrincipalCaches {
    pub fn new(keep_stale_ms: i64, metrics: Rc<Metrics>) -> Self {
        Self {
            keys: RefCell::new(LocalCache::new(LOCAL_CAPACITY_ENTRIES, keep_stale_ms)),
            users: RefCell::new(LocalCache::new(LOCAL_CAPACITY_ENTRIES, keep_stale_ms)),
            metrics,
        }
    }

    /// Keeps the answer to `lookup`. Positive answers go to shared data for every worker;
    /// negative ones only replace a shared entry that exists, so a flood of made-up keys
    /// cannot grow Envoy's shared memory.
    pub fn remember(&self, lookup: &Lookup, entry: CacheEntry, now_ms: i64) {
        let shared_key = match lookup {
            Lookup::Key { digest, .. } => shared_data_key(digest),
            Lookup::User(user_id) => shared_user_key(user_id),
        };
        let share = entry.principal.is_some() || read_shared(&shared_key).is_some();
        if share {
            if let Err(status) =
                hostcalls::set_shared_data(&shared_key, Some(&entry.to_bytes()), None)
            {
                log::warn!("could not write a cache entry to shared data: {status:?}");
            }
        }
        let resolved = Resolved::new(entry);
        match lookup {
            Lookup::Key { local, .. } => {
                if let Ok(mut keys) = self.keys.try_borrow_mut() {
                    keys.insert(*local, resolved, now_ms);
                }
            }
            Lookup::User(user_id) => {
                if let Ok(mut users) = self.users.try_borrow_mut() {
                    users.insert(user_id.clone(), resolved, now_ms);
                }
            }
        }
    }

    fn with_entry<K, Q, R>(
        &self,
        cache: &RefCell<LocalCache<K, Resolved>>,
        key: &Q,
        shared_key: impl FnOnce() -> String,
        read: impl FnOnce(Option<&Resolved>) -> R,
    ) -> R
    where
        K: Borrow<Q> + Hash + Eq,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
    {
        // Each borrow lasts one call and nothing here re-enters; a failed borrow is a miss.
        let Ok(mut local) = cache.try_borrow_mut() else {
            return read(None);
        };
        if let Some(entry) = local.get(key) {
            self.metrics.local_hit();
            return read(Some(entry));
        }
        match read_shared(&shared_key()) {
            Some(entry) => {
                self.metrics.shared_hit();
                local.insert(key.to_owned(), Resolved::new(entry), now_ms());
                read(local.get(key))
            }
            None => {
                self.metrics.miss();
                read(None)
            }
        }
    }
}

impl Principals for PrincipalCaches {
    fn with_key<R>(
        &self,
        key: &PresentedCredential,
        read: impl FnOnce(Option<&Resolved>) -> R,
    ) -> R {
        self.with_entry(
            &self.keys,
            &key.local,
            || shared_data_key(&key.digest()),
            read,
        )
    }

    fn with_user<R>(&self, user_id: &str, read: impl FnOnce(Option<&Resolved>) -> R) -> R {
        self.with_entry(&self.users, user_id, || shared_user_key(user_id), read)
    }
}

fn read_shared(key: &str) -> Option<CacheEntry> {
    match hostcalls::get_shared_data(key) {
        Ok((Some(bytes), _cas)) => CacheEntry::from_bytes(&bytes),
        Ok((None, _cas)) => None,
        Err(status) => {
            log::warn!("could not read the cache in shared data: {status:?}");
            None
        }
    }
}
