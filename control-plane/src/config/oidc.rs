//! `auth.oidc.*`: OpenID Connect providers, each a login at
//! `/api/v1/auth/oidc/{name}/login`.

use std::collections::BTreeMap;
use std::time::Duration;

use openidconnect::{ClientId, ClientSecret, IssuerUrl, RedirectUrl};
use serde::{Deserialize, Serialize};
use url::Url;

use super::ConfigError;
use crate::accounts::user::Role;
use crate::domain::ids::GroupId;
use crate::identity::oidc::settings::{EntraTenants, NewUsers, OidcSettings, Preset};

const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const MAX_NAME_CHARS: usize = 32;
const MAX_DISPLAY_NAME_CHARS: usize = 100;
const MAX_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcConfig {
    /// The control plane as browsers reach it (`https://tollgate.example.com`); each provider's
    /// `redirect_uri` is `{public_url}/api/v1/auth/oidc/{name}/callback`.
    pub public_url: Option<String>,
    pub providers: BTreeMap<String, OidcProviderConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcProviderConfig {
    pub enabled: bool,
    pub display_name: Option<String>,
    /// `entra`, `google` or `generic`.
    pub preset: String,
    /// The issuer (generic; Google's by default for `google`).
    pub issuer: Option<String>,
    /// Entra ID: a tenant id or domain, or `organizations` / `common` for every tenant.
    pub tenant_id: Option<String>,
    /// Entra ID: where tenants live, `https://login.microsoftonline.com` by default.
    pub authority: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    pub timeout_secs: u64,
    /// Entra ID: the `tid` values accepted; empty = the configured tenant only, or every
    /// tenant for `organizations` / `common`.
    pub allowed_tenants: Vec<String>,
    /// Links a first login to the user with the same email, if the provider asserts it
    /// verified.
    pub link_by_verified_email: bool,
    pub create_users: CreateUsersConfig,
    pub redirect_after: String,
    pub allowed_redirects: Vec<String>,
}

impl Default for OidcProviderConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            display_name: None,
            preset: "generic".into(),
            issuer: None,
            tenant_id: None,
            authority: None,
            client_id: String::new(),
            client_secret: String::new(),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            timeout_secs: 10,
            allowed_tenants: Vec::new(),
            link_by_verified_email: false,
            create_users: CreateUsersConfig::default(),
            redirect_after: "/".into(),
            allowed_redirects: Vec::new(),
        }
    }
}

/// What a person's first login creates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreateUsersConfig {
    pub enabled: bool,
    /// The id of the group new users join.
    pub group: Option<String>,
    /// `user` or `admin`.
    pub role: String,
}

impl Default for CreateUsersConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            group: None,
            role: "user".into(),
        }
    }
}

impl OidcConfig {
    /// The enabled providers, once every key is checked.
    pub fn validate(&self) -> Result<Vec<OidcSettings>, ConfigError> {
        let enabled: Vec<_> = self.providers.iter().filter(|(_, p)| p.enabled).collect();
        if enabled.is_empty() {
            return Ok(Vec::new());
        }
        let public_url = self
            .public_url
            .as_deref()
            .ok_or_else(|| {
                ConfigError::invalid("auth.oidc.public_url", "is required with a provider")
            })
            .and_then(|url| web_url("auth.oidc.public_url", url))?;
        enabled
            .into_iter()
            .map(|(name, provider)| provider.validate(name, &public_url))
            .collect()
    }
}

