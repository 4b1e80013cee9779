//! A cache entry made ready for per-request checks: its allowlist and scopes parsed once.

use crate::access::{IpAllowlist, Scopes};
use crate::cache::CacheEntry;
use crate::local_cache::Expiring;

/// A cached answer with what every request checks already parsed.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub entry: CacheEntry,
    /// `None` when the control plane sent an allowlist this filter cannot read: every
    /// address is refused rather than every address allowed.
    pub allowlist: Option<IpAllowlist>,
    /// `None` when the scopes cannot be read: every route is refused.
    pub scopes: Option<Scopes>,
}

impl Resolved {
    pub fn new(entry: CacheEntry) -> Self {
        let (allowlist, scopes) = match &entry.principal {
            Some(principal) => (
                IpAllowlist::parse(&principal.ip_allowlist).ok(),
                Scopes::parse(&principal.scopes).ok(),
            ),
            None => (Some(IpAllowlist::default()), Some(Scopes::default())),
        };
        Self {
            entry,
            allowlist,
            scopes,
        }
    }
}

impl Expiring for Resolved {
    fn expires_at_ms(&self) -> i64 {
        self.entry.expires_at_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Principal;

    fn entry(allowlist: &[&str], scopes: &[&str]) -> CacheEntry {
        CacheEntry {
            principal: Some(Principal {
                user_id: "u".to_owned(),
                ip_allowlist: allowlist.iter().map(|s| (*s).to_owned()).collect(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                ..Principal::default()
            }),
            expires_at_ms: 10,
            fetched_cursor: 0,
        }
    }

    #[test]
    fn readable_lists_are_parsed_once() {
        let resolved = Resolved::new(entry(&["10.0.0.0/8"], &["GET /v1"]));
        let allowlist = resolved.allowlist.expect("allowlist");
        assert!(allowlist.allows("10.1.2.3".parse().expect("ip")));
        assert!(resolved.scopes.expect("scopes").permits("GET", "/v1/x"));
    }

    #[test]
    fn unreadable_lists_fail_closed() {
        let resolved = Resolved::new(entry(&["not an address"], &["no-slash"]));
        assert!(resolved.allowlist.is_none());
        assert!(resolved.scopes.is_none());
    }
}
