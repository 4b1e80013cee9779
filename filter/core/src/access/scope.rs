//! Key scopes: which methods and path prefixes a key may call.
//!
//! One scope is `[METHOD ]PATH_PREFIX`, e.g. `/v1/images`, `GET /v1/images`, `* /v1/`, or
//! [`ADMIN_API_SCOPE`]. The prefix matches on segment boundaries against the path without its
//! query string. Prefixes are compared as written, so Envoy must normalise paths first (see
//! [`super`]); paths that are not in normal form are refused, never matched.
//!
//! The control plane's admin API honours the same scopes: a call is within them when a prefix
//! covers its own path (`GET /api/v1/users`) or the key holds [`ADMIN_API_SCOPE`].

use std::fmt;

use super::excerpt::excerpt;
use super::path::{find_flaw, PathFlaw};

/// Most scopes one key may carry.
const MAX_SCOPES: usize = 50;
/// Longest scope string, in characters.
const MAX_SCOPE_CHARS: usize = 200;
/// The method that stands for every method.
const ANY_METHOD: &str = "*";
/// The scope that admits a key to the whole admin API, and to nothing behind Envoy.
pub const ADMIN_API_SCOPE: &str = "admin:*";

/// The scopes of a key, parsed once; no scopes means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    scopes: Vec<Scope>,
    /// [`ADMIN_API_SCOPE`] is one of them.
    admin_api: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    /// `None` for any method.
    method: Option<String>,
    prefix: String,
}

impl Scopes {
    /// Parses a key's scope strings, refusing the first one that is malformed or would be
    /// unsafe to match (see [`ScopeProblem`]).
    pub fn parse(scopes: &[String]) -> Result<Self, ScopeError> {
        if scopes.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany {
                count: scopes.len(),
            });
        }
        let admin_api = scopes.iter().any(|scope| scope == ADMIN_API_SCOPE);
        let scopes = scopes
            .iter()
            .filter(|scope| *scope != ADMIN_API_SCOPE)
            .map(|scope| {
                Scope::parse(scope).map_err(|problem| ScopeError::Invalid {
                    scope: excerpt(scope),
                    problem,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { scopes, admin_api })
    }

    /// No scopes at all: every route and the whole admin API, as far as the user may go.
    #[must_use]
    pub fn is_unrestricted(&self) -> bool {
        self.scopes.is_empty() && !self.admin_api
    }

    /// Whether a request with this method and path (query string allowed) is within the scopes.
    ///
    /// Methods compare exactly (HTTP methods are case-sensitive; `GET` does not cover `HEAD`).
    /// A path that does not start with `/` or has a [`PathFlaw`] is refused whatever the scopes,
    /// unless there are none.
    #[must_use]
    pub fn permits(&self, method: &str, path: &str) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        if !path.starts_with('/') || find_flaw(path).is_some() {
            return false;
        }
        self.scopes.iter().any(|scope| scope.permits(method, path))
    }

    /// Whether a call of the control plane's admin API is within the scopes: by
    /// [`ADMIN_API_SCOPE`], or by a prefix that covers the call's own path.
    #[must_use]
    pub fn permits_admin_api(&self, method: &str, path: &str) -> bool {
        self.admin_api || self.permits(method, path)
    }

    /// Whether every request `narrower` permits, through Envoy or to the admin API, these
    /// scopes permit too: a key holding these may hand out a key holding `narrower`.
    #[must_use]
    pub fn covers(&self, narrower: &Self) -> bool {
        if self.is_unrestricted() {
            return true;
        }
        if narrower.is_unrestricted() || (narrower.admin_api && !self.admin_api) {
            return false;
        }
        narrower
            .scopes
            .iter()
            .all(|inner| self.scopes.iter().any(|outer| outer.covers(inner)))
    }
}