impl OidcProviderConfig {
    fn validate(&self, name: &str, public_url: &Url) -> Result<OidcSettings, ConfigError> {
        let key = |field: &str| format!("auth.oidc.providers.{name}.{field}");
        let url_safe = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c);
        if name.is_empty() || name.len() > MAX_NAME_CHARS || !name.chars().all(url_safe) {
            return Err(ConfigError::invalid(
                format!("auth.oidc.providers.{name}"),
                format!("must be named with 1 to {MAX_NAME_CHARS} of a-z, 0-9, - and _"),
            ));
        }
        let (preset, issuer) = self.preset_and_issuer(&key)?;
        let display_name = self
            .display_name
            .clone()
            .unwrap_or_else(|| name.to_string());
        if display_name.trim().is_empty() || display_name.chars().count() > MAX_DISPLAY_NAME_CHARS {
            return Err(ConfigError::invalid(
                key("display_name"),
                format!("must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"),
            ));
        }
        for (field, value) in [
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(key(field), "is required"));
            }
        }
        if !self.scopes.iter().any(|scope| scope == "openid") {
            return Err(ConfigError::invalid(key("scopes"), "must include `openid`"));
        }
        if self.scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(ConfigError::invalid(
                key("scopes"),
                "must be words without spaces",
            ));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return Err(ConfigError::invalid(
                key("timeout_secs"),
                format!("must be 1 to {MAX_TIMEOUT_SECS}"),
            ));
        }
        if !self.allowed_tenants.is_empty() && !matches!(preset, Preset::Entra(_)) {
            return Err(ConfigError::invalid(
                key("allowed_tenants"),
                "applies to the `entra` preset only",
            ));
        }
        check_redirect(&key("redirect_after"), &self.redirect_after)?;
        for allowed in &self.allowed_redirects {
            check_redirect(&key("allowed_redirects"), allowed)?;
        }
        let callback = format!(
            "{}/api/v1/auth/oidc/{name}/callback",
            public_url.as_str().trim_end_matches('/')
        );
        Ok(OidcSettings {
            name: name.to_string(),
            display_name,
            preset,
            issuer,
            client_id: ClientId::new(self.client_id.clone()),
            client_secret: ClientSecret::new(self.client_secret.clone()),
            redirect_uri: RedirectUrl::new(callback)
                .map_err(|_| ConfigError::invalid("auth.oidc.public_url", "must be a URL"))?,
            scopes: self.scopes.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
            link_by_verified_email: self.link_by_verified_email,
            create_users: self.create_users.validate(&key("create_users"))?,
            redirect_after: self.redirect_after.clone(),
            allowed_redirects: self.allowed_redirects.clone(),
        })
    }

    fn preset_and_issuer(
        &self,
        key: &impl Fn(&str) -> String,
    ) -> Result<(Preset, IssuerUrl), ConfigError> {
        let issuer = match self.preset.as_str() {
            "entra" => {
                let tenant = self.tenant_id.clone().unwrap_or_default();
                let tenant_safe = |c: char| c.is_ascii_alphanumeric() || "-.".contains(c);
                if tenant.is_empty() || !tenant.chars().all(tenant_safe) {
                    return Err(ConfigError::invalid(
                        key("tenant_id"),
                        "must be a tenant id, a domain, `organizations` or `common`",
                    ));
                }
                let authority = self.authority.as_deref().unwrap_or(ENTRA_AUTHORITY);
                let authority = web_url(&key("authority"), authority)?;
                let tenants = EntraTenants {
                    authority: authority.as_str().trim_end_matches('/').to_string(),
                    tenant,
                    allowed: self.allowed_tenants.clone(),
                };
                let issuer = tenants.issuer_of(&tenants.tenant);
                return Ok((
                    Preset::Entra(tenants),
                    issuer_url(&key("tenant_id"), issuer)?,
                ));
            }
            "google" => (
                Preset::Google,
                self.issuer.as_deref().unwrap_or(GOOGLE_ISSUER),
            ),
            "generic" => (
                Preset::Generic,
                self.issuer
                    .as_deref()
                    .ok_or_else(|| ConfigError::invalid(key("issuer"), "is required"))?,
            ),
            _ => {
                return Err(ConfigError::invalid(
                    key("preset"),
                    "must be `entra`, `google` or `generic`",
                ))
            }
        };
        web_url(&key("issuer"), issuer.1)?;
        Ok((issuer.0, issuer_url(&key("issuer"), issuer.1.to_string())?))
    }
}

impl CreateUsersConfig {
    fn validate(&self, key: &str) -> Result<Option<NewUsers>, ConfigError> {
        // Whoever can sign in at the provider gets this role: never everything.
        let role = Role::parse(&self.role)
            .filter(|role| *role == Role::User)
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.role"),
                    "must be `user`: a first login never creates an admin",
                )
            })?;
        let group = match &self.group {
            None => None,
            Some(group) => Some(GroupId::parse(group).ok_or_else(|| {
                ConfigError::invalid(format!("{key}.group"), "must be a group id like `g_...`")
            })?),
        };
        Ok(self.enabled.then_some(NewUsers { group, role }))
    }
}

