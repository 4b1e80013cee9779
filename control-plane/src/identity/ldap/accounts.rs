//! The Tollgate user that mirrors a directory person: created at their first login with role
//! `user` and no local password (found again by the username the directory gives), then kept
//! to what the directory says of their email, name and mapped groups, at each login and by the
//! sync. Memberships of groups the
//! group map does not name are never touched. Every write is idempotent, so replicas may
//! repeat one another's.

use std::collections::BTreeSet;

use serde_json::json;

use super::directory::DirectoryPerson;
use super::settings::LdapSettings;
use crate::accounts::user::{
    validate_email, validate_name, validate_username, Role, User, UserStatus,
};
use crate::changes::audit::AuditEntry;
use crate::domain::ids::UserId;
use crate::domain::now;
use crate::store::{LdapLink, Store, StoreError, Written};

/// Why a directory person cannot log in as a Tollgate user.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("an account that does not come from the directory has the username {0:?}")]
    LocalAccount(String),
    #[error("the directory entry has no usable username in its `{0}` attribute")]
    NoUsername(String),
    #[error("another user has the email address of the directory entry")]
    EmailTaken,
    /// Suspended or deleted here: the directory cannot lift that.
    #[error("the user is not active")]
    Inactive,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The user `person` logs in as, once the directory accepted their password: created at
/// the first login, otherwise brought up to date, with `verifier` done to the hash kept for
/// logins while the directory is down.
pub async fn user_for_login(
    store: &dyn Store,
    settings: &LdapSettings,
    person: &DirectoryPerson,
    verifier: Verifier,
) -> Result<User, Refusal> {
    let fields = Fields::of(settings, person)?;
    let at = now();
    let mut link = LdapLink {
        user_id: UserId::generate(),
        dn: person.dn.clone(),
        verified_at: None,
        cached_verifier: None,
        synced_at: at,
    };
    if let Verifier::Replace(hash) = &verifier {
        link.cached_verifier = Some(hash.clone());
        link.verified_at = Some(at);
    }
    let user = match linked_user(store, &fields.username).await? {
        Some(user) => user,
        None => match create(store, &fields, &link, person).await {
            Ok(user) => user,
            // Another replica created it at the same time.
            Err(Refusal::Store(StoreError::Conflict("username"))) => {
                linked_user(store, &fields.username)
                    .await?
                    .ok_or_else(|| Refusal::LocalAccount(fields.username.clone()))?
            }
            Err(other) => return Err(other),
        },
    };
    if user.status != UserStatus::Active {
        return Err(Refusal::Inactive);
    }
    let user = update(store, settings, user, &fields, person).await?;
    link.user_id = user.id.clone();
    if verifier == Verifier::Keep {
        match store.ldap_link(&user.id).await {
            Ok(stored) => {
                link.cached_verifier = stored.cached_verifier;
                link.verified_at = stored.verified_at;
            }
            Err(StoreError::NotFound) => {}
            Err(other) => return Err(other.into()),
        }
    }
    store.record_ldap_login(&link).await?;
    Ok(user)
}

/// What a login the directory accepted does to the hash of the password kept for logins
/// while the directory is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// Keep none (logins do not fall back to it).
    Clear,
    /// Keep this hash of the password just accepted.
    Replace(String),
    /// Keep the one stored (a new hash could not be made now).
    Keep,
}

/// Brings a linked, active user up to what the directory says of `person`.
pub async fn sync_user(
    store: &dyn Store,
    settings: &LdapSettings,
    user: User,
    person: &DirectoryPerson,
) -> Result<(), Refusal> {
    let fields = Fields::of(settings, person)?;
    let user = update(store, settings, user, &fields, person).await?;
    store.record_ldap_sync(&user.id, &person.dn, now()).await?;
    Ok(())
}

/// Suspends a user the directory no longer has or has disabled, ending their sessions in the
/// same write (the filter refuses them within a second).
pub async fn suspend(
    store: &dyn Store,
    mut user: User,
    reason: &str,
    tokens_expire_at: i64,
) -> Written {
    let before = user.clone();
    user.status = UserStatus::Suspended;
    user.updated_at = now();
    let audit = AuditEntry::new(
        None,
        "user.suspended",
        user.id.as_str(),
        json!({"source": "ldap", "reason": reason}),
    )
    .changed(&before, &user)
    .in_tenant(user.audit_tenant());
    store
        .update_user_ending_sessions(&user, tokens_expire_at, &audit)
        .await
}

