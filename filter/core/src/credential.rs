//! Finding the credential in the request headers and checking its shape: an API key, or a
//! session token in `Authorization: Bearer`.
//!
//! The raw key is copied out of the headers into [`PresentedCredential`], which hands out only
//! its digests; nothing beyond this module sees it.

use std::cell::OnceCell;
use std::fmt;

use crate::digest::KeyDigest;
use crate::local_digest::{LocalDigest, LocalDigester};
use crate::session::looks_like_jwt;

const API_KEY_HEADER: &str = "x-api-key";
const AUTHORIZATION_HEADER: &str = "authorization";
pub(crate) const COOKIE_HEADER: &str = "cookie";
/// The cookie the control plane sets at login, holding the session's access token.
pub const SESSION_COOKIE: &str = "tollgate_session";
const BEARER_SCHEME: &[u8] = b"bearer";

/// The header an API key was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `X-API-Key: <key>`.
    ApiKeyHeader,
    /// `Authorization: Bearer <key>`.
    AuthorizationBearer,
}

/// An API key the client presented.
#[derive(Clone)]
pub struct PresentedCredential {
    /// Where the key came from, so that exactly that header is removed before forwarding.
    pub source: CredentialSource,
    /// The key's name in this VM's own cache.
    pub local: LocalDigest,
    raw: Box<[u8]>,
    digest: OnceCell<KeyDigest>,
}

impl PresentedCredential {
    /// SHA-256 of the key: its name in shared data and at the control plane. Computed on the
    /// first call, which only a miss in this VM's cache makes.
    pub fn digest(&self) -> KeyDigest {
        *self.digest.get_or_init(|| KeyDigest::of_key(&self.raw))
    }
}

/// The same key from the same header, by its local digest: whether the SHA-256 was computed
/// yet does not matter, and the raw keys are never compared.
impl PartialEq for PresentedCredential {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.local == other.local
    }
}

impl Eq for PresentedCredential {}

impl fmt::Debug for PresentedCredential {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PresentedCredential")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Why no usable API key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Neither `X-API-Key` nor a Bearer `Authorization` header.
    Missing,
    /// A key is present but cannot be a key: empty, too long, not visible ASCII, or sent twice.
    /// Answered exactly like an unknown key.
    Invalid,
}

/// What the client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    ApiKey(PresentedCredential),
    /// A session token from `Authorization: Bearer` or the session cookie; it wins over an
    /// API key sent alongside.
    Session {
        token: String,
        /// The token's name in this VM's cache of verified tokens.
        local: LocalDigest,
        /// An API key came too: logged and counted, never used.
        alongside_api_key: bool,
        /// Whether the token came in the session cookie (else in `Authorization`).
        from_cookie: bool,
    },
}

/// Reads the credential: a session token when `Authorization: Bearer` holds one (it wins over
/// an `X-API-Key` sent with it), else the API key as [`extract_credential`] finds it.
pub fn extract<N, V>(
    headers: &[(N, V)],
    max_credential_bytes: usize,
    digester: &LocalDigester,
) -> Result<Presented, CredentialError>
where
    N: AsRef<str>,
    V: AsRef<[u8]>,
{
    let bearer_tokens =
        Found::of(values_of(headers, AUTHORIZATION_HEADER).filter_map(bearer_token));
    let alongside_api_key = values_of(headers, API_KEY_HEADER).next().is_some();
    if let Some(token) = bearer_tokens.single() {
        if looks_like_jwt(token) {
            let token = std::str::from_utf8(token).map_err(|_| CredentialError::Invalid)?;
            return Ok(Presented::Session {
                local: digester.digest(token.as_bytes()),
                token: token.to_owned(),
                alongside_api_key,
                from_cookie: false,
            });
        }
    }
    let has_key = alongside_api_key || bearer_tokens.first.is_some();
    if !has_key {
        if let Some(token) = session_cookie(headers) {
            return Ok(Presented::Session {
                local: digester.digest(token.as_bytes()),
                token,
                alongside_api_key: false,
                from_cookie: true,
            });
        }
    }
    extract_credential(headers, max_credential_bytes, digester).map(Presented::ApiKey)
}

