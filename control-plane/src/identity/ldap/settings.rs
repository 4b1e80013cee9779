//! What logins and the sync need to reach the directory and read it, resolved from
//! `auth.ldap` once every key is checked.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::filter::{normalized_dn, FilterTemplate};

/// The service account's password: never shown by `Debug`, so never in a log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BindPassword(String);

impl BindPassword {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BindPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindPassword(<hidden>)")
    }
}

/// How to reach the directory and read people and their groups from it.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// What a login page calls the method.
    pub display_name: String,
    /// `ldap://` or `ldaps://`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    pub starttls: bool,
    /// Trusts only the configured CA; `None` trusts the system's CAs.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Bounds connecting and every operation.
    pub timeout: Duration,
    pub bind_dn: String,
    pub bind_password: BindPassword,
    pub user_base: String,
    /// Finds a person by `{username}`.
    pub user_filter: FilterTemplate,
    /// An entry that matches it is disabled: the sync suspends its user.
    pub disabled_filter: Option<String>,
    pub attributes: AttributeNames,
    pub groups: GroupLookup,
    pub group_map: GroupMap,
    pub sync_interval: Duration,
    pub on_unavailable: OnUnavailable,
}

/// The entry's attributes a user's fields are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeNames {
    pub username: String,
    pub email: String,
    pub name: String,
}

/// How a person's groups are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupLookup {
    /// An attribute of the person's entry lists the DNs of their groups (`memberOf`).
    MemberAttribute(String),
    /// The groups are the entries under `base` that `filter` finds for the person's `{dn}`.
    Search {
        base: String,
        filter: FilterTemplate,
    },
}

/// Which directory groups make a person a member of which Tollgate groups. Only the
/// Tollgate groups named here are managed by the directory; memberships of others are left
/// alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupMap {
    /// (normalized group DN, Tollgate group name).
    entries: Vec<(String, String)>,
}

impl GroupMap {
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            entries: entries
                .into_iter()
                .map(|(dn, group)| (normalized_dn(dn), group.to_string()))
                .collect(),
        }
    }

    /// Every Tollgate group the directory manages.
    pub fn managed(&self) -> BTreeSet<String> {
        self.entries
            .iter()
            .map(|(_, group)| group.clone())
            .collect()
    }

    /// The Tollgate groups a member of the directory groups `dns` belongs to.
    pub fn groups_for<'a>(&self, dns: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
        let dns: BTreeSet<String> = dns.into_iter().map(|dn| normalized_dn(dn)).collect();
        self.entries
            .iter()
            .filter(|(dn, _)| dns.contains(dn))
            .map(|(_, group)| group.clone())
            .collect()
    }
}

/// What a login does while the directory cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Answer 503 `ldap_unavailable`.
    Refuse,
    /// Check the password against the hash of the last one the directory accepted, if that
    /// is younger than `max_age`.
    Cached { max_age: chrono::Duration },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_groups_map_to_the_named_groups_only() {
        let map = GroupMap::new([
            ("cn=Admins,ou=groups,dc=example,dc=org", "operators"),
            ("cn=staff,ou=groups,dc=example,dc=org", "staff"),
        ]);
        let member_of = ["CN=admins, ou=groups,dc=example,dc=org".to_string()];
        assert_eq!(
            map.groups_for(&member_of),
            BTreeSet::from(["operators".to_string()])
        );
        assert_eq!(map.managed().len(), 2);
    }

    #[test]
    fn the_bind_password_is_not_shown() {
        let password = BindPassword::new("s3cret");
        assert!(!format!("{password:?}").contains("s3cret"));
    }
}
