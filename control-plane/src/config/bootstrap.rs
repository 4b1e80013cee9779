//! `bootstrap.*`: the first administrator.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Imported as the `admin` user's key (any format) when not yet known.
    pub admin_api_key: Option<String>,
}

impl BootstrapConfig {
    /// A configured key is not blank.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if matches!(&self.admin_api_key, Some(key) if key.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "bootstrap.admin_api_key",
                "must not be empty",
            ));
        }
        Ok(())
    }
}
