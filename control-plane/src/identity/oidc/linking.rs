//! Which user a verified [`ExternalIdentity`] is: by the provider's immutable subject; else,
//! when the provider is trusted for it, by an email the provider asserts verified; else a new
//! user, when first logins may create one. Never by a claim a person can change or that the
//! provider does not vouch for (`preferred_username`, an unverified email): the nOAuth class.

use serde_json::json;

use super::id_token::ExternalIdentity;
use super::settings::{NewUsers, OidcSettings};
use crate::accounts::user::{validate_email, validate_name, validate_username, User, UserStatus};
use crate::changes::audit::AuditEntry;
use crate::domain::ids::{GroupId, UserId};
use crate::domain::now;
use crate::store::{OidcLink, Store, StoreError};

/// Why the person gets no session.
#[derive(Debug)]
pub enum NoUser {
    /// No user is linked and none may be created.
    AccountRequired,
    /// The linked user is suspended or deleted.
    Disabled(UserId),
    /// A new user's username or email belongs to another user.
    NameTaken(&'static str),
    /// `create_users.group` names no group: the configuration must change.
    NoSuchGroup(GroupId),
    Store(StoreError),
}

impl From<StoreError> for NoUser {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// The person's user here, linked or created as needed.
pub async fn user_for(
    store: &dyn Store,
    settings: &OidcSettings,
    person: &ExternalIdentity,
) -> Result<User, NoUser> {
    let link = |user_id: UserId| OidcLink {
        provider: settings.name.clone(),
        subject: person.subject.clone(),
        user_id,
    };
    match store
        .user_by_oidc_subject(&settings.name, &person.subject)
        .await
    {
        Ok(user) => return active(user),
        Err(StoreError::NotFound) => {}
        Err(other) => return Err(other.into()),
    }
    if let Some(email) = verified_email(settings, person) {
        match store.user_by_email(email).await {
            Ok(user) if linkable_by_email(store, &settings.name, &user).await? => {
                let user = active(user)?;
                let audit = AuditEntry::new(
                    Some(user.id.clone()),
                    "user.oidc_linked",
                    user.id.as_str(),
                    json!({"provider": settings.name, "by": "verified_email"}),
                )
                .in_tenant(user.audit_tenant());
                store
                    .link_oidc_subject(&link(user.id.clone()), &audit)
                    .await?;
                return Ok(user);
            }
            // Not linked: creating the user then finds the email taken (409).
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(other) => return Err(other.into()),
        }
    }
    let Some(new_users) = &settings.create_users else {
        return Err(NoUser::AccountRequired);
    };
    if let Some(group) = &new_users.group {
        match store.group(group).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => return Err(NoUser::NoSuchGroup(group.clone())),
            Err(other) => return Err(other.into()),
        }
    }
    let user = new_user(person, new_users).ok_or(NoUser::AccountRequired)?;
    let audit = AuditEntry::new(
        Some(user.id.clone()),
        "user.created",
        user.id.as_str(),
        json!({"provider": settings.name}),
    )
    .created(&user)
    .in_tenant(user.audit_tenant());
    match store
        .create_oidc_user(
            &user,
            new_users.group.as_ref(),
            &link(user.id.clone()),
            &audit,
        )
        .await
    {
        Ok(()) => Ok(user),
        Err(StoreError::Conflict(what)) => Err(NoUser::NameTaken(what)),
        Err(other) => Err(other.into()),
    }
}

/// Whether a login asserting `user`'s email may be linked to it: not while the address awaits
/// the verification of a self-registration (anyone may register any address), nor when the
/// user is already linked to another subject at the provider (a reassigned address).
async fn linkable_by_email(
    store: &dyn Store,
    provider: &str,
    user: &User,
) -> Result<bool, StoreError> {
    Ok(!store.email_verification_pending(&user.id).await?
        && !store.has_oidc_link(provider, &user.id).await?)
}

fn active(user: User) -> Result<User, NoUser> {
    match user.status {
        UserStatus::Active => Ok(user),
        UserStatus::Suspended | UserStatus::Deleted => Err(NoUser::Disabled(user.id)),
    }
}

/// The email to link by: only if the operator trusts this provider for it and the provider
/// asserts the person controls it.
fn verified_email<'a>(settings: &OidcSettings, person: &'a ExternalIdentity) -> Option<&'a str> {
    let trusted = settings.link_by_verified_email && person.email_verified;
    person.email.as_deref().filter(|_| trusted)
}

/// A first login's user, named by `preferred_username` or else the email; `None` when the
/// token carries no usable name.
fn new_user(person: &ExternalIdentity, defaults: &NewUsers) -> Option<User> {
    let username = [&person.preferred_username, &person.email]
        .into_iter()
        .flatten()
        .find(|name| validate_username(name).is_ok())?
        .to_lowercase();
    Some(User {
        // An address the provider does not vouch for is not kept: a later login could be
        // linked to this user by it.
        email: person
            .email
            .as_ref()
            .filter(|email| person.email_verified && validate_email(email).is_ok())
            .map(|email| email.to_lowercase()),
        name: person
            .name
            .clone()
            .filter(|name| validate_name(name).is_ok()),
        groups: defaults
            .group
            .iter()
            .map(|g| g.as_str().to_string())
            .collect(),
        ..User::new(UserId::generate(), username, defaults.role, now())
    })
}
