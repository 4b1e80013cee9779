//! The compact JWS serialization: three base64url segments, the first a JOSE header.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;

use super::error::SessionError;
use super::json;

/// Longer tokens are refused before any decoding; session tokens are a few hundred bytes.
pub const MAX_TOKEN_BYTES: usize = 8192;

const JWT_TYPE: &str = "JWT";

/// A token split and decoded, its signature not yet checked.
pub(super) struct CompactJws<'t> {
    /// The protected header.
    pub(super) header: Header,
    /// `<header>.<payload>` exactly as sent: the bytes the signature covers.
    pub(super) signing_input: &'t str,
    /// The decoded payload, to be read only once the signature verifies.
    pub(super) payload: Vec<u8>,
    /// The decoded signature.
    pub(super) signature: Vec<u8>,
}

/// The JOSE header fields the filter reads; any other field is ignored, and keys come only from
/// the key set (never from `jwk`, `jku` or `x5u`).
#[derive(Deserialize)]
pub(super) struct Header {
    pub(super) alg: String,
    pub(super) kid: String,
    typ: Option<String>,
    #[serde(default)]
    crit: Presence,
}

/// Whether a header field is present at all, whatever its value (`null` included).
#[derive(Default)]
struct Presence(bool);

impl<'de> Deserialize<'de> for Presence {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        Ok(Self(true))
    }
}

impl<'t> CompactJws<'t> {
    /// Splits and decodes `token`. Its header must be a JSON object with string `alg` and `kid`,
    /// no `crit` (no extension is understood, so none may be required), and a `typ`, if any, of
    /// `JWT`.
    pub(super) fn parse(token: &'t str) -> Result<Self, SessionError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(SessionError::Malformed);
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or(SessionError::Malformed)?;
        if payload.contains('.') {
            return Err(SessionError::Malformed);
        }
        let header: Header = decode(header)
            .and_then(|header| json::from_object(&header))
            .ok_or(SessionError::Malformed)?;
        if header.crit.0 || !header.typ.as_deref().is_none_or(is_jwt_type) {
            return Err(SessionError::Malformed);
        }
        Ok(Self {
            header,
            signing_input,
            payload: decode(payload).ok_or(SessionError::Malformed)?,
            signature: decode(signature).ok_or(SessionError::Malformed)?,
        })
    }
}

/// Whether `credential` is shaped like a JWT rather than an API key: exactly two dots, and a
/// first segment that decodes to a JSON object. Credentials longer than [`MAX_TOKEN_BYTES`]
/// never are, so this stays cheap on any input.
pub fn looks_like_jwt(credential: &[u8]) -> bool {
    if credential.len() > MAX_TOKEN_BYTES
        || credential.iter().filter(|&&byte| byte == b'.').count() != 2
    {
        return false;
    }
    credential
        .split(|&byte| byte == b'.')
        .next()
        .and_then(decode)
        .and_then(|header| json::from_object::<IgnoredAny>(&header))
        .is_some()
}

/// Unpadded base64url, as JWS requires: `=`, whitespace, the standard alphabet's `+` and `/`,
/// and non-zero trailing bits are all refused.
fn decode(segment: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

fn is_jwt_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case(JWT_TYPE)
}
