//! What happens to a request: forwarded with identity headers, refused, or paused for a lookup.

use crate::cache::CacheEntry;
use crate::callout::CalloutFailure;
use crate::credential::{CredentialError, PresentedCredential};
use crate::digest::KeyDigest;
use crate::proto::{LookupKeyResponse, Principal, UserStatus};

const USER_ID_HEADER: &str = "x-tollgate-user-id";
const KEY_ID_HEADER: &str = "x-tollgate-key-id";
const TENANT_ID_HEADER: &str = "x-tollgate-tenant-id";
const GROUPS_HEADER: &str = "x-tollgate-groups";
const AUTH_METHOD_HEADER: &str = "x-tollgate-auth-method";
const API_KEY_AUTH_METHOD: &str = "api_key";

const MILLIS_PER_SECOND: i64 = 1000;

/// The one answer the filter applies to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request with these headers set (after the client's credential and
    /// `x-tollgate-*` headers are removed).
    Allow {
        /// Identity headers for the upstream, as (lowercase name, value).
        set_headers: Vec<(String, String)>,
    },
    /// Answer the client directly with an error.
    Deny {
        /// HTTP status.
        status: u32,
        /// Stable `snake_case` error code for the body.
        code: &'static str,
        /// Human-readable explanation for the body.
        message: String,
    },
    /// Pause the request and ask the control plane about this key.
    Lookup {
        /// The key to look up.
        key_digest: KeyDigest,
    },
}

/// Decides a request from its credential and what the caches hold for it at `now_ms`.
///
/// `cached_entry` is asked only when a well-formed key was presented; a stale entry counts as a
/// miss and leads to a lookup.
pub fn decide_request(
    credential: Result<PresentedCredential, CredentialError>,
    cached_entry: impl FnOnce(&KeyDigest) -> Option<CacheEntry>,
    now_ms: i64,
) -> Decision {
    let key_digest = match credential {
        Ok(presented) => presented.digest,
        Err(CredentialError::Missing) => return missing_credentials(),
        Err(CredentialError::Invalid) => return invalid_api_key(),
    };
    match cached_entry(&key_digest).filter(|entry| entry.is_fresh(now_ms)) {
        Some(entry) => decide_for_principal(entry.principal.as_ref(), now_ms),
        None => Decision::Lookup { key_digest },
    }
}

/// Decides a paused request from the control plane's answer, or its absence.
pub fn decide_from_callout(
    answer: &Result<LookupKeyResponse, CalloutFailure>,
    now_ms: i64,
) -> Decision {
    match answer {
        Ok(answer) => decide_for_principal(answer.principal.as_ref(), now_ms),
        Err(_) => deny(
            503,
            "control_plane_unavailable",
            "the control plane could not be reached",
        ),
    }
}

fn decide_for_principal(principal: Option<&Principal>, now_ms: i64) -> Decision {
    let Some(principal) = principal else {
        return invalid_api_key();
    };
    if principal.user_status() == UserStatus::Suspended {
        return deny(403, "user_suspended", "the user is suspended");
    }
    if key_has_expired(principal, now_ms) {
        return deny(401, "api_key_expired", "the API key has expired");
    }
    Decision::Allow {
        set_headers: identity_headers(principal),
    }
}

fn key_has_expired(principal: &Principal, now_ms: i64) -> bool {
    let never_expires = principal.key_expires_at == 0;
    !never_expires && principal.key_expires_at.saturating_mul(MILLIS_PER_SECOND) <= now_ms
}

fn identity_headers(principal: &Principal) -> Vec<(String, String)> {
    let groups = principal.group_ids.join(",");
    let optional =
        |name: &str, value: String| (!value.is_empty()).then(|| (name.to_owned(), value));
    [
        Some((USER_ID_HEADER.to_owned(), principal.user_id.clone())),
        Some((KEY_ID_HEADER.to_owned(), principal.key_id.clone())),
        optional(TENANT_ID_HEADER, principal.tenant_id.clone()),
        optional(GROUPS_HEADER, groups),
        Some((
            AUTH_METHOD_HEADER.to_owned(),
            API_KEY_AUTH_METHOD.to_owned(),
        )),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn missing_credentials() -> Decision {
    deny(
        401,
        "missing_credentials",
        "an API key is required (X-API-Key or Authorization: Bearer)",
    )
}

/// Unknown, revoked and malformed keys all get this same answer.
fn invalid_api_key() -> Decision {
    deny(401, "invalid_api_key", "invalid API key")
}

fn deny(status: u32, code: &'static str, message: &str) -> Decision {
    Decision::Deny {
        status,
        code,
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests;
