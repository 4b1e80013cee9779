//! `keys.*` and `security.*`: how API keys look and how they are hashed.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// First part of every generated key: `<prefix>_<user_id>_<random>`.
    pub prefix: String,
    /// How long a rotated key keeps working beside its replacement, unless the rotation
    /// asks otherwise (0: it stops at once).
    pub rotation_grace_secs: u32,
}

/// The longest grace a rotated key may be given: 30 days.
pub const MAX_ROTATION_GRACE_SECS: u32 = 30 * 24 * 3600;

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            prefix: "tg".into(),
            rotation_grace_secs: 24 * 3600,
        }
    }
}

impl KeysConfig {
    /// The prefix is 1 to 16 lowercase letters or digits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prefix = &self.prefix;
        if prefix.is_empty()
            || prefix.len() > 16
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(ConfigError::invalid(
                "keys.prefix",
                "must be 1 to 16 lowercase letters or digits",
            ));
        }
        if self.rotation_grace_secs > MAX_ROTATION_GRACE_SECS {
            return Err(ConfigError::invalid(
                "keys.rotation_grace_secs",
                format!("must be 0 to {MAX_ROTATION_GRACE_SECS}"),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Secret for the keyed hash of API keys. Every replica must share it. When
    /// unset, one is generated into `data_dir` on first start.
    pub key_hash_secret: Option<String>,
}

impl SecurityConfig {
    /// A configured secret has at least 32 characters.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .key_hash_secret
            .as_ref()
            .is_some_and(|secret| secret.len() < 32)
        {
            return Err(ConfigError::invalid(
                "security.key_hash_secret",
                "must be at least 32 characters",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uppercase_key_prefix_is_refused() {
        let keys = KeysConfig {
            prefix: "TG".into(),
            ..KeysConfig::default()
        };
        let error = keys.validate().expect_err("must fail").to_string();
        assert!(error.contains("keys.prefix"), "{error}");
    }

    #[test]
    fn a_rotation_grace_past_thirty_days_is_refused() {
        let keys = KeysConfig {
            rotation_grace_secs: MAX_ROTATION_GRACE_SECS + 1,
            ..KeysConfig::default()
        };
        let error = keys.validate().expect_err("must fail").to_string();
        assert!(error.contains("keys.rotation_grace_secs"), "{error}");
    }
}
