//! The claims of a session token and the checks they must pass once its signature verifies.

use serde::Deserialize;

use super::error::SessionError;
use super::json;

/// What a session token must have been issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// The `iss` the control plane signs with.
    pub issuer: String,
    /// The audience this filter accepts; `aud` must be it or a list holding it.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds; a negative value counts as 0.
    pub leeway_secs: i64,
}

/// Who a verified session token authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    /// `sub`: the user id.
    pub user_id: String,
    /// `sid`: the session id, what a logout revokes.
    pub session_id: String,
    /// `tid`: the user's tenant; `None` when absent or empty.
    pub tenant_id: Option<String>,
    /// `groups`: the user's groups, empty when absent.
    pub groups: Vec<String>,
    /// `role`: the user's role, when the token carries one.
    pub role: Option<String>,
    /// `exp`: Unix seconds at which the token expires.
    pub expires_at: i64,
}

/// The claims as sent; every field is optional here so that a missing one gets its own error.
/// `iat` and unknown claims are not read.
#[derive(Deserialize)]
struct SentClaims {
    iss: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    sub: Option<String>,
    sid: Option<String>,
    tid: Option<String>,
    groups: Option<Vec<String>>,
    role: Option<String>,
}

/// `aud` is a single string or an array of strings (RFC 7519, section 4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|one| one == audience),
        }
    }
}

/// Reads the decoded payload of a token whose signature verified and checks it against
/// `expect` at `now_secs`.
///
/// Times are whole Unix seconds; a fractional or out-of-range `exp` or `nbf` is malformed.
pub(super) fn check(
    payload: &[u8],
    expect: &Expectations,
    now_secs: i64,
) -> Result<SessionClaims, SessionError> {
    let sent: SentClaims = json::from_object(payload).ok_or(SessionError::Malformed)?;
    if sent.iss.as_deref() != Some(expect.issuer.as_str()) {
        return Err(SessionError::WrongIssuer);
    }
    if !sent
        .aud
        .is_some_and(|audience| audience.names(&expect.audience))
    {
        return Err(SessionError::WrongAudience);
    }
    let leeway_secs = expect.leeway_secs.max(0);
    let expires_at = sent.exp.ok_or(SessionError::MissingClaim("exp"))?;
    if expires_at <= now_secs.saturating_sub(leeway_secs) {
        return Err(SessionError::Expired);
    }
    if sent
        .nbf
        .is_some_and(|not_before| not_before > now_secs.saturating_add(leeway_secs))
    {
        return Err(SessionError::NotYetValid);
    }
    Ok(SessionClaims {
        user_id: non_empty(sent.sub).ok_or(SessionError::MissingClaim("sub"))?,
        session_id: non_empty(sent.sid).ok_or(SessionError::MissingClaim("sid"))?,
        tenant_id: non_empty(sent.tid),
        groups: sent.groups.unwrap_or_default(),
        role: non_empty(sent.role),
        expires_at,
    })
}

fn non_empty(claim: Option<String>) -> Option<String> {
    claim.filter(|value| !value.is_empty())
}
