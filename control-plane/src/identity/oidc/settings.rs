//! One OpenID Connect provider as configured (`auth.oidc.providers.NAME`), once checked.

use std::time::Duration;

use openidconnect::{ClientId, ClientSecret, IssuerUrl, RedirectUrl};

use crate::accounts::user::Role;
use crate::domain::ids::GroupId;

/// Which claims identify a person and how the issuer is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    /// Microsoft Entra ID: the person is `tid` + `oid`; the issuer names the token's tenant.
    Entra(EntraTenants),
    /// Google: the person is `sub` at `https://accounts.google.com`.
    Google,
    /// Any provider: the person is `sub` at the configured issuer.
    Generic,
}

/// The Entra ID tenants whose people may log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraTenants {
    /// `https://login.microsoftonline.com` unless overridden.
    pub authority: String,
    /// The configured tenant: an id, a domain, `organizations` or `common`.
    pub tenant: String,
    /// `tid` values accepted; empty = the configured tenant's, or any for a multi-tenant one.
    pub allowed: Vec<String>,
}

impl EntraTenants {
    /// Whether the configuration admits tokens of every tenant (`organizations`, `common`).
    pub fn multi_tenant(&self) -> bool {
        matches!(self.tenant.as_str(), "organizations" | "common")
    }

    /// The issuer of a token from tenant `tid`, as Entra ID writes it.
    pub fn issuer_of(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.authority)
    }
}

/// What a first login creates, when it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUsers {
    pub group: Option<GroupId>,
    pub role: Role,
}

/// A provider's checked settings.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The key in `auth.oidc.providers`, as in the routes.
    pub name: String,
    pub display_name: String,
    pub preset: Preset,
    /// Where discovery starts (`{issuer}/.well-known/openid-configuration`).
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    pub client_secret: ClientSecret,
    pub redirect_uri: RedirectUrl,
    pub scopes: Vec<String>,
    /// Bounds every call to the provider.
    pub timeout: Duration,
    pub link_by_verified_email: bool,
    /// `None`: a person without an account here is refused.
    pub create_users: Option<NewUsers>,
    /// Where the browser goes after a login without an allowed `return_to`.
    pub redirect_after: String,
    /// The `return_to` values a login accepts, exactly.
    pub allowed_redirects: Vec<String>,
}

impl OidcSettings {
    /// Where a browser starts a login with this provider.
    pub fn login_url(&self) -> String {
        format!("/api/v1/auth/oidc/{}/login", self.name)
    }

    /// Where `return_to` sends the browser after the login, if it is allowed.
    pub fn redirect_target(&self, return_to: Option<&str>) -> Option<String> {
        match return_to {
            None => Some(self.redirect_after.clone()),
            Some(wanted) => self
                .allowed_redirects
                .iter()
                .find(|allowed| allowed.as_str() == wanted)
                .cloned(),
        }
    }
}
