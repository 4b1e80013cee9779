//! Session tokens: JWTs the control plane signs at login, verified here with no network call.
//!
//! The control plane sends its public keys ([`VerificationKey`]); the filter builds a
//! [`KeySet`] from them once, then [`verify`] checks each token with the key its `kid` names and
//! that key's one algorithm. [`VerifiedTokens`] remembers the tokens that verified, so that a
//! token's signature is checked once per VM rather than on every request.

mod cache;
mod claims;
mod error;
mod json;
mod jws;
mod keys;
mod verify;

#[cfg(test)]
mod tests;

pub use cache::VerifiedTokens;
pub use claims::{Expectations, SessionClaims};
pub use error::SessionError;
pub use jws::{looks_like_jwt, MAX_TOKEN_BYTES};
pub use keys::{KeySet, KeySetError, VerificationKey};
pub use verify::verify;
