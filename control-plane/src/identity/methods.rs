//! The login methods a deployment offers (`auth.*`), and what a login page needs to offer them
//! (`GET /api/v1/auth/methods`). Each method is a [`LoginMethod`]; directory and single sign-on
//! methods join as further fields beside `local`.

use std::sync::Arc;

use serde::Serialize;

use super::ldap::LdapSettings;
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
}

/// A method that takes a username and password at [`PASSWORD_LOGIN_URL`].
#[derive(Debug, Clone)]
pub struct PasswordMethod {
    pub display_name: String,
}

/// One method as a login page sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodListing {
    /// What a login names as its `method`.
    pub id: &'static str,
    /// `password`: a form posting `username`, `password` and `method` to `login_url`.
    pub kind: &'static str,
    /// What to call it on a login page.
    pub name: String,
    pub login_url: &'static str,
}

impl LoginMethods {
    /// Whether logins may use `method`.
    pub fn enabled(&self, method: LoginMethod) -> bool {
        match method {
            LoginMethod::Local => self.local.is_some(),
            LoginMethod::Ldap => self.ldap.is_some(),
        }
    }

    /// Every enabled method, in the order a login page should offer them.
    pub fn listing(&self) -> Vec<MethodListing> {
        let local = self
            .local
            .iter()
            .map(|local| (LoginMethod::Local, &local.display_name));
        let ldap = self
            .ldap
            .iter()
            .map(|ldap| (LoginMethod::Ldap, &ldap.display_name));
        local
            .chain(ldap)
            .map(|(method, name)| MethodListing {
                id: method.as_str(),
                kind: "password",
                name: name.clone(),
                login_url: PASSWORD_LOGIN_URL,
            })
            .collect()
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
        };
        assert!(local.enabled(LoginMethod::Local));
        assert_eq!(
            local.listing(),
            vec![MethodListing {
                id: "local",
                kind: "password",
                name: "Company account".into(),
                login_url: "/api/v1/auth/login",
            }]
        );
    }
}
