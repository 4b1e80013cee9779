//! `sessions.*`: the access and refresh tokens of logins.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::identity::signing::SigningAlgorithm;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// `iss` of every access token.
    pub issuer: String,
    /// `aud` of every access token.
    pub audience: String,
    /// `EdDSA` (default) or `RS256`, for newly generated signing keys.
    pub algorithm: String,
    pub access_token_ttl_secs: u32,
    pub refresh_token_ttl_secs: u32,
    /// How long a new signing key is published before it signs.
    pub key_publish_delay_secs: u32,
    /// The most live sessions one user may hold; a new login ends the oldest beyond it.
    pub max_per_user: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            issuer: "tollgate".into(),
            audience: "tollgate".into(),
            algorithm: "EdDSA".into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            key_publish_delay_secs: 60,
            max_per_user: 10,
        }
    }
}

/// The highest cap on one user's live sessions that may be configured.
const MAX_SESSIONS_PER_USER: u32 = 1000;

impl SessionsConfig {
    /// The algorithm of new signing keys, once every key is checked.
    pub fn validate(&self) -> Result<SigningAlgorithm, ConfigError> {
        let algorithm = SigningAlgorithm::parse(&self.algorithm)
            .ok_or_else(|| ConfigError::invalid("sessions.algorithm", "must be EdDSA or RS256"))?;
        if self.issuer.is_empty() {
            return Err(ConfigError::invalid("sessions.issuer", "must not be empty"));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::invalid(
                "sessions.audience",
                "must not be empty",
            ));
        }
        if !(60..=86_400).contains(&self.access_token_ttl_secs) {
            return Err(ConfigError::invalid(
                "sessions.access_token_ttl_secs",
                "must be 60 to 86400 seconds",
            ));
        }
        if self.refresh_token_ttl_secs < self.access_token_ttl_secs {
            return Err(ConfigError::invalid(
                "sessions.refresh_token_ttl_secs",
                "must be at least sessions.access_token_ttl_secs",
            ));
        }
        if !(1..=MAX_SESSIONS_PER_USER).contains(&self.max_per_user) {
            return Err(ConfigError::invalid(
                "sessions.max_per_user",
                format!("must be 1 to {MAX_SESSIONS_PER_USER}"),
            ));
        }
        Ok(algorithm)
    }
}
