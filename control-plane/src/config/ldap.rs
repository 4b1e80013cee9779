//! `auth.ldap`: logins against an LDAP directory (off by default). Every key is checked when
//! the method is enabled; errors name the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::identity::ldap::filter::{check_filter, FilterTemplate};
use crate::identity::ldap::settings::AttributeNames;
use crate::identity::ldap::{BindPassword, GroupLookup, GroupMap, LdapSettings, OnUnavailable};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapMethodConfig {
    pub enabled: bool,
    /// What a login page calls it.
    pub display_name: String,
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// PEM file of the CA(s) the directory's certificate must chain to (ldaps or StartTLS);
    /// unset: the system's CAs.
    pub ca_file: Option<PathBuf>,
    pub timeout_secs: u64,
    /// The service account that searches for people.
    pub bind_dn: String,
    /// Its password; best set as `TOLLGATE_AUTH__LDAP__BIND_PASSWORD`.
    pub bind_password: Option<BindPassword>,
    /// Where people are searched for.
    pub user_base: String,
    /// Finds a person: `{username}` is replaced by the escaped login name.
    pub user_filter: String,
    /// Entries that match it are disabled: the sync suspends their users.
    pub disabled_filter: Option<String>,
    pub attributes: LdapAttributesConfig,
    pub groups: LdapGroupsConfig,
    /// Directory group DN -> Tollgate group name.
    pub group_map: BTreeMap<String, String>,
    pub sync_interval_secs: u64,
    pub on_unavailable: OnUnavailableConfig,
    pub cached_max_age_secs: u64,
}

/// The entry attributes a user's fields come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapAttributesConfig {
    pub username: String,
    pub email: String,
    pub name: String,
}

/// How a person's groups are found: the `member_attribute` of their entry, or, when
/// `search_base` is set, the entries `search_filter` finds there for the person's `{dn}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapGroupsConfig {
    pub member_attribute: String,
    pub search_base: Option<String>,
    pub search_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailableConfig {
    Refuse,
    Cached,
}

impl Default for LdapMethodConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            display_name: "Directory account".into(),
            url: String::new(),
            starttls: false,
            ca_file: None,
            timeout_secs: 5,
            bind_dn: String::new(),
            bind_password: None,
            user_base: String::new(),
            user_filter: "(&(objectClass=inetOrgPerson)(uid={username}))".into(),
            disabled_filter: None,
            attributes: LdapAttributesConfig::default(),
            groups: LdapGroupsConfig::default(),
            group_map: BTreeMap::new(),
            sync_interval_secs: 300,
            on_unavailable: OnUnavailableConfig::Refuse,
            cached_max_age_secs: 86_400,
        }
    }
}

impl Default for LdapAttributesConfig {
    fn default() -> Self {
        Self {
            username: "uid".into(),
            email: "mail".into(),
            name: "cn".into(),
        }
    }
}

impl Default for LdapGroupsConfig {
    fn default() -> Self {
        Self {
            member_attribute: "memberOf".into(),
            search_base: None,
            search_filter: "(&(objectClass=groupOfNames)(member={dn}))".into(),
        }
    }
}

const MAX_TIMEOUT_SECS: u64 = 60;
const MAX_SYNC_INTERVAL_SECS: u64 = 86_400;
const MAX_CACHED_AGE_SECS: u64 = 30 * 86_400;

