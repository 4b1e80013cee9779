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
const COOKIE_HEADER: &str = "cookie";
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
    let bearer_tokens: Vec<&[u8]> = values_of(headers, AUTHORIZATION_HEADER)
        .into_iter()
        .filter_map(bearer_token)
        .collect();
    let alongside_api_key = !values_of(headers, API_KEY_HEADER).is_empty();
    if let [token] = bearer_tokens.as_slice() {
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
    let has_key = alongside_api_key || !bearer_tokens.is_empty();
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
        .into_iter()
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

/// `cookie_header` without the session cookie, so the token never reaches the upstream;
/// `None` when nothing else remains.
pub fn without_session_cookie(cookie_header: &str) -> Option<String> {
    let kept: Vec<&str> = cookie_header
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && pair
                    .split_once('=')
                    .is_none_or(|(name, _)| name.trim() != SESSION_COOKIE)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Reads the API key from `X-API-Key`, or else from `Authorization: Bearer` (scheme matched
/// case-insensitively). `X-API-Key` wins when both are present.
///
/// Header names are matched case-insensitively; values are raw bytes because clients may send
/// bytes that are not UTF-8.
pub fn extract_credential<N, V>(
    headers: &[(N, V)],
    max_credential_bytes: usize,
    digester: &LocalDigester,
) -> Result<PresentedCredential, CredentialError>
where
    N: AsRef<str>,
    V: AsRef<[u8]>,
{
    let api_keys = values_of(headers, API_KEY_HEADER);
    if !api_keys.is_empty() {
        return single_key(
            &api_keys,
            CredentialSource::ApiKeyHeader,
            max_credential_bytes,
            digester,
        );
    }

    let bearer_tokens: Vec<&[u8]> = values_of(headers, AUTHORIZATION_HEADER)
        .into_iter()
        .filter_map(bearer_token)
        .collect();
    if !bearer_tokens.is_empty() {
        return single_key(
            &bearer_tokens,
            CredentialSource::AuthorizationBearer,
            max_credential_bytes,
            digester,
        );
    }

    Err(CredentialError::Missing)
}

fn values_of<'h, N, V>(headers: &'h [(N, V)], wanted_name: &str) -> Vec<&'h [u8]>
where
    N: AsRef<str>,
    V: AsRef<[u8]>,
{
    headers
        .iter()
        .filter(|(name, _)| name.as_ref().eq_ignore_ascii_case(wanted_name))
        .map(|(_, value)| value.as_ref().trim_ascii())
        .collect()
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
    candidates: &[&[u8]],
    source: CredentialSource,
    max_credential_bytes: usize,
    digester: &LocalDigester,
) -> Result<PresentedCredential, CredentialError> {
    match candidates {
        [key] if is_well_formed(key, max_credential_bytes) => Ok(PresentedCredential {
            source,
            local: digester.digest(key),
            raw: Box::from(*key),
            digest: OnceCell::new(),
        }),
        _ => Err(CredentialError::Invalid),
    }
}

fn is_well_formed(key: &[u8], max_credential_bytes: usize) -> bool {
    !key.is_empty() && key.len() <= max_credential_bytes && key.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION_TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln";

    #[test]
    fn a_bearer_session_token_is_a_session() {
        let bearer = format!("Bearer {SESSION_TOKEN}");
        assert_eq!(
            super::extract(&[("authorization", bearer.as_str())], MAX, &digester()),
            Ok(Presented::Session {
                token: SESSION_TOKEN.to_owned(),
                local: digester().digest(SESSION_TOKEN.as_bytes()),
                alongside_api_key: false,
                from_cookie: false,
            })
        );
    }

    #[test]
    fn the_session_cookie_is_a_session_when_no_key_is_sent() {
        let cookie = format!("theme=dark; tollgate_session={SESSION_TOKEN}; lang=en");
        assert_eq!(
            super::extract(&[("cookie", cookie.as_str())], MAX, &digester()),
            Ok(Presented::Session {
                token: SESSION_TOKEN.to_owned(),
                local: digester().digest(SESSION_TOKEN.as_bytes()),
                alongside_api_key: false,
                from_cookie: true,
            })
        );
        assert!(matches!(
            super::extract(
                &[("cookie", cookie.as_str()), ("x-api-key", "tg_k")],
                MAX,
                &digester()
            ),
            Ok(Presented::ApiKey(_))
        ));
        let twice = format!("tollgate_session={SESSION_TOKEN}; tollgate_session={SESSION_TOKEN}");
        assert_eq!(
            super::extract(&[("cookie", twice.as_str())], MAX, &digester()),
            Err(CredentialError::Missing)
        );
    }

    #[test]
    fn the_session_cookie_is_cut_from_the_cookie_header() {
        assert_eq!(
            without_session_cookie("theme=dark; tollgate_session=a.b.c; lang=en"),
            Some("theme=dark; lang=en".to_owned())
        );
        assert_eq!(without_session_cookie("tollgate_session=a.b.c"), None);
        assert_eq!(
            without_session_cookie("tollgate_sessionx=1"),
            Some("tollgate_sessionx=1".to_owned())
        );
    }

    #[test]
    fn a_session_wins_over_an_api_key_and_the_pair_is_flagged() {
        let bearer = format!("Bearer {SESSION_TOKEN}");
        assert_eq!(
            super::extract(
                &[("x-api-key", "tg_k"), ("authorization", bearer.as_str())],
                MAX,
                &digester()
            ),
            Ok(Presented::Session {
                token: SESSION_TOKEN.to_owned(),
                local: digester().digest(SESSION_TOKEN.as_bytes()),
                alongside_api_key: true,
                from_cookie: false,
            })
        );
    }

    #[test]
    fn a_bearer_api_key_is_still_a_key() {
        assert_eq!(
            super::extract(
                &[("authorization", "Bearer tg_u1_secret")],
                MAX,
                &digester()
            ),
            presented(CredentialSource::AuthorizationBearer, "tg_u1_secret").map(Presented::ApiKey)
        );
    }

    const MAX: usize = 64;

    fn digester() -> LocalDigester {
        LocalDigester::new([1; 16])
    }

    fn extract(headers: &[(&str, &str)]) -> Result<PresentedCredential, CredentialError> {
        extract_credential(headers, MAX, &digester())
    }

    fn presented(
        source: CredentialSource,
        key: &str,
    ) -> Result<PresentedCredential, CredentialError> {
        Ok(PresentedCredential {
            source,
            local: digester().digest(key.as_bytes()),
            raw: Box::from(key.as_bytes()),
            digest: OnceCell::new(),
        })
    }

    #[test]
    fn the_shared_digest_is_the_sha256_of_the_key_and_debug_hides_the_key() {
        let presented = extract(&[("x-api-key", "tg_u1_secret")]).expect("a key");

        assert_eq!(presented.digest(), KeyDigest::of_key(b"tg_u1_secret"));
        assert!(!format!("{presented:?}").contains("secret"));
    }

    #[test]
    fn reads_the_api_key_header() {
        assert_eq!(
            extract(&[("x-api-key", "tg_u1_secret")]),
            presented(CredentialSource::ApiKeyHeader, "tg_u1_secret")
        );
    }

    #[test]
    fn header_names_match_in_any_case() {
        assert_eq!(
            extract(&[("X-API-Key", "tg_u1_secret")]),
            presented(CredentialSource::ApiKeyHeader, "tg_u1_secret")
        );
        assert_eq!(
            extract(&[("Authorization", "Bearer tg_u1_secret")]),
            presented(CredentialSource::AuthorizationBearer, "tg_u1_secret")
        );
    }

    #[test]
    fn reads_a_bearer_authorization() {
        assert_eq!(
            extract(&[("authorization", "Bearer tg_u1_secret")]),
            presented(CredentialSource::AuthorizationBearer, "tg_u1_secret")
        );
    }

    #[test]
    fn bearer_scheme_matches_in_any_case() {
        for value in ["bearer k3y", "BEARER k3y", "bEaReR k3y"] {
            assert_eq!(
                extract(&[("authorization", value)]),
                presented(CredentialSource::AuthorizationBearer, "k3y"),
                "for {value:?}"
            );
        }
    }

    #[test]
    fn spaces_around_the_key_are_not_part_of_it() {
        assert_eq!(
            extract(&[("authorization", "Bearer   k3y ")]),
            presented(CredentialSource::AuthorizationBearer, "k3y")
        );
        assert_eq!(
            extract(&[("x-api-key", " k3y\t")]),
            presented(CredentialSource::ApiKeyHeader, "k3y")
        );
    }

    #[test]
    fn keys_of_any_format_are_accepted() {
        for key in ["legacy-0001", "a", "AKIA/with+symbols=", "tg_u_x"] {
            assert_eq!(
                extract(&[("x-api-key", key)]),
                presented(CredentialSource::ApiKeyHeader, key),
                "for {key:?}"
            );
        }
    }

    #[test]
    fn api_key_header_wins_over_a_bearer() {
        assert_eq!(
            extract(&[("authorization", "Bearer other"), ("x-api-key", "k3y")]),
            presented(CredentialSource::ApiKeyHeader, "k3y")
        );
    }

    #[test]
    fn no_credential_header_is_missing() {
        assert_eq!(extract(&[]), Err(CredentialError::Missing));
        assert_eq!(extract(&[("accept", "*/*")]), Err(CredentialError::Missing));
    }

    #[test]
    fn other_authorization_schemes_are_missing() {
        for value in ["Basic dXNlcjpwYXNz", "Bearerk3y", "Token k3y"] {
            assert_eq!(
                extract(&[("authorization", value)]),
                Err(CredentialError::Missing),
                "for {value:?}"
            );
        }
    }

    #[test]
    fn empty_key_is_invalid() {
        for headers in [
            [("x-api-key", "")],
            [("x-api-key", "   ")],
            [("authorization", "Bearer")],
            [("authorization", "Bearer   ")],
        ] {
            assert_eq!(
                extract(&headers),
                Err(CredentialError::Invalid),
                "for {headers:?}"
            );
        }
    }

    #[test]
    fn key_at_the_size_limit_is_accepted_and_one_byte_more_is_invalid() {
        let at_limit = "k".repeat(MAX);
        let over_limit = "k".repeat(MAX + 1);

        assert_eq!(
            extract(&[("x-api-key", at_limit.as_str())]),
            presented(CredentialSource::ApiKeyHeader, &at_limit)
        );
        assert_eq!(
            extract(&[("x-api-key", over_limit.as_str())]),
            Err(CredentialError::Invalid)
        );
    }

    #[test]
    fn huge_key_is_invalid() {
        let huge = format!("Bearer {}", "k".repeat(1 << 20));

        assert_eq!(
            extract(&[("authorization", huge.as_str())]),
            Err(CredentialError::Invalid)
        );
    }

    #[test]
    fn key_with_non_visible_ascii_is_invalid() {
        for key in [
            "k3y with space",
            "k3y\u{7f}",
            "k3y\u{1}",
            "ключ",
            "k3y\u{e9}",
        ] {
            assert_eq!(
                extract(&[("x-api-key", key)]),
                Err(CredentialError::Invalid),
                "for {key:?}"
            );
        }
    }

    #[test]
    fn key_bytes_that_are_not_utf8_are_invalid() {
        let headers = [("x-api-key", vec![b'k', 0xff, b'y'])];

        assert_eq!(
            extract_credential(&headers, MAX, &digester()),
            Err(CredentialError::Invalid)
        );
    }

    #[test]
    fn two_api_key_headers_are_invalid() {
        assert_eq!(
            extract(&[("x-api-key", "one"), ("x-api-key", "two")]),
            Err(CredentialError::Invalid)
        );
    }

    #[test]
    fn two_bearer_authorizations_are_invalid() {
        assert_eq!(
            extract(&[
                ("authorization", "Bearer one"),
                ("authorization", "Bearer two")
            ]),
            Err(CredentialError::Invalid)
        );
    }

    #[test]
    fn a_bearer_beside_another_scheme_is_read() {
        assert_eq!(
            extract(&[
                ("authorization", "Basic dXNlcjpwYXNz"),
                ("authorization", "Bearer k3y")
            ]),
            presented(CredentialSource::AuthorizationBearer, "k3y")
        );
    }

    #[test]
    fn an_invalid_api_key_header_is_not_rescued_by_a_bearer() {
        assert_eq!(
            extract(&[("x-api-key", ""), ("authorization", "Bearer k3y")]),
            Err(CredentialError::Invalid)
        );
    }
}
