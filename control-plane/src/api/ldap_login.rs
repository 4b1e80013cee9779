//! `POST /api/v1/auth/login` with `"method": "ldap"`: the directory checks the password (a
//! bind as the entry the service account finds), then the user that mirrors the entry is
//! created or brought up to date. While the directory cannot be reached, the login answers
//! 503 `ldap_unavailable`, or, when configured, checks the hash of the last password the
//! directory accepted.

use axum::http::StatusCode;
use rand::distr::{Alphanumeric, SampleString};

use super::error::ApiError;
use super::login::LoginAttempt;
use super::AppState;
use crate::accounts::user::{validate_username, User, UserStatus};
use crate::domain::now;
use crate::identity::ldap::accounts::{user_for_login, Refusal, Verifier};
use crate::identity::ldap::directory::{Directory, DirectoryPerson, Found, Unavailable};
use crate::identity::ldap::{LdapSettings, OnUnavailable};
use crate::store::StoreError;

/// Longer names are refused before the directory is asked.
const MAX_LOGIN_NAME_CHARS: usize = 256;

/// Checks `password` with the directory; a wrong password and an unknown name are counted,
/// audited and answered alike (401 `invalid_credentials`). An empty password is refused
/// before anything is sent to the directory.
pub(super) async fn verify_ldap_password(
    state: &AppState,
    attempt: &LoginAttempt,
    username: &str,
    password: &str,
) -> Result<User, ApiError> {
    let Some(settings) = state.login_methods.ldap.as_deref() else {
        return Err(ApiError::validation("`method` \"ldap\" is not enabled"));
    };
    if password.is_empty() || username.is_empty() || username.chars().count() > MAX_LOGIN_NAME_CHARS
    {
        return Err(attempt.refuse(state, "unknown").await);
    }
    let person = match accepted_person(settings, username, password).await {
        Ok(Some(person)) => person,
        Ok(None) => {
            let target = known_user(state, username).await;
            return Err(attempt.refuse(state, &target).await);
        }
        Err(error) => {
            tracing::warn!(%error, "LDAP login could not reach the directory");
            return match settings.on_unavailable {
                OnUnavailable::Refuse => Err(ldap_unavailable()),
                OnUnavailable::Cached { max_age } => {
                    verify_cached(state, attempt, username, password, max_age).await
                }
            };
        }
    };
    let verifier = match settings.on_unavailable {
        OnUnavailable::Refuse => Verifier::Clear,
        OnUnavailable::Cached { .. } => cached_verifier(state, password).await,
    };
    match user_for_login(state.store.as_ref(), settings, &person, verifier).await {
        Ok(user) => Ok(user),
        Err(Refusal::Inactive) => {
            let target = known_user(state, username).await;
            Err(attempt.refuse(state, &target).await)
        }
        Err(Refusal::LocalAccount(name)) => {
            tracing::warn!(username = %name, "an LDAP login names a local account");
            Err(ApiError::conflict(
                "account_conflict",
                "an account that does not come from the directory has this username; an \
                 administrator must rename or remove it first",
            ))
        }
        Err(Refusal::EmailTaken) => Err(ApiError::conflict(
            "account_conflict",
            "another account has the email address of this directory entry",
        )),
        Err(refusal @ Refusal::NoUsername(_)) => {
            tracing::warn!(dn = %person.dn, %refusal, "an LDAP login cannot be mapped");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ldap_entry_unusable",
                refusal.to_string(),
            ))
        }
        Err(Refusal::Store(error)) => Err(error.into()),
    }
}

/// The person the directory finds for `username`, if it accepts `password` for them. A name
/// that identifies nobody still costs a bind (as an entry that does not exist, which the
/// directory refuses), so it answers about as late as a wrong password.
async fn accepted_person(
    settings: &LdapSettings,
    username: &str,
    password: &str,
) -> Result<Option<DirectoryPerson>, Unavailable> {
    let mut directory = Directory::connect(settings).await?;
    let person = usable_person(&mut directory, username).await;
    directory.close().await;
    let person = person?;
    let dn = person.as_ref().map_or_else(
        || {
            let random = Alphanumeric.sample_string(&mut rand::rng(), 24);
            format!("cn=nobody-{random},{}", settings.user_base)
        },
        |person| person.dn.clone(),
    );
    let accepted = Directory::accepts_password(settings, &dn, password).await?;
    Ok(person.filter(|_| accepted))
}

/// The one entry the directory finds for `username`, unless it is disabled
/// (`disabled_filter`): such a person logs in no more than the sync lets them stay.
async fn usable_person(
    directory: &mut Directory<'_>,
    username: &str,
) -> Result<Option<DirectoryPerson>, Unavailable> {
    match directory.find(username).await? {
        Found::One(person) if !directory.is_disabled(&person.dn).await? => Ok(Some(person)),
        Found::One(_) | Found::Nobody | Found::Several => Ok(None),
    }
}

/// While the directory is down: the password checked against the hash of the last one it
/// accepted for the user, if that is younger than `max_age`; 503 `ldap_unavailable` when
/// there is no such hash.
async fn verify_cached(
    state: &AppState,
    attempt: &LoginAttempt,
    username: &str,
    password: &str,
    max_age: chrono::Duration,
) -> Result<User, ApiError> {
    let Some(user) = find_user(state, username).await? else {
        return Err(ldap_unavailable());
    };
    let verifier = match state.store.ldap_link(&user.id).await {
        Ok(link) => link
            .verified_at
            .filter(|at| now() - *at <= max_age)
            .and(link.cached_verifier),
        Err(StoreError::NotFound) => None,
        Err(other) => return Err(other.into()),
    };
    let Some(verifier) = verifier else {
        return Err(ldap_unavailable());
    };
    let verified = state
        .passwords
        .verify(password.to_string(), Some(verifier))
        .await
        .map_err(|_| ApiError::busy("too many logins are in progress"))?;
    if verified.matches && user.status == UserStatus::Active {
        Ok(user)
    } else {
        Err(attempt.refuse(state, user.id.as_str()).await)
    }
}

/// An Argon2id hash of `password` to keep for logins while the directory is down; when it
/// cannot be made now, the stored one is kept and the login goes on.
async fn cached_verifier(state: &AppState, password: &str) -> Verifier {
    match state.passwords.hash(password.to_string()).await {
        Ok(Some(Ok(hash))) => Verifier::Replace(hash),
        _ => {
            tracing::warn!("cannot hash an LDAP password for the cache now; kept the old one");
            Verifier::Keep
        }
    }
}

/// The user a login name names here, if any.
async fn find_user(state: &AppState, username: &str) -> Result<Option<User>, ApiError> {
    if validate_username(username).is_err() {
        return Ok(None);
    }
    match state.store.user_by_username(username).await {
        Ok(user) => Ok(Some(user)),
        Err(StoreError::NotFound) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// The id of the user a refused login named, for the audit; `unknown` when there is none.
async fn known_user(state: &AppState, username: &str) -> String {
    match find_user(state, username).await {
        Ok(Some(user)) => user.id.to_string(),
        _ => "unknown".to_string(),
    }
}

fn ldap_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ldap_unavailable",
        "the directory cannot be reached; try again later",
    )
}
