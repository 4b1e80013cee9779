//! The flow cookie: what a login started (state, nonce, PKCE verifier, where to go after),
//! sealed (encrypted and authenticated) with a key from the server secret, so that it binds
//! the login to this browser and any replica can finish it without shared storage.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::provider::FlowSecrets;
use crate::domain::{now, Timestamp};
use crate::identity::sealing::Sealer;

pub const FLOW_COOKIE: &str = "tollgate_oidc_flow";
/// How long a person has at the provider before the login must start again.
pub const FLOW_TTL_SECS: i64 = 600;

#[derive(Serialize, Deserialize)]
struct SealedFlow {
    state: String,
    nonce: String,
    pkce_verifier: String,
    return_to: String,
    expires_at: Timestamp,
}

/// A login between its start and the provider's callback.
pub struct Flow {
    pub secrets: FlowSecrets,
    /// Where the browser goes once logged in.
    pub return_to: String,
}

/// The flow cookie is missing, tampered with, expired, or from another login.
#[derive(Debug)]
pub struct InvalidFlow;

impl Flow {
    /// The cookie's value for `provider`.
    pub fn seal(&self, sealer: &Sealer, provider: &str) -> String {
        let sealed = SealedFlow {
            state: self.secrets.state.clone(),
            nonce: self.secrets.nonce.clone(),
            pkce_verifier: self.secrets.pkce_verifier.clone(),
            return_to: self.return_to.clone(),
            expires_at: now() + chrono::Duration::seconds(FLOW_TTL_SECS),
        };
        let json = serde_json::to_vec(&sealed).unwrap_or_default();
        sealer.seal(&json, &context(provider))
    }

    /// The flow in `cookie`, if it was sealed here for `provider`, is still fresh, and its
    /// state is `state` (compared in constant time).
    pub fn open(
        sealer: &Sealer,
        provider: &str,
        cookie: &str,
        state: &str,
    ) -> Result<Self, InvalidFlow> {
        let json = sealer
            .open(cookie, &context(provider))
            .map_err(|_| InvalidFlow)?;
        let sealed: SealedFlow = serde_json::from_slice(&json).map_err(|_| InvalidFlow)?;
        let same_state: bool = sealed.state.as_bytes().ct_eq(state.as_bytes()).into();
        if !same_state || sealed.expires_at <= now() {
            return Err(InvalidFlow);
        }
        Ok(Self {
            secrets: FlowSecrets {
                state: sealed.state,
                nonce: sealed.nonce,
                pkce_verifier: sealed.pkce_verifier,
            },
            return_to: sealed.return_to,
        })
    }
}

fn context(provider: &str) -> Vec<u8> {
    format!("tollgate oidc flow v1 {provider}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            secrets: FlowSecrets {
                state: "state-1".into(),
                nonce: "nonce-1".into(),
                pkce_verifier: "verifier-1".into(),
            },
            return_to: "/app".into(),
        }
    }

    #[test]
    fn a_flow_opens_only_for_its_provider_and_state() {
        let sealer = Sealer::new(b"server secret");
        let cookie = flow().seal(&sealer, "entra");
        let opened = Flow::open(&sealer, "entra", &cookie, "state-1").expect("opens");
        assert_eq!(opened.secrets.nonce, "nonce-1");
        assert_eq!(opened.return_to, "/app");
        assert!(Flow::open(&sealer, "google", &cookie, "state-1").is_err());
        assert!(Flow::open(&sealer, "entra", &cookie, "state-2").is_err());
        assert!(Flow::open(&Sealer::new(b"other"), "entra", &cookie, "state-1").is_err());
        let mut tampered = cookie.into_bytes();
        tampered[30] ^= 1;
        let tampered = String::from_utf8_lossy(&tampered).to_string();
        assert!(Flow::open(&sealer, "entra", &tampered, "state-1").is_err());
    }
}
