//! Multi-factor logins: who must use a second factor, and the challenge that carries a login
//! from its verified password to its second factor (`POST /api/v1/auth/mfa`).
//!
//! A challenge is sealed with the server secret, so a client can neither read nor forge it;
//! it names the user, the login method and the client address of the attempt, and expires
//! soon. Once it has produced a session it is spent (see the store's `spend_mfa_challenge`).

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::sealing::Sealer;
use super::session::LoginMethod;
use crate::accounts::user::{Role, User};
use crate::domain::ids::UserId;
use crate::domain::Timestamp;

const SEAL_CONTEXT: &[u8] = b"tollgate mfa challenge v1";
/// The names under which wrong second factors are counted (see
/// [`super::lockout::AccountLockout::in_key_space`]), each followed by a user id.
pub const MFA_LOCKOUT_KEY_SPACE: &str = "mfa";
/// Random bytes naming a challenge.
const CHALLENGE_ID_BYTES: usize = 16;

/// Second factors as configured (`auth.mfa.*`).
#[derive(Debug, Clone)]
pub struct MfaPolicy {
    /// What authenticator apps show the account under.
    pub issuer: String,
    /// How long a login has to give its second factor.
    pub challenge_ttl: Duration,
    /// Roles whose users must use a second factor, whatever their own setting.
    pub required_for_roles: Vec<Role>,
}

impl MfaPolicy {
    /// Whether `user` must log in with a second factor: an admin required it of them, or of
    /// their role.
    pub fn required_for(&self, user: &User) -> bool {
        user.mfa_required || self.required_for_roles.contains(&user.role)
    }
}

/// A login whose password was right and that now needs its second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaChallenge {
    /// Random; a spent challenge is remembered by it.
    pub id: String,
    pub user_id: UserId,
    /// The method the first step used, as [`LoginMethod::as_str`] names it.
    pub method: String,
    /// The client address of the first step; the second must come from it.
    pub address: String,
    pub expires_at: Timestamp,
}

/// The challenge token is not one this server sealed, or has expired.
#[derive(Debug, thiserror::Error)]
#[error("the MFA token is invalid or expired")]
pub struct ChallengeRefused;

impl MfaChallenge {
    pub fn new(user: &UserId, method: LoginMethod, address: String, expires_at: Timestamp) -> Self {
        Self {
            id: hex::encode(rand::random::<[u8; CHALLENGE_ID_BYTES]>()),
            user_id: user.clone(),
            method: method.as_str().to_string(),
            address,
            expires_at,
        }
    }

    /// The token a client holds between the two steps.
    pub fn seal(&self, sealer: &Sealer) -> String {
        let json = serde_json::to_vec(self)
            .unwrap_or_else(|_| unreachable!("a challenge serializes to JSON"));
        sealer.seal(&json, SEAL_CONTEXT)
    }

    /// The challenge of `token`, if this server sealed it and it has not expired at `now`.
    pub fn open(sealer: &Sealer, token: &str, now: Timestamp) -> Result<Self, ChallengeRefused> {
        let json = sealer
            .open(token, SEAL_CONTEXT)
            .map_err(|_| ChallengeRefused)?;
        let challenge: Self = serde_json::from_slice(&json).map_err(|_| ChallengeRefused)?;
        if challenge.expires_at <= now {
            return Err(ChallengeRefused);
        }
        Ok(challenge)
    }

    /// The login method of the first step.
    pub fn login_method(&self) -> Option<LoginMethod> {
        LoginMethod::parse(&self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    #[test]
    fn a_challenge_opens_until_it_expires_and_only_as_sealed() {
        let sealer = Sealer::new(b"server secret");
        let at = now();
        let challenge = MfaChallenge::new(
            &UserId::generate(),
            LoginMethod::Local,
            "127.0.0.1".into(),
            at + Duration::minutes(5),
        );
        let token = challenge.seal(&sealer);
        assert_eq!(
            MfaChallenge::open(&sealer, &token, at).expect("open"),
            challenge
        );
        assert!(MfaChallenge::open(&sealer, &token, at + Duration::minutes(5)).is_err());
        assert!(MfaChallenge::open(&Sealer::new(b"another"), &token, at).is_err());
        let mut tampered = token.into_bytes();
        tampered[30] ^= 1;
        let tampered = String::from_utf8_lossy(&tampered).into_owned();
        assert!(MfaChallenge::open(&sealer, &tampered, at).is_err());
    }
}
