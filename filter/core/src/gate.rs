//! The verdict on one request's credential, from the cached principals, the change feed and
//! the failure policy. Pure: the host's caches come in through [`Principals`].

use std::net::IpAddr;
use std::rc::Rc;

use crate::access::{client_ip, Scopes};
use crate::allowances::MeteredQuotas;
use crate::callout::Lookup;
use crate::credential::{CredentialError, Presented, PresentedCredential};
use crate::decision::AuthMethod;
use crate::freshness::Freshness;
use crate::limits::plan::{request_plan, Plan};
use crate::local_digest::LocalDigest;
use crate::proto::{ExhaustedQuota, UserStatus};
use crate::resolved::{Resolved, ResolvedPrincipal};
use crate::session::{verify, SessionClaims, VerifiedTokens};

mod verdict;

pub use verdict::*;

const MILLIS_PER_SECOND: i64 = 1000;

/// The cached answers of the control plane, as the host holds them.
pub trait Principals {
    /// Calls `read` with the entry for an API key, fresh or stale, if there is one.
    fn with_key<R>(
        &self,
        key: &PresentedCredential,
        read: impl FnOnce(Option<&Resolved>) -> R,
    ) -> R;
    /// Calls `read` with the entry for a session's user, fresh or stale, if there is one.
    fn with_user<R>(&self, user_id: &str, read: impl FnOnce(Option<&Resolved>) -> R) -> R;
}

/// What the operator configured for when the control plane cannot answer.
#[derive(Debug, Clone, Default)]
pub struct FailurePolicy {
    /// How long past its TTL a cached principal still serves.
    pub max_stale_ms: i64,
    /// Routes that let unauthenticated requests through; `None` fails closed everywhere.
    pub fail_open: Option<Scopes>,
}

/// Where the request stands with the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing asked yet: a missing or stale entry leads to a lookup.
    First,
    /// The control plane just answered: its entry is as fresh as anything can be.
    Fetched,
    /// The control plane could not be reached: serve stale entries or apply the policy.
    Unreachable,
}

/// The request as the gate sees it.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The client's address, worked out when first needed (reading Envoy's `source.address`
    /// costs a host call): here when a user has an allowlist, else for the upstream's
    /// `x-tollgate-client-ip` once the request is allowed.
    pub client_ip: &'a dyn Fn() -> Result<IpAddr, Verdict>,
    pub now_ms: i64,
    pub stage: Stage,
}

/// Everything the gate consults besides the request.
pub struct Gate<'a, P: Principals> {
    pub principals: &'a P,
    pub freshness: &'a Freshness,
    pub policy: &'a FailurePolicy,
}

/// The client's address: the peer itself, or, behind `trusted_hops` proxies, the
/// `X-Forwarded-For` entry the outermost trusted proxy wrote.
///
/// Envoy runs with `use_remote_address: true`, so it has already appended the peer to
/// `X-Forwarded-For` when the filter reads it; that entry is skipped as one more hop.
pub fn client_address(
    source_address: &str,
    forwarded_for: Option<&[u8]>,
    trusted_hops: u8,
) -> Result<IpAddr, Verdict> {
    let (forwarded_for, hops) = match trusted_hops {
        0 => (None, 0),
        hops => (forwarded_for, hops.saturating_add(1)),
    };
    client_ip(source_address, forwarded_for, hops).map_err(|_| INVALID_FORWARDED_FOR)
}

/// Whether a key that expires at `key_expires_at` (Unix seconds, 0 for never) has expired at
/// `now_ms`: from the first millisecond of that second on. The control plane's admin API
/// applies this same rule, so a key works or fails at both doors alike.
pub fn key_expired(key_expires_at: i64, now_ms: i64) -> bool {
    key_expires_at != 0 && key_expires_at.saturating_mul(MILLIS_PER_SECOND) <= now_ms
}

