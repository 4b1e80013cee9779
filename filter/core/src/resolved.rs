//! A cache entry made ready for per-request checks: its allowlist and scopes parsed once,
//! and what every allowed request of the principal carries made once.

use std::rc::Rc;

use crate::access::{IpAllowlist, Scopes};
use crate::allowances::MeteredQuotas;
use crate::cache::CacheEntry;
use crate::limits::plan::{principal_plan, Plan};
use crate::local_cache::Expiring;
use crate::proto::{ExhaustedQuota, Principal, UserStatus};

const USER_ID_HEADER: &str = "x-tollgate-user-id";
const KEY_ID_HEADER: &str = "x-tollgate-key-id";
const TENANT_ID_HEADER: &str = "x-tollgate-tenant-id";
const GROUPS_HEADER: &str = "x-tollgate-groups";
/// Envoy's routes match this header to send a group's users to the group's pools.
pub const ROUTE_GROUP_HEADER: &str = "x-tollgate-route-group";

/// A cached answer with what every request checks already parsed. A worker keeps thousands,
/// so it is small: the expiry inline, the principal boxed, and nothing of the control plane's
/// message that requests do not read.
#[derive(Debug)]
pub struct Resolved {
    /// Unix milliseconds after which the entry counts as a miss.
    pub expires_at_ms: i64,
    /// The change-feed position the answer reflects; later invalidations make it stale.
    pub fetched_cursor: u64,
    /// Who the credential authenticates; `None` for one that must be refused.
    pub principal: Option<Box<ResolvedPrincipal>>,
}

/// What requests of one principal check and carry.
#[derive(Debug)]
pub struct ResolvedPrincipal {
    pub user_id: Rc<str>,
    /// Empty for a session's user.
    pub key_id: Box<str>,
    pub user_status: UserStatus,
    /// Unix seconds; 0 when the key never expires.
    pub key_expires_at: i64,
    pub exhausted_quotas: Box<[ExhaustedQuota]>,
    /// The quotas a request is admitted to only from an allowance.
    pub metered: MeteredQuotas,
    /// `None` when the control plane sent an allowlist this filter cannot read: every
    /// address is refused rather than every address allowed.
    pub allowlist: Option<IpAllowlist>,
    /// `None` when the scopes cannot be read: every route is refused.
    pub scopes: Option<Scopes>,
    /// The identity headers for the upstream, but the auth method's.
    pub identity_headers: Rc<[(&'static str, String)]>,
    /// The user's and the key's rate limits.
    pub limits: Rc<Plan>,
}

impl Resolved {
    pub fn new(entry: CacheEntry) -> Self {
        Self {
            expires_at_ms: entry.expires_at_ms,
            fetched_cursor: entry.fetched_cursor,
            principal: entry
                .principal
                .map(|principal| Box::new(ResolvedPrincipal::new(principal))),
        }
    }

    /// Whether the entry may still answer at `now_ms`.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        now_ms < self.expires_at_ms
    }
}

impl ResolvedPrincipal {
    fn new(principal: Principal) -> Self {
        Self {
            allowlist: IpAllowlist::parse(&principal.ip_allowlist).ok(),
            scopes: Scopes::parse(&principal.scopes).ok(),
            identity_headers: identity_headers(&principal),
            limits: Rc::new(principal_plan(
                &principal.rate_limits,
                &principal.user_id,
                &principal.key_id,
            )),
            user_status: principal.user_status(),
            key_expires_at: principal.key_expires_at,
            exhausted_quotas: principal.exhausted_quotas.into_boxed_slice(),
            metered: MeteredQuotas::from_names(&principal.metered_quotas),
            user_id: Rc::from(principal.user_id),
            key_id: principal.key_id.into_boxed_str(),
        }
    }
}

fn identity_headers(principal: &Principal) -> Rc<[(&'static str, String)]> {
    let mut headers = vec![(USER_ID_HEADER, principal.user_id.clone())];
    if !principal.key_id.is_empty() {
        headers.push((KEY_ID_HEADER, principal.key_id.clone()));
    }
    if !principal.tenant_id.is_empty() {
        headers.push((TENANT_ID_HEADER, principal.tenant_id.clone()));
    }
    if !principal.group_ids.is_empty() {
        headers.push((GROUPS_HEADER, principal.group_ids.join(",")));
    }
    if !principal.route_group.is_empty() {
        headers.push((ROUTE_GROUP_HEADER, principal.route_group.clone()));
    }
    Rc::from(headers)
}

impl Expiring for Resolved {
    fn expires_at_ms(&self) -> i64 {
        self.expires_at_ms
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

    fn principal(entry: CacheEntry) -> ResolvedPrincipal {
        *Resolved::new(entry).principal.expect("a principal")
    }

    #[test]
    fn readable_lists_are_parsed_once() {
        let resolved = principal(entry(&["10.0.0.0/8"], &["GET /v1"]));
        let allowlist = resolved.allowlist.expect("allowlist");
        assert!(allowlist.allows("10.1.2.3".parse().expect("ip")));
        assert!(resolved.scopes.expect("scopes").permits("GET", "/v1/x"));
    }

    #[test]
    fn unreadable_lists_fail_closed() {
        let resolved = principal(entry(&["not an address"], &["no-slash"]));
        assert!(resolved.allowlist.is_none());
        assert!(resolved.scopes.is_none());
    }

    #[test]
    fn a_negative_answer_keeps_only_its_expiry_and_cursor() {
        let resolved = Resolved::new(CacheEntry {
            principal: None,
            expires_at_ms: 10,
            fetched_cursor: 3,
        });
        assert!(resolved.principal.is_none());
        assert!(resolved.is_fresh(9));
        assert!(!resolved.is_fresh(10));
        assert_eq!(resolved.fetched_cursor, 3);
    }
}
