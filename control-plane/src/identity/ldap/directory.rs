//! One connection to the directory, bound as the service account: finding a person, checking
//! their password with a bind of its own, and reading their groups.

use std::collections::HashMap;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};

use super::settings::{GroupLookup, LdapSettings};

/// The directory cannot be reached, or does not answer as configured (the service account
/// refused, a search failed): nothing can be concluded about anyone.
#[derive(Debug, thiserror::Error)]
#[error("the LDAP directory is unavailable: {0}")]
pub struct Unavailable(String);

/// The `resultCode` of a search whose entries went beyond the size limit.
const SIZE_LIMIT_EXCEEDED: u32 = 4;

/// A person as the directory has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPerson {
    pub dn: String,
    /// The first value of each mapped attribute, where the entry has one.
    pub username: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// The DNs of the person's groups.
    pub groups: Vec<String>,
}

/// What a search for one person found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    One(DirectoryPerson),
    Nobody,
    /// The filter matches several entries: it identifies nobody.
    Several,
}

/// A connection bound as the service account.
pub struct Directory<'a> {
    settings: &'a LdapSettings,
    ldap: Ldap,
}

impl<'a> Directory<'a> {
    /// Connects (with StartTLS or over TLS as configured) and binds as the service account.
    pub async fn connect(settings: &'a LdapSettings) -> Result<Self, Unavailable> {
        let mut ldap = open(settings).await?;
        let rc = bind(
            &mut ldap,
            settings,
            &settings.bind_dn,
            settings.bind_password.expose(),
        )
        .await?;
        if rc != 0 {
            return Err(Unavailable(format!(
                "the service account `{}` cannot bind (resultCode {rc})",
                settings.bind_dn
            )));
        }
        Ok(Self { settings, ldap })
    }

    /// The one entry the user filter finds for `username`, with its groups.
    pub async fn find(&mut self, username: &str) -> Result<Found, Unavailable> {
        let settings = self.settings;
        let names = &settings.attributes;
        let mut attributes = vec![
            names.username.as_str(),
            names.email.as_str(),
            names.name.as_str(),
        ];
        if let GroupLookup::MemberAttribute(attribute) = &settings.groups {
            attributes.push(attribute);
        }
        let filter = settings.user_filter.render(username);
        let (mut entries, several) = self
            .search(&settings.user_base, Scope::Subtree, &filter, attributes, 2)
            .await?;
        if several || entries.len() > 1 {
            return Ok(Found::Several);
        }
        let Some(entry) = entries.pop() else {
            return Ok(Found::Nobody);
        };
        let groups = match &settings.groups {
            GroupLookup::MemberAttribute(attribute) => values(&entry.attrs, attribute).to_vec(),
            GroupLookup::Search { base, filter } => {
                let filter = filter.render(&entry.dn);
                let (groups, _) = self
                    .search(base, Scope::Subtree, &filter, vec!["1.1"], 0)
                    .await?;
                groups.into_iter().map(|group| group.dn).collect()
            }
        };
        let first = |attribute: &str| values(&entry.attrs, attribute).first().cloned();
        Ok(Found::One(DirectoryPerson {
            username: first(&names.username),
            email: first(&names.email),
            name: first(&names.name),
            dn: entry.dn,
            groups,
        }))
    }

    /// Whether the entry at `dn` matches the configured `disabled_filter` (never, without
    /// one).
    pub async fn is_disabled(&mut self, dn: &str) -> Result<bool, Unavailable> {
        let Some(filter) = self.settings.disabled_filter.clone() else {
            return Ok(false);
        };
        let (entries, _) = self
            .search(dn, Scope::Base, &filter, vec!["1.1"], 1)
            .await?;
        Ok(!entries.is_empty())
    }

    /// Whether the directory accepts `password` for `dn`, by a bind on a connection of its
    /// own. An empty password is refused here, without a bind: the directory would take it
    /// for an unauthenticated bind and accept it.
    pub async fn accepts_password(
        settings: &LdapSettings,
        dn: &str,
        password: &str,
    ) -> Result<bool, Unavailable> {
        if password.is_empty() || dn.is_empty() {
            return Ok(false);
        }
        let mut ldap = open(settings).await?;
        let rc = bind(&mut ldap, settings, dn, password).await?;
        let _ = ldap.unbind().await;
        Ok(rc == 0)
    }

    /// Unbinds; a failure only means the connection is already gone.
    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }

    /// Entries `filter` finds under `base`, at most `limit` (0: no limit), and whether there
    /// were more.
    async fn search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: Vec<&str>,
        limit: i32,
    ) -> Result<(Vec<SearchEntry>, bool), Unavailable> {
        let result = self
            .ldap
            .with_timeout(self.settings.timeout)
            .with_search_options(SearchOptions::new().sizelimit(limit))
            .search(base, scope, filter, attributes)
            .await
            .map_err(unreachable)?;
        let over_limit = result.1.rc == SIZE_LIMIT_EXCEEDED;
        if result.1.rc != 0 && !over_limit {
            return Err(Unavailable(format!(
                "a search under `{base}` failed (resultCode {}: {})",
                result.1.rc, result.1.text
            )));
        }
        let entries = result.0.into_iter().map(SearchEntry::construct).collect();
        Ok((entries, over_limit))
    }
}

/// A new connection, upgraded with StartTLS or over TLS as configured; connecting and the
/// TLS handshake together take at most the configured timeout.
async fn open(settings: &LdapSettings) -> Result<Ldap, Unavailable> {
    let mut options = LdapConnSettings::new()
        .set_conn_timeout(settings.timeout)
        .set_starttls(settings.starttls);
    if let Some(tls) = &settings.tls {
        options = options.set_config(tls.clone());
    }
    let connecting = LdapConnAsync::with_settings(options, &settings.url);
    let (connection, ldap) = tokio::time::timeout(settings.timeout, connecting)
        .await
        .map_err(|_| Unavailable(format!("no connection within {:?}", settings.timeout)))?
        .map_err(unreachable)?;
    tokio::spawn(async move {
        if let Err(error) = connection.drive().await {
            tracing::debug!(%error, "LDAP connection ended");
        }
    });
    Ok(ldap)
}

/// A simple bind; the directory's `resultCode` (0: accepted).
async fn bind(
    ldap: &mut Ldap,
    settings: &LdapSettings,
    dn: &str,
    password: &str,
) -> Result<u32, Unavailable> {
    let bound = ldap
        .with_timeout(settings.timeout)
        .simple_bind(dn, password)
        .await
        .map_err(unreachable)?;
    Ok(bound.rc)
}

/// The values of `attribute`, whatever the case the directory spelled it in.
fn values<'e>(attributes: &'e HashMap<String, Vec<String>>, attribute: &str) -> &'e [String] {
    attributes
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .map_or(&[], |(_, values)| values.as_slice())
}

fn unreachable(error: LdapError) -> Unavailable {
    Unavailable(error.to_string())
}