impl LdapMethodConfig {
    /// The settings, when enabled and every key is valid; `display_name` is checked by the
    /// caller like every method's.
    pub fn validate(&self) -> Result<Option<Arc<LdapSettings>>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let tls_wanted = self.check_url()?;
        let tls = match &self.ca_file {
            Some(_) if !tls_wanted => {
                return Err(invalid(
                    "ca_file",
                    "needs an ldaps:// `url` or `starttls: true`",
                ))
            }
            Some(file) => Some(client_config(file)?),
            None => None,
        };
        let timeout_secs = in_range("timeout_secs", self.timeout_secs, 1, MAX_TIMEOUT_SECS)?;
        let sync_secs = in_range(
            "sync_interval_secs",
            self.sync_interval_secs,
            1,
            MAX_SYNC_INTERVAL_SECS,
        )?;
        not_empty("bind_dn", &self.bind_dn)?;
        let bind_password = self
            .bind_password
            .clone()
            .filter(|password| !password.expose().is_empty())
            .ok_or_else(|| {
                invalid(
                    "bind_password",
                    "must be set (for example as TOLLGATE_AUTH__LDAP__BIND_PASSWORD)",
                )
            })?;
        not_empty("user_base", &self.user_base)?;
        let user_filter = FilterTemplate::new(&self.user_filter, "{username}")
            .map_err(|problem| invalid("user_filter", problem))?;
        if let Some(filter) = &self.disabled_filter {
            check_filter(filter).map_err(|problem| invalid("disabled_filter", problem))?;
        }
        Ok(Some(Arc::new(LdapSettings {
            display_name: self.display_name.clone(),
            url: self.url.clone(),
            starttls: self.starttls,
            tls,
            timeout: Duration::from_secs(timeout_secs),
            bind_dn: self.bind_dn.clone(),
            bind_password,
            user_base: self.user_base.clone(),
            user_filter,
            disabled_filter: self.disabled_filter.clone(),
            attributes: self.attributes.validate()?,
            groups: self.groups.validate()?,
            group_map: self.group_map()?,
            sync_interval: Duration::from_secs(sync_secs),
            on_unavailable: self.on_unavailable()?,
        })))
    }

    /// Checks `url` and `starttls`; whether the connection uses TLS.
    fn check_url(&self) -> Result<bool, ConfigError> {
        let url = url::Url::parse(&self.url)
            .map_err(|_| invalid("url", "must be an ldap:// or ldaps:// URL"))?;
        let secure = match url.scheme() {
            "ldap" => false,
            "ldaps" => true,
            _ => return Err(invalid("url", "must be an ldap:// or ldaps:// URL")),
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("url", "must name a host"));
        }
        if secure && self.starttls {
            return Err(invalid("starttls", "is only for ldap:// URLs"));
        }
        Ok(secure || self.starttls)
    }

    fn group_map(&self) -> Result<GroupMap, ConfigError> {
        for (dn, group) in &self.group_map {
            if dn.trim().is_empty() || group.trim().is_empty() {
                return Err(invalid(
                    "group_map",
                    "maps non-empty group DNs to non-empty Tollgate group names",
                ));
            }
        }
        Ok(GroupMap::new(
            self.group_map
                .iter()
                .map(|(dn, group)| (dn.as_str(), group.as_str())),
        ))
    }

    fn on_unavailable(&self) -> Result<OnUnavailable, ConfigError> {
        Ok(match self.on_unavailable {
            OnUnavailableConfig::Refuse => OnUnavailable::Refuse,
            OnUnavailableConfig::Cached => {
                let secs = in_range(
                    "cached_max_age_secs",
                    self.cached_max_age_secs,
                    1,
                    MAX_CACHED_AGE_SECS,
                )?;
                OnUnavailable::Cached {
                    max_age: chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)),
                }
            }
        })
    }
}

impl LdapAttributesConfig {
    fn validate(&self) -> Result<AttributeNames, ConfigError> {
        for (key, name) in [
            ("attributes.username", &self.username),
            ("attributes.email", &self.email),
            ("attributes.name", &self.name),
        ] {
            attribute_name(key, name)?;
        }
        Ok(AttributeNames {
            username: self.username.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
        })
    }
}

impl LdapGroupsConfig {
    fn validate(&self) -> Result<GroupLookup, ConfigError> {
        match &self.search_base {
            None => {
                attribute_name("groups.member_attribute", &self.member_attribute)?;
                Ok(GroupLookup::MemberAttribute(self.member_attribute.clone()))
            }
            Some(base) => {
                not_empty("groups.search_base", base)?;
                let filter = FilterTemplate::new(&self.search_filter, "{dn}")
                    .map_err(|problem| invalid("groups.search_filter", problem))?;
                Ok(GroupLookup::Search {
                    base: base.clone(),
                    filter,
                })
            }
        }
    }
}

/// A TLS client that trusts only the CAs in `file`.
fn client_config(file: &PathBuf) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    let unreadable = |problem: String| invalid("ca_file", problem);
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .map_err(|e| unreadable(format!("cannot be read: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(format!("is not PEM: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(unreadable("holds no usable CA certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unreadable(format!("cannot be used: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn attribute_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | ';' | '.');
    if name.is_empty() || !name.chars().all(allowed) {
        return Err(invalid(key, "must be an attribute name like `mail`"));
    }
    Ok(())
}

fn not_empty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(key, "must be set"));
    }
    Ok(())
}

fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if !(min..=max).contains(&value) {
        return Err(invalid(key, format!("must be {min} to {max}")));
    }
    Ok(value)
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::invalid(format!("auth.ldap.{key}"), problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn enabled() -> LdapMethodConfig {
        LdapMethodConfig {
            enabled: true,
            url: "ldap://directory.example.org:389".into(),
            bind_dn: "cn=tollgate,dc=example,dc=org".into(),
            bind_password: Some(BindPassword::new("service password")),
            user_base: "ou=people,dc=example,dc=org".into(),
            ..LdapMethodConfig::default()
        }
    }

    #[test]
    fn off_by_default_and_valid_when_complete() {
        assert!(LdapMethodConfig::default()
            .validate()
            .expect("valid")
            .is_none());
        let settings = enabled().validate().expect("valid").expect("enabled");
        assert_eq!(settings.on_unavailable, OnUnavailable::Refuse);
        assert_eq!(
            settings.groups,
            GroupLookup::MemberAttribute("memberOf".into())
        );
    }

    #[test]
    fn every_bad_key_is_named() {
        type Adjustment = fn(&mut LdapMethodConfig);
        let cases: [(Adjustment, &str); 14] = [
            (|c| c.url = "http://directory".into(), "auth.ldap.url"),
            (|c| c.url = "ldap://".into(), "auth.ldap.url"),
            (
                |c| {
                    c.url = "ldaps://directory".into();
                    c.starttls = true;
                },
                "auth.ldap.starttls",
            ),
            (
                |c| c.ca_file = Some("/nonexistent/ca.pem".into()),
                "auth.ldap.ca_file",
            ),
            (|c| c.timeout_secs = 0, "auth.ldap.timeout_secs"),
            (|c| c.bind_dn = " ".into(), "auth.ldap.bind_dn"),
            (|c| c.bind_password = None, "auth.ldap.bind_password"),
            (|c| c.user_base = String::new(), "auth.ldap.user_base"),
            (
                |c| c.user_filter = "(uid=alice)".into(),
                "auth.ldap.user_filter",
            ),
            (
                |c| c.disabled_filter = Some("(nsAccountLock=TRUE".into()),
                "auth.ldap.disabled_filter",
            ),
            (
                |c| c.attributes.email = "mail)(x".into(),
                "auth.ldap.attributes.email",
            ),
            (
                |c| {
                    c.groups.search_base = Some("ou=groups,dc=example,dc=org".into());
                    c.groups.search_filter = "(member=x)".into();
                },
                "auth.ldap.groups.search_filter",
            ),
            (
                |c| {
                    c.group_map
                        .insert("cn=admins,dc=example,dc=org".into(), String::new());
                },
                "auth.ldap.group_map",
            ),
            (
                |c| {
                    c.on_unavailable = OnUnavailableConfig::Cached;
                    c.cached_max_age_secs = 0;
                },
                "auth.ldap.cached_max_age_secs",
            ),
        ];
        for (adjust, key) in cases {
            let mut config = enabled();
            adjust(&mut config);
            let error = config.validate().expect_err(key).to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn the_bind_password_comes_from_the_environment_and_is_never_shown() {
        let dir = tempfile::tempdir().expect("folder");
        let file = dir.path().join("tollgate.yaml");
        std::fs::write(
            &file,
            "auth:\n  ldap:\n    enabled: true\n    url: ldap://127.0.0.1:389\n    \
             bind_dn: cn=tollgate,dc=example,dc=org\n    user_base: dc=example,dc=org\n",
        )
        .expect("write");
        std::env::set_var(
            "TOLLGATE_AUTH__LDAP__BIND_PASSWORD",
            "environment-only-secret",
        );
        let config = Config::load(Some(&file));
        std::env::remove_var("TOLLGATE_AUTH__LDAP__BIND_PASSWORD");
        let config = config.expect("valid");
        let settings = config.login_methods.ldap.as_ref().expect("enabled");
        assert_eq!(settings.bind_password.expose(), "environment-only-secret");
        assert!(!format!("{config:?}").contains("environment-only-secret"));
    }
}