/// The session cookie's token, when exactly one such cookie holds something token-shaped.
fn session_cookie<N, V>(headers: &[(N, V)]) -> Option<String>
where
    N: AsRef<str>,
    V: AsRef<[u8]>,
{
    let mut found = values_of(headers, COOKIE_HEADER)
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token.trim());
    match (found.next(), found.next()) {
        (Some(token), None) if looks_like_jwt(token.as_bytes()) => Some(token.to_owned()),
        _ => None,
    }
}

/// Reads the API key from `X-API-Key`, or else from `Authorization: Bearer` (scheme matched
/// case-insensitively). `X-API-Key` wins when both are present.
///
/// Header names are matched case-insensitively; values are raw bytes because clients may send
/// bytes that are not UTF-8.
pub fn extract_credential<N: AsRef<str>, V: AsRef<[u8]>>(
    headers: &[(N, V)],
    max_credential_bytes: usize,
    digester: &LocalDigester,
) -> Result<PresentedCredential, CredentialError> {
    let api_keys = Found::of(values_of(headers, API_KEY_HEADER));
    if api_keys.first.is_some() {
        return single_key(
            api_keys,
            CredentialSource::ApiKeyHeader,
            max_credential_bytes,
            digester,
        );
    }

    let bearer_tokens =
        Found::of(values_of(headers, AUTHORIZATION_HEADER).filter_map(bearer_token));
    if bearer_tokens.first.is_some() {
        return single_key(
            bearer_tokens,
            CredentialSource::AuthorizationBearer,
            max_credential_bytes,
            digester,
        );
    }

    Err(CredentialError::Missing)
}

fn values_of<'h, N, V>(
    headers: &'h [(N, V)],
    wanted_name: &'h str,
) -> impl Iterator<Item = &'h [u8]>
where
    N: AsRef<str>,
    V: AsRef<[u8]>,
{
    headers
        .iter()
        .filter(move |(name, _)| name.as_ref().eq_ignore_ascii_case(wanted_name))
        .map(|(_, value)| value.as_ref().trim_ascii())
}

/// The first of some header values, and whether there were more: all a credential needs
/// to know, without collecting them.
#[derive(Clone, Copy)]
struct Found<'h> {
    first: Option<&'h [u8]>,
    several: bool,
}

impl<'h> Found<'h> {
    fn of(mut values: impl Iterator<Item = &'h [u8]>) -> Self {
        let first = values.next();
        Self {
            first,
            several: first.is_some() && values.next().is_some(),
        }
    }

    /// The value when there was exactly one.
    fn single(self) -> Option<&'h [u8]> {
        self.first.filter(|_| !self.several)
    }
}

/// The credential of an `Authorization` value whose scheme is Bearer; `None` for other schemes.
fn bearer_token(authorization: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = match authorization.iter().position(|&byte| byte == b' ') {
        Some(space) => authorization.split_at(space),
        None => (authorization, &[][..]),
    };
    scheme
        .eq_ignore_ascii_case(BEARER_SCHEME)
        .then(|| token.trim_ascii_start())
}

/// Two keys in one request are ambiguous, so they are refused rather than one picked.
fn single_key(
    candidates: Found<'_>,
    source: CredentialSource,
    max_credential_bytes: usize,
    digester: &LocalDigester,
) -> Result<PresentedCredential, CredentialError> {
    match candidates.single() {
        Some(key) if is_well_formed(key, max_credential_bytes) => Ok(PresentedCredential {
            source,
            local: digester.digest(key),
            raw: Box::from(key),
            digest: OnceCell::new(),
        }),
        _ => Err(CredentialError::Invalid),
    }
}

fn is_well_formed(key: &[u8], max_credential_bytes: usize) -> bool {
    !key.is_empty() && key.len() <= max_credential_bytes && key.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests;
