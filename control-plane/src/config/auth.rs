//! `auth.*`: which login methods are enabled, and how a login page names them.

use serde::{Deserialize, Serialize};

use super::oidc::OidcConfig;
use super::ConfigError;
use crate::identity::methods::{LoginMethods, PasswordMethod};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Usernames and passwords stored here.
    pub local: LocalMethodConfig,
    /// OpenID Connect providers.
    pub oidc: OidcConfig,
}

/// Logins with the passwords stored here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalMethodConfig {
    pub enabled: bool,
    /// What a login page calls it.
    pub display_name: String,
}

impl Default for LocalMethodConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            display_name: "Username and password".into(),
        }
    }
}

const MAX_DISPLAY_NAME_CHARS: usize = 100;

impl AuthConfig {
    /// The enabled methods, once every key is checked.
    pub fn validate(&self) -> Result<LoginMethods, ConfigError> {
        let name = &self.local.display_name;
        if name.trim().is_empty() || name.chars().count() > MAX_DISPLAY_NAME_CHARS {
            return Err(ConfigError::invalid(
                "auth.local.display_name",
                format!("must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"),
            ));
        }
        Ok(LoginMethods {
            local: self.local.enabled.then(|| PasswordMethod {
                display_name: name.clone(),
            }),
            oidc: self.oidc.validate()?,
        })
    }
}