fn issuer_url(key: &str, url: String) -> Result<IssuerUrl, ConfigError> {
    IssuerUrl::new(url).map_err(|_| ConfigError::invalid(key, "must be a URL"))
}

/// An `https` URL, or `http` on a loopback address (a provider on the same machine).
fn web_url(key: &str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|_| ConfigError::invalid(key, "must be a URL"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    let secure = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !secure || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            key,
            "must be an https URL (http only on a loopback address) without query",
        ));
    }
    Ok(url)
}

/// A place to send the browser: a path on this site (`/app`, not `//elsewhere`) or a URL.
fn check_redirect(key: &str, value: &str) -> Result<(), ConfigError> {
    let local_path = value.starts_with('/') && !value.starts_with("//") && !value.contains('\\');
    if local_path || web_url(key, value).is_ok() {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            "must be a path on this site (`/...`) or an https URL",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, provider: OidcProviderConfig) -> OidcConfig {
        OidcConfig {
            public_url: Some("https://tollgate.example.com/".into()),
            providers: [(name.to_string(), provider)].into(),
        }
    }

    fn entra() -> OidcProviderConfig {
        OidcProviderConfig {
            preset: "entra".into(),
            tenant_id: Some("contoso.onmicrosoft.com".into()),
            client_id: "app".into(),
            client_secret: "secret".into(),
            ..OidcProviderConfig::default()
        }
    }

    /// Makes one key of a valid provider invalid.
    type Breakage = fn(&mut OidcProviderConfig);

    fn problem(config: &OidcConfig) -> String {
        match config.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn an_entra_provider_gets_its_tenant_issuer_and_callback() {
        let providers = config("entra", entra()).validate().expect("valid");
        let entra = &providers[0];
        assert_eq!(
            entra.issuer.as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0"
        );
        assert_eq!(
            entra.redirect_uri.as_str(),
            "https://tollgate.example.com/api/v1/auth/oidc/entra/callback"
        );
        assert_eq!(entra.login_url(), "/api/v1/auth/oidc/entra/login");
        assert_eq!(entra.redirect_target(None).as_deref(), Some("/"));
        assert_eq!(entra.redirect_target(Some("https://evil.example")), None);
    }

    #[test]
    fn every_bad_key_is_named() {
        assert_eq!(
            problem(&config("Bad Name", entra())),
            "auth.oidc.providers.Bad Name"
        );
        let mut no_public_url = config("entra", entra());
        no_public_url.public_url = None;
        assert_eq!(problem(&no_public_url), "auth.oidc.public_url");
        let cases: [(&str, Breakage); 7] = [
            ("tenant_id", |p| p.tenant_id = Some("a/b".into())),
            ("preset", |p| p.preset = "okta".into()),
            ("client_secret", |p| p.client_secret = String::new()),
            ("scopes", |p| p.scopes = vec!["email".into()]),
            ("timeout_secs", |p| p.timeout_secs = 0),
            ("allowed_redirects", |p| {
                p.allowed_redirects = vec!["//evil.example".into()]
            }),
            ("authority", |p| {
                p.authority = Some("http://login.example".into())
            }),
        ];
        for (field, break_it) in cases {
            let mut provider = entra();
            break_it(&mut provider);
            assert_eq!(
                problem(&config("entra", provider)),
                format!("auth.oidc.providers.entra.{field}")
            );
        }
        let generic = OidcProviderConfig {
            client_id: "app".into(),
            client_secret: "secret".into(),
            allowed_tenants: vec!["t".into()],
            issuer: Some("https://id.example".into()),
            ..OidcProviderConfig::default()
        };
        assert_eq!(
            problem(&config("corp", generic)),
            "auth.oidc.providers.corp.allowed_tenants"
        );
    }

    #[test]
    fn disabled_providers_need_nothing() {
        let off = OidcProviderConfig {
            enabled: false,
            ..OidcProviderConfig::default()
        };
        let config = OidcConfig {
            public_url: None,
            providers: [("off".to_string(), off)].into(),
        };
        assert!(config.validate().expect("valid").is_empty());
    }
}
