//! What happens to a request: forwarded with identity headers, refused, or paused for a lookup.

use std::rc::Rc;

use crate::callout::Lookup;
use crate::limits::plan::Plan;

/// The header that tells the upstream how the request was authenticated.
pub const AUTH_METHOD_HEADER: &str = "x-tollgate-auth-method";

/// How an allowed request was authenticated; the value of `x-tollgate-auth-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey,
    Session,
    /// Let through by a fail-open route while the control plane was unreachable.
    Unverified,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Session => "session",
            Self::Unverified => "unverified",
        }
    }
}

/// The one answer the filter applies to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request with these headers set (after the client's credential and
    /// `x-tollgate-*` headers are removed).
    Allow {
        /// Identity headers for the upstream, as (lowercase name, value); the auth method
        /// goes along as [`AUTH_METHOD_HEADER`].
        set_headers: Rc<[(&'static str, String)]>,
        auth_method: AuthMethod,
        /// The user whose quotas the request counts against; empty when unverified.
        user_id: Rc<str>,
        /// The rate limits the request draws on.
        limits: Rc<Plan>,
    },
    /// Refuse with 402: the user has used up `quota` until `resets_at` (Unix seconds; 0 for a
    /// quota that does not reset by itself).
    QuotaExceeded {
        user_id: String,
        quota: String,
        resets_at: i64,
    },
    /// Answer the client directly with an error.
    Deny {
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

impl Decision {
    pub(crate) const fn deny(status: u32, code: &'static str, message: &'static str) -> Self {
        Self::Deny {
            status,
            code,
            message,
        }
    }
}

/// No credential at all.
pub const MISSING_CREDENTIALS: Decision = Decision::deny(
    401,
    "missing_credentials",
    "an API key (X-API-Key or Authorization: Bearer) or a session token is required",
);
/// Unknown, revoked and malformed keys all get this same answer.
pub const INVALID_API_KEY: Decision = Decision::deny(401, "invalid_api_key", "invalid API key");
pub const API_KEY_EXPIRED: Decision =
    Decision::deny(401, "api_key_expired", "the API key has expired");
pub const SESSION_REVOKED: Decision = Decision::deny(
    401,
    "session_revoked",
    "the session has ended; log in again",
);
pub const USER_SUSPENDED: Decision = Decision::deny(403, "user_suspended", "the user is suspended");
pub const IP_NOT_ALLOWED: Decision = Decision::deny(
    403,
    "ip_not_allowed",
    "requests from this address are not allowed for this user",
);
pub const SCOPE_DENIED: Decision = Decision::deny(
    403,
    "scope_denied",
    "the API key's scopes do not cover this route",
);
pub const INVALID_FORWARDED_FOR: Decision = Decision::deny(
    400,
    "invalid_forwarded_for",
    "X-Forwarded-For does not hold a valid client address",
);
pub const CONTROL_PLANE_UNAVAILABLE: Decision = Decision::deny(
    503,
    "control_plane_unavailable",
    "the control plane could not be reached",
);
