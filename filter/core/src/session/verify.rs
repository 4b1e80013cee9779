//! Verifying a session token: structure, then algorithm and key, then signature, then claims.

use super::claims::{self, Expectations, SessionClaims};
use super::error::SessionError;
use super::jws::CompactJws;
use super::keys::{Algorithm, KeySet};

/// Verifies `token`, a compact JWS signed by the control plane, at `now_secs` (Unix seconds).
///
/// No claim is read before the signature verifies, and the signature is checked only with the
/// key `kid` names and only under that key's own algorithm, so `alg: none`, `HS256` signed with
/// a public key, or an RSA header on an Ed25519 key are all refused. Never panics.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations,
    now_secs: i64,
) -> Result<SessionClaims, SessionError> {
    let jws = CompactJws::parse(token)?;
    let algorithm =
        Algorithm::from_header(&jws.header.alg).ok_or(SessionError::UnsupportedAlgorithm)?;
    let pinned = keys
        .algorithm_of(&jws.header.kid)
        .ok_or(SessionError::UnknownKey)?;
    if algorithm != pinned {
        return Err(SessionError::UnsupportedAlgorithm);
    }
    if !keys.signature_is_valid(
        &jws.header.kid,
        jws.signing_input.as_bytes(),
        &jws.signature,
    ) {
        return Err(SessionError::BadSignature);
    }
    claims::check(&jws.payload, expect, now_secs)
}