impl Scope {
    fn parse(scope: &str) -> Result<Self, ScopeProblem> {
        if scope.is_empty() {
            return Err(ScopeProblem::Empty);
        }
        if scope.chars().count() > MAX_SCOPE_CHARS {
            return Err(ScopeProblem::TooLong);
        }
        let (method, prefix) = match scope.split_once(' ') {
            Some((method, prefix)) if !scope.starts_with('/') => (Some(method), prefix),
            _ => (None, scope),
        };
        let method = match method {
            None | Some(ANY_METHOD) => None,
            Some(method) if is_upper_case_method(method) => Some(method.to_owned()),
            Some(_) => return Err(ScopeProblem::InvalidMethod),
        };
        check_prefix(prefix)?;
        Ok(Self {
            method,
            prefix: prefix.to_owned(),
        })
    }

    fn permits(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|wanted| wanted == method)
            && prefix_matches(&self.prefix, path)
    }

    /// Every path `inner`'s prefix matches, this prefix matches too (segment boundaries make
    /// that so whenever this prefix matches `inner`'s), for every method `inner` allows.
    fn covers(&self, inner: &Self) -> bool {
        self.method
            .as_deref()
            .is_none_or(|wanted| inner.method.as_deref() == Some(wanted))
            && prefix_matches(&self.prefix, &inner.prefix)
    }
}

/// `/v1/images` matches `/v1/images` and `/v1/images/...` but not `/v1/imagesX`; a prefix that
/// ends in `/` (including `/` itself) matches every path that starts with it.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
}

/// An RFC 9110 method token without lower-case letters.
fn is_upper_case_method(method: &str) -> bool {
    !method.is_empty()
        && method.bytes().all(|byte| {
            byte.is_ascii_uppercase() || byte.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&byte)
        })
}

fn check_prefix(prefix: &str) -> Result<(), ScopeProblem> {
    if !prefix.starts_with('/') {
        return Err(ScopeProblem::MissingLeadingSlash);
    }
    // Request paths arrive percent-encoded, so any other character could never match.
    if !prefix.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ScopeProblem::NotVisibleAscii);
    }
    if prefix.contains(['?', '#']) {
        return Err(ScopeProblem::QueryOrFragment);
    }
    match find_flaw(prefix) {
        Some(flaw) => Err(ScopeProblem::UnsafePath(flaw)),
        None => Ok(()),
    }
}

/// Why a key's scopes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeError {
    /// More than the 50 scopes one key may carry.
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// One scope is malformed.
    Invalid {
        /// The start of the scope string.
        scope: String,
        /// What is wrong with it.
        problem: ScopeProblem,
    },
}

impl fmt::Display for ScopeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany { count } => write!(
                formatter,
                "{count} scopes given; a key may carry at most {MAX_SCOPES}"
            ),
            Self::Invalid { scope, problem } => write!(formatter, "scope {scope:?}: {problem}"),
        }
    }
}

impl std::error::Error for ScopeError {}

/// What is wrong with one scope string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeProblem {
    /// The empty string.
    Empty,
    /// Longer than 200 characters.
    TooLong,
    /// The method is neither `*` nor an upper-case HTTP method token.
    InvalidMethod,
    /// The path prefix does not start with `/` (or a method is not followed by one space).
    MissingLeadingSlash,
    /// The path prefix contains whitespace, control or non-ASCII characters.
    NotVisibleAscii,
    /// The path prefix contains `?` or `#`; scopes match the path alone.
    QueryOrFragment,
    /// The path prefix is not in normal form, so no normalised request could match it.
    UnsafePath(PathFlaw),
}

impl fmt::Display for ScopeProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => formatter.write_str("is empty"),
            Self::TooLong => write!(formatter, "is longer than {MAX_SCOPE_CHARS} characters"),
            Self::InvalidMethod => {
                formatter.write_str("the method must be `*` or an upper-case HTTP method")
            }
            Self::MissingLeadingSlash => formatter.write_str("the path prefix must start with `/`"),
            Self::NotVisibleAscii => formatter.write_str(
                "the path prefix must be visible ASCII (no whitespace; percent-encode the rest)",
            ),
            Self::QueryOrFragment => {
                formatter.write_str("the path prefix must not contain `?` or `#`")
            }
            Self::UnsafePath(flaw) => write!(formatter, "the path prefix {flaw}"),
        }
    }
}

#[cfg(test)]
mod tests;
