//! What happens to a request, all checks done: forwarded with identity headers, answered by
//! the filter, or paused for the control plane.

use std::rc::Rc;

use crate::allowances::{MeteredQuotas, Taken};
use crate::callout::Lookup;
use crate::limits::plan::{Draw, Plan};
use crate::limits::state::Checked;
use crate::proto::BucketRef;

/// The header that tells the upstream how the request was authenticated.
pub const AUTH_METHOD_HEADER: &str = "x-tollgate-auth-method";

/// The header that tells the upstream the client's address: the one the filter checked the
/// allowlist and the address limits against (see [`crate::access::client_ip`]).
pub const CLIENT_IP_HEADER: &str = "x-tollgate-client-ip";

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

/// The one answer applied to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward the request: authorized, within its limits and quotas. Nothing refuses it after.
    Allow(Allowed),
    /// Answer the client with an error and never reach the upstream.
    Deny(Refusal),
    /// Hold the request until the control plane answers.
    Pause(Callout),
}

/// An authorized request within its limits, on its way to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Identity headers for the upstream, as (lowercase name, value); the auth method goes
    /// along as [`AUTH_METHOD_HEADER`], the client's address as [`CLIENT_IP_HEADER`].
    pub set_headers: Rc<[(&'static str, String)]>,
    pub auth_method: AuthMethod,
    /// The user whose quotas the request counts against; empty when unverified.
    pub user_id: Rc<str>,
    /// What the request took from the user's quota allowances.
    pub taken: Vec<Taken>,
    /// Verdicts of the buckets the request was counted in, for the `X-RateLimit-*` headers.
    pub checked: Vec<Checked>,
}

/// The filter's own answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u32,
    /// The project's JSON error body.
    pub body: String,
    /// Headers beyond `content-type` and the `X-RateLimit-*` ones, such as `retry-after`.
    pub headers: Vec<(&'static str, String)>,
}

/// What a paused request asks the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Callout {
    /// The principal behind the request's credential.
    Lookup(Lookup),
    /// The `exact` limits of an otherwise allowed request, as `buckets`; `taken_here` are the
    /// draws already taken in this Envoy, given back if the answer refuses.
    ExactLimits {
        allowed: Allowed,
        buckets: Vec<BucketRef>,
        taken_here: Vec<Draw>,
    },
    /// New allowances of the user's `wanted` quotas, for a request the worker holds none
    /// for; `plan` is what it draws on, its local limits already taken.
    Allowances {
        allowed: Allowed,
        plan: Rc<Plan>,
        wanted: MeteredQuotas,
    },
}
