//! What the gate concludes about a request's credential: authorized (with the limits it
//! draws on), refused, over a quota, or to be looked up.

use std::rc::Rc;

use crate::allowances::MeteredQuotas;
use crate::callout::Lookup;
use crate::decision::AuthMethod;
use crate::limits::plan::Plan;

/// The gate's answer. An authorized request may still be refused by its rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated and authorized: these headers go to the upstream (after the client's
    /// credential and `x-tollgate-*` headers are removed) if the limits admit it.
    Authorized {
        /// Identity headers for the upstream, as (lowercase name, value); the auth method
        /// goes along as [`crate::decision::AUTH_METHOD_HEADER`].
        set_headers: Rc<[(&'static str, String)]>,
        auth_method: AuthMethod,
        /// The user whose quotas the request counts against; empty when unverified.
        user_id: Rc<str>,
        /// The rate limits the request draws on.
        limits: Rc<Plan>,
        /// The quotas it must have an allowance of.
        metered: MeteredQuotas,
    },
    /// Refuse with 402: the user has used up `quota` until `resets_at` (Unix seconds; 0 for a
    /// quota that does not reset by itself).
    QuotaExceeded {
        user_id: String,
        quota: String,
        resets_at: i64,
    },
    /// Answer the client directly with an error.
    Refused {
        /// HTTP status.
        status: u32,
        /// Stable `snake_case` error code for the body.
        code: &'static str,
        /// Human-readable explanation for the body.
        message: &'static str,
    },
    /// Pause the request and ask the control plane.
    Lookup(Lookup),
}

impl Verdict {
    pub(crate) const fn refused(status: u32, code: &'static str, message: &'static str) -> Self {
        Self::Refused {
            status,
            code,
            message,
        }
    }
}

/// No credential at all.
pub const MISSING_CREDENTIALS: Verdict = Verdict::refused(
    401,
    "missing_credentials",
    "an API key (X-API-Key or Authorization: Bearer) or a session token is required",
);
/// Unknown, revoked and malformed keys all get this same answer.
pub const INVALID_API_KEY: Verdict = Verdict::refused(401, "invalid_api_key", "invalid API key");
pub const API_KEY_EXPIRED: Verdict =
    Verdict::refused(401, "api_key_expired", "the API key has expired");
pub const SESSION_REVOKED: Verdict = Verdict::refused(
    401,
    "session_revoked",
    "the session has ended; log in again",
);
pub const USER_SUSPENDED: Verdict =
    Verdict::refused(403, "user_suspended", "the user is suspended");
pub const IP_NOT_ALLOWED: Verdict = Verdict::refused(
    403,
    "ip_not_allowed",
    "requests from this address are not allowed for this user",
);
pub const SCOPE_DENIED: Verdict = Verdict::refused(
    403,
    "scope_denied",
    "the API key's scopes do not cover this route",
);
pub const INVALID_FORWARDED_FOR: Verdict = Verdict::refused(
    400,
    "invalid_forwarded_for",
    "X-Forwarded-For does not hold a valid client address",
);
pub const CONTROL_PLANE_UNAVAILABLE: Verdict = Verdict::refused(
    503,
    "control_plane_unavailable",
    "the control plane could not be reached",
);
