//! Which client headers must not reach the upstream, and what is left of the `Cookie` header.

use crate::credential::{CredentialSource, COOKIE_HEADER, SESSION_COOKIE};

/// The filter's own header names start with this; a client's copy is removed in any case, and
/// with `_` for any `-` (many upstream frameworks read `x_tollgate_user_id` as
/// `x-tollgate-user-id`, and Envoys that allow underscores in names pass it on).
const IDENTITY_HEADER_PREFIX: &[u8] = b"x-tollgate-";

/// What to take out of an allowed request before it is forwarded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scrub {
    /// Lowercase names of the headers to remove, each once, in request order.
    pub remove: Vec<String>,
    /// The `Cookie` header to forward instead of the client's when it held Tollgate's session
    /// cookie; `Some(None)` removes the header.
    pub cookie: Option<Option<String>>,
}

/// What must not reach the upstream: `x-api-key`, `authorization` when it carried the key,
/// every `x-tollgate-*` header the client sent (only the filter may set those), and the
/// session cookie, however the request authenticated. One pass over the headers; nothing is
/// allocated unless there is something to remove.
pub fn scrub<N, V>(headers: &[(N, V)], key_source: CredentialSource) -> Scrub
where
    N: AsRef<str>,
    V: AsRef<[u8]>,
{
    let mut remove: Vec<String> = Vec::new();
    let mut session_cookie_sent = false;
    for (name, value) in headers {
        let name = name.as_ref();
        if name.eq_ignore_ascii_case(COOKIE_HEADER) {
            session_cookie_sent = session_cookie_sent || holds_session_cookie(value.as_ref());
            continue;
        }
        let carries_the_key = name.eq_ignore_ascii_case("x-api-key")
            || (name.eq_ignore_ascii_case("authorization")
                && key_source == CredentialSource::AuthorizationBearer);
        if carries_the_key || is_identity_header(name) {
            let name = name.to_ascii_lowercase();
            if !remove.contains(&name) {
                remove.push(name);
            }
        }
    }
    let cookie = session_cookie_sent.then(|| without_session_cookie(headers));
    Scrub { remove, cookie }
}

/// Whether `name` is `x-tollgate-*` in any case, each `-` of the prefix possibly a `_`.
fn is_identity_header(name: &str) -> bool {
    name.len() >= IDENTITY_HEADER_PREFIX.len()
        && name
            .bytes()
            .zip(IDENTITY_HEADER_PREFIX)
            .all(|(sent, &ours)| {
                sent.to_ascii_lowercase() == ours || (ours == b'-' && sent == b'_')
            })
}

/// Whether a `Cookie` value holds a cookie named like Tollgate's session cookie.
fn holds_session_cookie(cookie_header: &[u8]) -> bool {
    cookie_header
        .split(|&byte| byte == b';')
        .filter_map(|pair| {
            let equals = pair.iter().position(|&byte| byte == b'=')?;
            pair.get(..equals)
        })
        .any(|name| name.trim_ascii() == SESSION_COOKIE.as_bytes())
}

/// The request's cookies without the session cookie, in one header; `None` when nothing else
/// remains. A `Cookie` header that is not UTF-8 is dropped with it.
fn without_session_cookie<N, V>(headers: &[(N, V)]) -> Option<String>
where
    N: AsRef<str>,
    V: AsRef<[u8]>,
{
    let kept: Vec<&str> = headers
        .iter()
        .filter(|(name, _)| name.as_ref().eq_ignore_ascii_case(COOKIE_HEADER))
        .filter_map(|(_, value)| std::str::from_utf8(value.as_ref()).ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim_ascii)
        .filter(|pair| {
            !pair.is_empty()
                && pair
                    .split_once('=')
                    .is_none_or(|(name, _)| name.trim_ascii() != SESSION_COOKIE)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests;