/// The user with `username` if the directory owns it; `LocalAccount` if it does not.
async fn linked_user(store: &dyn Store, username: &str) -> Result<Option<User>, Refusal> {
    let user = match store.user_by_username(username).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Ok(None),
        Err(other) => return Err(other.into()),
    };
    match store.ldap_link(&user.id).await {
        Ok(_) => Ok(Some(user)),
        Err(StoreError::NotFound) => Err(Refusal::LocalAccount(user.username)),
        Err(other) => Err(other.into()),
    }
}

async fn create(
    store: &dyn Store,
    fields: &Fields,
    link: &LdapLink,
    person: &DirectoryPerson,
) -> Result<User, Refusal> {
    let user = User {
        email: fields.email.clone(),
        name: fields.name.clone(),
        ..User::new(
            link.user_id.clone(),
            fields.username.clone(),
            Role::User,
            link.synced_at,
        )
    };
    let audit = AuditEntry::new(
        None,
        "user.created",
        user.id.as_str(),
        json!({"source": "ldap", "dn": person.dn}),
    )
    .created(&user);
    store
        .create_ldap_user(&user, link, &audit)
        .await
        .map_err(email_taken)?;
    Ok(user)
}

/// Writes the fields that differ, then the memberships of the mapped groups.
async fn update(
    store: &dyn Store,
    settings: &LdapSettings,
    mut user: User,
    fields: &Fields,
    person: &DirectoryPerson,
) -> Result<User, Refusal> {
    if user.email != fields.email || user.name != fields.name {
        let before = user.clone();
        user.email.clone_from(&fields.email);
        user.name.clone_from(&fields.name);
        user.updated_at = now();
        let audit = AuditEntry::new(
            None,
            "user.updated",
            user.id.as_str(),
            json!({"source": "ldap"}),
        )
        .changed(&before, &user)
        .in_tenant(user.audit_tenant());
        store
            .update_user(&user, &audit)
            .await
            .map_err(email_taken)?;
    }
    let wanted = settings.group_map.groups_for(&person.groups);
    set_memberships(store, &settings.group_map.managed(), &wanted, &user.id).await?;
    Ok(user)
}

/// Adds the user to the managed groups in `wanted` and removes it from the other managed
/// ones. A managed group that does not exist here is skipped with a warning.
async fn set_memberships(
    store: &dyn Store,
    managed: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
    user: &UserId,
) -> Result<(), StoreError> {
    let current: BTreeSet<String> = store
        .groups_of(user)
        .await?
        .into_iter()
        .map(|group| group.name)
        .collect();
    let mut unknown = managed.clone();
    for group in store.groups().await? {
        if !unknown.remove(&group.name) {
            continue;
        }
        let change = match (wanted.contains(&group.name), current.contains(&group.name)) {
            (true, false) => "group.member_added",
            (false, true) => "group.member_removed",
            _ => continue,
        };
        let audit = AuditEntry::new(
            None,
            change,
            group.id.as_str(),
            json!({"user_id": user, "source": "ldap"}),
        );
        let written = if change == "group.member_added" {
            store.add_member(&group.id, user, &audit).await
        } else {
            store.remove_member(&group.id, user, &audit).await
        };
        match written {
            // Already as wanted: another replica wrote it first.
            Ok(()) | Err(StoreError::Conflict(_) | StoreError::NotFound) => {}
            Err(other) => return Err(other),
        }
    }
    if !unknown.is_empty() {
        tracing::warn!(groups = ?unknown, "`auth.ldap.group_map` names groups that do not exist");
    }
    Ok(())
}

/// What a user's fields are, read from a directory entry: the username must be one Tollgate
/// accepts; an email or name it does not accept is left out.
struct Fields {
    username: String,
    email: Option<String>,
    name: Option<String>,
}

impl Fields {
    fn of(settings: &LdapSettings, person: &DirectoryPerson) -> Result<Self, Refusal> {
        let username = person
            .username
            .clone()
            .filter(|username| validate_username(username).is_ok())
            .ok_or_else(|| Refusal::NoUsername(settings.attributes.username.clone()))?;
        Ok(Self {
            username,
            email: person
                .email
                .as_ref()
                .filter(|email| validate_email(email).is_ok())
                .map(|email| email.to_lowercase()),
            name: person
                .name
                .clone()
                .filter(|name| validate_name(name).is_ok()),
        })
    }
}

/// `EmailTaken` for a write refused because another user has the email.
fn email_taken(error: StoreError) -> Refusal {
    match error {
        StoreError::Conflict("email") => Refusal::EmailTaken,
        other => Refusal::Store(other),
    }
}
