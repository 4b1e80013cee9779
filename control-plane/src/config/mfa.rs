//! `mfa.*`: second factors (TOTP): what authenticator apps call the account, how long a login
//! waits for its second factor, and the roles that must use one.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::accounts::user::Role;
use crate::identity::mfa::MfaPolicy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaConfig {
    /// The issuer of `otpauth://` URIs, which authenticator apps show beside the username.
    pub issuer: String,
    /// How long the token of a login's first step stays valid for its second.
    pub challenge_ttl_secs: u32,
    /// Roles whose users must log in with a second factor (e.g. `[admin]`).
    pub required_for_roles: Vec<Role>,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            issuer: "Tollgate".into(),
            challenge_ttl_secs: 5 * 60,
            required_for_roles: Vec::new(),
        }
    }
}

const MAX_ISSUER_CHARS: usize = 100;
const MIN_CHALLENGE_TTL_SECS: u32 = 1;
const MAX_CHALLENGE_TTL_SECS: u32 = 60 * 60;

impl MfaConfig {
    pub fn validate(&self) -> Result<MfaPolicy, ConfigError> {
        let issuer = &self.issuer;
        if issuer.trim().is_empty()
            || issuer.chars().count() > MAX_ISSUER_CHARS
            || issuer.contains(':')
            || issuer.chars().any(char::is_control)
        {
            return Err(ConfigError::invalid(
                "mfa.issuer",
                format!("must be 1 to {MAX_ISSUER_CHARS} printable characters without `:`"),
            ));
        }
        if !(MIN_CHALLENGE_TTL_SECS..=MAX_CHALLENGE_TTL_SECS).contains(&self.challenge_ttl_secs) {
            return Err(ConfigError::invalid(
                "mfa.challenge_ttl_secs",
                format!("must be {MIN_CHALLENGE_TTL_SECS} to {MAX_CHALLENGE_TTL_SECS}"),
            ));
        }
        Ok(MfaPolicy {
            issuer: issuer.clone(),
            challenge_ttl: Duration::seconds(self.challenge_ttl_secs.into()),
            required_for_roles: self.required_for_roles.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_key() {
        type Adjustment = fn(&mut MfaConfig);
        let cases: [(Adjustment, &str); 3] = [
            (|c| c.issuer = " ".into(), "mfa.issuer"),
            (|c| c.issuer = "Acme: VPN".into(), "mfa.issuer"),
            (|c| c.challenge_ttl_secs = 0, "mfa.challenge_ttl_secs"),
        ];
        for (change, key) in cases {
            let mut config = MfaConfig::default();
            change(&mut config);
            let error = config.validate().expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
        }
        let policy = MfaConfig {
            required_for_roles: vec![Role::Admin],
            ..MfaConfig::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(policy.required_for_roles, vec![Role::Admin]);
        assert_eq!(policy.challenge_ttl, Duration::minutes(5));
    }
}
