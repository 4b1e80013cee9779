//! `passwords.*`: what new passwords must be, and the cost of hashing them.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::identity::password::Argon2Settings;
use crate::identity::password_policy::{CharacterClass, PasswordPolicy, MAX_PASSWORD_CHARS};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordsConfig {
    /// The fewest characters a new password may have.
    pub min_length: u32,
    /// Kinds of character a new password holds at least one of: `lowercase`, `uppercase`,
    /// `digit`, `symbol`.
    pub required_classes: Vec<CharacterClass>,
    /// Refuse the 10,000 most common passwords.
    pub refuse_common: bool,
    pub argon2: Argon2Config,
}

/// The Argon2id parameters of new hashes; stored hashes made otherwise are replaced at the
/// next successful login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordsConfig {
    fn default() -> Self {
        Self {
            min_length: 8,
            required_classes: Vec::new(),
            refuse_common: true,
            argon2: Argon2Config::default(),
        }
    }
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The fewest characters a policy may demand.
const MIN_MIN_LENGTH: u32 = 4;
/// The most memory one hash may be given: 1 GiB.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ITERATIONS: u32 = 100;
const MAX_PARALLELISM: u32 = 64;

impl PasswordsConfig {
    /// The policy and the hashing cost, once every key is checked.
    pub fn validate(&self) -> Result<(PasswordPolicy, Argon2Settings), ConfigError> {
        let max_length = u32::try_from(MAX_PASSWORD_CHARS).unwrap_or(u32::MAX);
        if !(MIN_MIN_LENGTH..=max_length).contains(&self.min_length) {
            return Err(ConfigError::invalid(
                "passwords.min_length",
                format!("must be {MIN_MIN_LENGTH} to {max_length}"),
            ));
        }
        let argon2 = &self.argon2;
        let in_range = |key: &str, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    format!("passwords.argon2.{key}"),
                    format!("must be {min} to {max}"),
                ))
            }
        };
        in_range("iterations", argon2.iterations, 1, MAX_ITERATIONS)?;
        in_range("parallelism", argon2.parallelism, 1, MAX_PARALLELISM)?;
        in_range(
            "memory_kib",
            argon2.memory_kib,
            8 * argon2.parallelism,
            MAX_MEMORY_KIB,
        )?;
        let settings =
            Argon2Settings::new(argon2.memory_kib, argon2.iterations, argon2.parallelism)
                .map_err(|e| ConfigError::invalid("passwords.argon2", e.to_string()))?;
        let policy = PasswordPolicy {
            min_length: usize::try_from(self.min_length).unwrap_or(usize::MAX),
            required_classes: self.required_classes.clone(),
            refuse_common: self.refuse_common,
        };
        Ok((policy, settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert!(PasswordsConfig::default().validate().is_ok());
    }

    #[test]
    fn bad_values_name_their_key() {
        type Adjustment = fn(&mut PasswordsConfig);
        let cases: [(Adjustment, &str); 4] = [
            (|c| c.min_length = 2, "passwords.min_length"),
            (|c| c.argon2.iterations = 0, "passwords.argon2.iterations"),
            (|c| c.argon2.parallelism = 0, "passwords.argon2.parallelism"),
            (|c| c.argon2.memory_kib = 4, "passwords.argon2.memory_kib"),
        ];
        for (adjust, key) in cases {
            let mut config = PasswordsConfig::default();
            adjust(&mut config);
            let error = config.validate().expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
        }
    }
}
