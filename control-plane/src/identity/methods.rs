//! The login methods a deployment offers (`auth.*`), and what a login page needs to offer them
//! (`GET /api/v1/auth/methods`). Each method is a [`LoginMethod`]; directory and single sign-on
//! methods join as further fields beside `local`.

use std::sync::Arc;

use serde::Serialize;

use super::ldap::LdapSettings;
use super::oidc::settings::OidcSettings;
use super::session::LoginMethod;

/// Where every password method is posted to.
pub const PASSWORD_LOGIN_URL: &str = "/api/v1/auth/login";

/// The enabled methods; a disabled one is `None`.
#[derive(Debug, Clone, Default)]
pub struct LoginMethods {
    /// Usernames and passwords stored here.
    pub local: Option<PasswordMethod>,
    /// People in an LDAP directory.
    pub ldap: Option<Arc<LdapSettings>>,
    /// OpenID Connect providers, each with its own login URL.
    pub oidc: Vec<OidcSettings>,
}

/// A method that takes a username and password at [`PASSWORD_LOGIN_URL`].
#[derive(Debug, Clone)]
pub struct PasswordMethod {
    pub display_name: String,
}

/// One method as a login page sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MethodListing {
    /// What a password login names as its `method`; an OIDC provider's name.
    pub id: String,
    /// `password`: a form posting `username`, `password` and `method` to `login_url`;
    /// `oidc`: a link to `login_url`, which sends the browser to the provider.
    pub kind: &'static str,
    /// What to call it on a login page.
    pub name: String,
    pub login_url: String,
}

impl LoginMethods {
    /// Whether logins may use `method`.
    pub fn enabled(&self, method: LoginMethod) -> bool {
        match method {
            LoginMethod::Local => self.local.is_some(),
            LoginMethod::Ldap => self.ldap.is_some(),
            LoginMethod::Oidc => !self.oidc.is_empty(),
        }
    }

    /// The one provider to send a browser to when no other method is enabled.
    pub fn only_oidc_provider(&self) -> Option<&OidcSettings> {
        match self.oidc.as_slice() {
            [only] if self.local.is_none() && self.ldap.is_none() => Some(only),
            _ => None,
        }
    }

    /// Every enabled method, in the order a login page should offer them.
    pub fn listing(&self) -> Vec<MethodListing> {
        let password = |method: LoginMethod, name: &String| MethodListing {
            id: method.as_str().to_string(),
            kind: "password",
            name: name.clone(),
            login_url: PASSWORD_LOGIN_URL.to_string(),
        };
        let local = self
            .local
            .iter()
            .map(|local| password(LoginMethod::Local, &local.display_name));
        let ldap = self
            .ldap
            .iter()
            .map(|ldap| password(LoginMethod::Ldap, &ldap.display_name));
        let oidc = self.oidc.iter().map(|provider| MethodListing {
            id: provider.name.clone(),
            kind: "oidc",
            name: provider.display_name.clone(),
            login_url: provider.login_url(),
        });
        local.chain(ldap).chain(oidc).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enabled_methods_are_listed_and_accepted() {
        let none = LoginMethods::default();
        assert!(none.listing().is_empty());
        assert!(!none.enabled(LoginMethod::Local));

        let local = LoginMethods {
            local: Some(PasswordMethod {
                display_name: "Company account".into(),
            }),
            ldap: None,
            oidc: Vec::new(),
        };
        assert!(local.enabled(LoginMethod::Local));
        assert_eq!(
            local.listing(),
            vec![MethodListing {
                id: "local".into(),
                kind: "password",
                name: "Company account".into(),
                login_url: "/api/v1/auth/login".into(),
            }]
        );
    }
}
