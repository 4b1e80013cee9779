//! The two cache levels in front of the control plane: this VM's own maps, then Envoy's
//! shared data, which every worker VM of the Envoy reads.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::hash::Hash;

use crate::cache::{shared_data_key, shared_user_key, CacheEntry};
use crate::callout::Lookup;
use crate::credential::PresentedCredential;
use crate::gate::Principals;
use crate::host::Host;
use crate::local_cache::LocalCache;
use crate::local_digest::LocalDigest;
use crate::metrics::Metrics;
use crate::resolved::Resolved;

const MICROS_PER_MILLI: i64 = 1000;

/// Bounds the memory one VM spends on cached principals; shared data still holds them all.
const LOCAL_CAPACITY_ENTRIES: usize = 10_000;

/// Cached control-plane answers for keys and users. This VM's own map holds keys by their
/// [`LocalDigest`]; shared data holds them by SHA-256, computed only when this VM misses.
pub struct PrincipalCaches {
    keys: RefCell<LocalCache<LocalDigest, Resolved>>,
    users: RefCell<LocalCache<String, Resolved>>,
}

/// The caches as the gate reads them, through `host`'s shared data.
pub struct CachedPrincipals<'a, H: Host> {
    caches: &'a PrincipalCaches,
    host: &'a H,
    metrics: &'a Metrics,
}

impl PrincipalCaches {
    pub fn new(keep_stale_ms: i64) -> Self {
        Self {
            keys: RefCell::new(LocalCache::new(LOCAL_CAPACITY_ENTRIES, keep_stale_ms)),
            users: RefCell::new(LocalCache::new(LOCAL_CAPACITY_ENTRIES, keep_stale_ms)),
        }
    }

    /// The caches for the gate, counting hits and misses in `metrics`.
    pub fn on<'a, H: Host>(&'a self, host: &'a H, metrics: &'a Metrics) -> CachedPrincipals<'a, H> {
        CachedPrincipals {
            caches: self,
            host,
            metrics,
        }
    }

    /// Keeps the answer to `lookup`. Positive answers go to shared data for every worker;
    /// negative ones only replace a shared entry that exists, so a flood of made-up keys
    /// cannot grow Envoy's shared memory.
    pub fn remember(&self, host: &impl Host, lookup: &Lookup, entry: CacheEntry, now_ms: i64) {
        let shared_key = match lookup {
            Lookup::Key { digest, .. } => shared_data_key(digest),
            Lookup::User(user_id) => shared_user_key(user_id),
        };
        let share = entry.principal.is_some() || read_shared(host, &shared_key).is_some();
        if share {
            if let Err(error) = host.shared_data_set(&shared_key, &entry.to_bytes(), None) {
                log::warn!("could not write a cache entry to shared data: {error:?}");
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
}

impl<H: Host> CachedPrincipals<'_, H> {
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
        match read_shared(self.host, &shared_key()) {
            Some(entry) => {
                self.metrics.shared_hit();
                let now_ms = self.host.now_us() / MICROS_PER_MILLI;
                local.insert(key.to_owned(), Resolved::new(entry), now_ms);
                read(local.get(key))
            }
            None => {
                self.metrics.miss();
                read(None)
            }
        }
    }
}

impl<H: Host> Principals for CachedPrincipals<'_, H> {
    fn with_key<R>(
        &self,
        key: &PresentedCredential,
        read: impl FnOnce(Option<&Resolved>) -> R,
    ) -> R {
        self.with_entry(
            &self.caches.keys,
            &key.local,
            || shared_data_key(&key.digest()),
            read,
        )
    }

    fn with_user<R>(&self, user_id: &str, read: impl FnOnce(Option<&Resolved>) -> R) -> R {
        self.with_entry(
            &self.caches.users,
            user_id,
            || shared_user_key(user_id),
            read,
        )
    }
}

fn read_shared(host: &impl Host, key: &str) -> Option<CacheEntry> {
    host.shared_data_get(key)
        .and_then(|(bytes, _cas)| CacheEntry::from_bytes(&bytes))
}
