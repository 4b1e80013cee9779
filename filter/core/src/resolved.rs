//! A cache entry made ready for per-request checks: its allowlist and scopes parsed once,
//! and what every allowed request of the principal carries made once.

use std::rc::Rc;

use crate::access::{IpAllowlist, Scopes};
use crate::cache::CacheEntry;
use crate::limits::plan::{principal_plan, Plan};
use crate::local_cache::Expiring;
use crate::proto::Principal;

const USER_ID_HEADER: &str = "x-tollgate-user-id";
const KEY_ID_HEADER: &str = "x-tollgate-key-id";
const TENANT_ID_HEADER: &str = "x-tollgate-tenant-id";
const GROUPS_HEADER: &str = "x-tollgate-groups";
/// Envoy's routes match this header to send a group's users to the group's pools.
pub const ROUTE_GROUP_HEADER: &str = "x-tollgate-route-group";

/// A cached answer with what every request checks already parsed.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub entry: CacheEntry,
    /// `None` when the control plane sent an allowlist this filter cannot read: every
    /// address is refused rather than every address allowed.
    pub allowlist: Option<IpAllowlist>,
    /// `None` when the scopes cannot be read: every route is refused.
    pub scopes: Option<Scopes>,
    /// The identity headers for the upstream, but the auth method's.
    pub identity_headers: Rc<[(String, String)]>,
    pub user_id: Rc<str>,
    /// The user's and the key's rate limits.
    pub limits: Rc<Plan>,
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
        let principal = entry.principal.as_ref();
        Self {
            identity_headers: principal.map_or_else(|| Rc::from([]), identity_headers),
            user_id: Rc::from(principal.map_or("", |p| p.user_id.as_str())),
            limits: Rc::new(principal.map_or_else(Plan::default, |p| {
                principal_plan(&p.rate_limits, &p.user_id, &p.key_id)
            })),
            entry,
            allowlist,
            scopes,
        }
    }
}

fn identity_headers(principal: &Principal) -> Rc<[(String, String)]> {
    let mut headers = vec![(USER_ID_HEADER.to_owned(), principal.user_id.clone())];
    if !principal.key_id.is_empty() {
        headers.push((KEY_ID_HEADER.to_owned(), principal.key_id.clone()));
    }
    if !principal.tenant_id.is_empty() {
        headers.push((TENANT_ID_HEADER.to_owned(), principal.tenant_id.clone()));
    }
    if !principal.group_ids.is_empty() {
        headers.push((GROUPS_HEADER.to_owned(), principal.group_ids.join(",")));
    }
    if !principal.route_group.is_empty() {
        headers.push((ROUTE_GROUP_HEADER.to_owned(), principal.route_group.clone()));
    }
    Rc::from(headers)
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
