//! `auth.*`: which login methods are enabled, and how a login page names them (`auth.ldap`
//! in its own file).

use serde::{Deserialize, Serialize};

use super::ldap::LdapMethodConfig;
use super::oidc::OidcConfig;
use super::ConfigError;
use crate::identity::methods::{LoginMethods, PasswordMethod};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Usernames and passwords stored here.
    pub local: LocalMethodConfig,
    /// People in an LDAP directory.
    pub ldap: LdapMethodConfig,
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
        display_name("auth.local.display_name", &self.local.display_name)?;
        display_name("auth.ldap.display_name", &self.ldap.display_name)?;
        Ok(LoginMethods {
            local: self.local.enabled.then(|| PasswordMethod {
                display_name: self.local.display_name.clone(),
            }),
            ldap: self.ldap.validate()?,
            oidc: self.oidc.validate()?,
        })
    }
}

fn display_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() || name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(ConfigError::invalid(
            key,
            format!("must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}
