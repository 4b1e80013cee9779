//! The links mailed to people: verify an email, reset a password. A link carries a token
//! signed (HS256, under a key derived from the server secret) for one purpose, one user and a
//! short time, and bound to what it acts on: the email to verify, or the password hash the
//! reset replaces, so that a reset link stops working once the password changes (used, or
//! changed another way). Nothing is stored for a link.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::derived_key::derive_key;
use crate::domain::ids::UserId;
use crate::domain::now;

const ISSUER: &str = "tollgate";
/// Separates this key from every other one derived from the server secret.
const KEY_CONTEXT: &[u8] = b"tollgate email links v1";

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    VerifyEmail,
    ResetPassword,
}

impl LinkPurpose {
    fn audience(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify-email",
            Self::ResetPassword => "reset-password",
        }
    }
}

/// Why a link's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link has expired")]
    Expired,
    #[error("the link is not valid")]
    Invalid,
}

#[derive(Debug, Serialize, Deserialize)]
struct LinkClaims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
    /// SHA-256 of what the link acts on, hex.
    bnd: String,
}

/// Signs and checks link tokens.
#[derive(Clone)]
pub struct EmailLinks {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl EmailLinks {
    pub fn new(server_secret: &[u8]) -> Self {
        let key = derive_key(server_secret, KEY_CONTEXT);
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
        }
    }

    /// A token for `purpose` on `user`, bound to `subject` (the email in lower case, as emails
    /// are unique whatever their case; or the password hash), valid for `ttl_secs`.
    pub fn issue(
        &self,
        purpose: LinkPurpose,
        user: &UserId,
        subject: &str,
        ttl_secs: i64,
    ) -> String {
        let issued_at = now().timestamp();
        let claims = LinkClaims {
            iss: ISSUER.into(),
            aud: purpose.audience().into(),
            sub: user.as_str().into(),
            iat: issued_at,
            exp: issued_at + ttl_secs,
            bnd: binding(subject),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_else(|_| unreachable!("HS256 signs any claims that serialize"))
    }

    /// The user a token for `purpose` names, once its signature, purpose and expiry are
    /// checked. The caller then checks [`LinkToken::binds`] against what the user has now.
    pub fn open(&self, token: &str, purpose: LinkPurpose) -> Result<LinkToken, LinkError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[purpose.audience()]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<LinkClaims>(token, &self.decoding, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => LinkError::Expired,
                _ => LinkError::Invalid,
            })?
            .claims;
        Ok(LinkToken {
            user: UserId::from_string(claims.sub),
            binding: claims.bnd,
        })
    }
}

/// A link token whose signature, purpose and expiry held.
#[derive(Debug)]
pub struct LinkToken {
    pub user: UserId,
    binding: String,
}

impl LinkToken {
    /// Whether the token was issued for `subject` (compared in constant time).
    pub fn binds(&self, subject: &str) -> bool {
        bool::from(self.binding.as_bytes().ct_eq(binding(subject).as_bytes()))
    }
}

fn binding(subject: &str) -> String {
    hex::encode(Sha256::digest(subject.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> EmailLinks {
        EmailLinks::new(b"server secret")
    }

    #[test]
    fn a_token_opens_for_its_purpose_and_binds_its_subject_only() {
        let user = UserId::from_string("u_1".into());
        let token = links().issue(LinkPurpose::VerifyEmail, &user, "ann@example.com", 60);
        let opened = links()
            .open(&token, LinkPurpose::VerifyEmail)
            .expect("valid");
        assert_eq!(opened.user, user);
        assert!(opened.binds("ann@example.com"));
        assert!(!opened.binds("bob@example.com"));
        assert_eq!(
            links().open(&token, LinkPurpose::ResetPassword).err(),
            Some(LinkError::Invalid)
        );
        assert_eq!(
            EmailLinks::new(b"another secret")
                .open(&token, LinkPurpose::VerifyEmail)
                .err(),
            Some(LinkError::Invalid)
        );
    }

    #[test]
    fn expired_and_tampered_tokens_are_refused() {
        let user = UserId::from_string("u_1".into());
        let expired = links().issue(LinkPurpose::ResetPassword, &user, "hash", -1);
        assert_eq!(
            links().open(&expired, LinkPurpose::ResetPassword).err(),
            Some(LinkError::Expired)
        );
        let token = links().issue(LinkPurpose::ResetPassword, &user, "hash", 60);
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(
            links().open(&tampered, LinkPurpose::ResetPassword).err(),
            Some(LinkError::Invalid)
        );
    }
}