impl<P: Principals> Gate<'_, P> {
    /// Decides the request. `tokens` remembers verified session tokens across requests.
    pub fn decide(
        &self,
        presented: &Result<Presented, CredentialError>,
        facts: &RequestFacts<'_>,
        tokens: &mut VerifiedTokens,
    ) -> Verdict {
        match presented {
            Err(CredentialError::Missing) => MISSING_CREDENTIALS,
            Err(CredentialError::Invalid) => INVALID_API_KEY,
            Ok(Presented::ApiKey(key)) => {
                let lookup = || Lookup::Key {
                    digest: key.digest(),
                    local: key.local,
                };
                self.principals.with_key(key, |entry| {
                    self.decide_with(entry, lookup, facts, |resolved| match &resolved.principal {
                        Some(principal) => self.authorize(principal, facts, AuthMethod::ApiKey),
                        None => INVALID_API_KEY,
                    })
                })
            }
            Ok(Presented::Session { token, local, .. }) => {
                let claims = match self.session_claims(token, *local, facts.now_ms, tokens) {
                    Ok(claims) => claims,
                    Err(decision) => return decision,
                };
                self.principals.with_user(&claims.user_id, |entry| {
                    self.decide_with(
                        entry,
                        || Lookup::User(claims.user_id.clone()),
                        facts,
                        |resolved| match &resolved.principal {
                            Some(principal) if *principal.user_id == *claims.user_id => {
                                self.authorize(principal, facts, AuthMethod::Session)
                            }
                            _ => invalid_session(),
                        },
                    )
                })
            }
        }
    }

    /// Uses `entry` when it may answer at this stage, else asks for `lookup` or applies the
    /// failure policy.
    fn decide_with(
        &self,
        entry: Option<&Resolved>,
        lookup: impl FnOnce() -> Lookup,
        facts: &RequestFacts<'_>,
        answer: impl FnOnce(&Resolved) -> Verdict,
    ) -> Verdict {
        let usable = entry.filter(|resolved| match facts.stage {
            Stage::Fetched => true,
            Stage::First => resolved.is_fresh(facts.now_ms) && self.is_current(resolved),
            Stage::Unreachable => {
                let stale_until = resolved
                    .expires_at_ms
                    .saturating_add(self.policy.max_stale_ms);
                facts.now_ms < stale_until && self.is_current(resolved)
            }
        });
        match (usable, facts.stage) {
            (Some(resolved), _) => answer(resolved),
            (None, Stage::Unreachable) => self.when_unreachable(facts),
            (None, _) => Verdict::Lookup(lookup()),
        }
    }

    fn is_current(&self, resolved: &Resolved) -> bool {
        let (user_id, key_id) = resolved
            .principal
            .as_ref()
            .map_or(("", ""), |p| (&*p.user_id, &*p.key_id));
        self.freshness
            .is_current(resolved.fetched_cursor, user_id, key_id)
    }

    fn when_unreachable(&self, facts: &RequestFacts<'_>) -> Verdict {
        let fails_open = self
            .policy
            .fail_open
            .as_ref()
            .is_some_and(|routes| routes.permits(facts.method, facts.path));
        if fails_open {
            Verdict::Authorized {
                set_headers: Rc::from([]),
                auth_method: AuthMethod::Unverified,
                user_id: Rc::from(""),
                limits: Rc::new(Plan::default()),
                metered: MeteredQuotas::default(),
            }
        } else {
            CONTROL_PLANE_UNAVAILABLE
        }
    }

    fn session_claims(
        &self,
        token: &str,
        local: LocalDigest,
        now_ms: i64,
        tokens: &mut VerifiedTokens,
    ) -> Result<SessionClaims, Verdict> {
        let now_secs = now_ms / MILLIS_PER_SECOND;
        let claims = match tokens.get(&local, now_secs) {
            Some(claims) => claims.clone(),
            None => {
                let verification = self.freshness.sessions().ok_or(CONTROL_PLANE_UNAVAILABLE)?;
                let claims = verify(token, &verification.keys, &verification.expect, now_secs)
                    .map_err(|error| {
                        Verdict::refused(401, error.code(), session_error_message(error.code()))
                    })?;
                tokens.insert(local, claims.clone(), now_secs);
                claims
            }
        };
        if self.freshness.session_revoked(&claims.session_id) {
            return Err(SESSION_REVOKED);
        }
        Ok(claims)
    }

    fn authorize(
        &self,
        principal: &ResolvedPrincipal,
        facts: &RequestFacts<'_>,
        method: AuthMethod,
    ) -> Verdict {
        if principal.user_status == UserStatus::Suspended {
            return USER_SUSPENDED;
        }
        if key_expired(principal.key_expires_at, facts.now_ms) {
            return API_KEY_EXPIRED;
        }
        match &principal.allowlist {
            Some(allowlist) if allowlist.is_empty() => {}
            Some(allowlist) => match (facts.client_ip)() {
                Ok(ip) if allowlist.allows(ip) => {}
                Ok(_) => return IP_NOT_ALLOWED,
                Err(refusal) => return refusal,
            },
            None => return IP_NOT_ALLOWED,
        }
        let in_scope = principal
            .scopes
            .as_ref()
            .is_some_and(|scopes| scopes.permits(facts.method, facts.path));
        if !in_scope {
            return SCOPE_DENIED;
        }
        let now_secs = facts.now_ms / MILLIS_PER_SECOND;
        if let Some(quota) = principal
            .exhausted_quotas
            .iter()
            .find(|quota| blocks(quota, facts.method, now_secs))
        {
            return Verdict::QuotaExceeded {
                user_id: principal.user_id.to_string(),
                quota: quota.name.clone(),
                resets_at: quota.resets_at,
            };
        }
        Verdict::Authorized {
            set_headers: Rc::clone(&principal.identity_headers),
            auth_method: method,
            user_id: Rc::clone(&principal.user_id),
            limits: request_plan(
                &principal.limits,
                self.freshness.route_limits(),
                facts.method,
                facts.path,
            ),
            metered: principal.metered,
        }
    }
}

/// Whether a used-up quota refuses this request: a monthly quota until it resets, a storage
/// quota (which does not reset) for everything but `DELETE`, which frees storage.
fn blocks(quota: &ExhaustedQuota, method: &str, now_secs: i64) -> bool {
    if quota.resets_at == 0 {
        method != "DELETE"
    } else {
        now_secs < quota.resets_at
    }
}

fn invalid_session() -> Verdict {
    Verdict::refused(
        401,
        "invalid_session",
        session_error_message("invalid_session"),
    )
}

fn session_error_message(code: &str) -> &'static str {
    if code == "session_expired" {
        "the session token has expired; refresh it"
    } else {
        "invalid session token"
    }
}

#[cfg(test)]
mod tests;
