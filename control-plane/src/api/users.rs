//! `/api/v1/users`: create, list, read, change and delete users.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{found, ApiError};
use super::extract::{nullable, ApiJson, ApiQuery, Caller, SelfOr};
use super::paging::PageWindow;
use super::permission::{ManageUsers, ReadUsers};
use super::settings::{self, QuotasPatch, RateLimitsPatch, SettingsField};
use super::AppState;
use crate::accounts::ip_allowlist::IpAllowlist;
use crate::accounts::user::{
    validate_email, validate_name, validate_username, Role, User, UserStatus,
};
use crate::domain::ids::UserId;
use crate::domain::now;
use crate::domain::validation::InvalidField;
use crate::identity::password::{HashRefused, MAX_BCRYPT_COST};
use crate::identity::password_policy::PasswordOwner;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;
use crate::store::{StoreError, UserQuery};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    email: Option<String>,
    name: Option<String>,
    password: Option<String>,
    /// A hash from an older system (bcrypt or Argon2id), instead of `password`.
    password_hash: Option<String>,
    #[serde(default = "default_role")]
    role: Role,
    #[serde(default = "default_status")]
    status: UserStatus,
    tenant_id: Option<String>,
    #[serde(default)]
    ip_allowlist: IpAllowlist,
    /// The user must log in with a second factor.
    #[serde(default)]
    mfa_required: bool,
    #[serde(default, deserialize_with = "nullable")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[serde(default, deserialize_with = "nullable")]
    quotas: SettingsField<QuotasPatch>,
}

fn default_role() -> Role {
    Role::User
}

fn default_status() -> UserStatus {
    UserStatus::Active
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeUser {
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    password: Option<String>,
    role: Option<Role>,
    status: Option<UserStatus>,
    #[serde(default, deserialize_with = "nullable")]
    tenant_id: Option<Option<String>>,
    ip_allowlist: Option<IpAllowlist>,
    mfa_required: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[serde(default, deserialize_with = "nullable")]
    quotas: SettingsField<QuotasPatch>,
}

/// What narrows a listing of users; its page is a [`PageWindow`].
#[derive(Debug, Deserialize)]
pub struct UserFilter {
    q: Option<String>,
    status: Option<UserStatus>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller<ManageUsers>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, ApiError> {
    validate_username(&body.username)?;
    validate_optional(&body.email, validate_email)?;
    validate_optional(&body.name, validate_name)?;
    validate_tenant(&body.tenant_id)?;
    let rate_limits = settings::rate_limits(body.rate_limits, RateLimits::default())?;
    let quotas = settings::quotas(body.quotas, Quotas::default())?;
    if body.status == UserStatus::Deleted {
        return Err(ApiError::validation(
            "`status` of a new user is active or suspended",
        ));
    }
    let owner = PasswordOwner {
        username: &body.username,
        email: body.email.as_deref(),
    };
    let password_hash =
        match (&body.password, body.password_hash) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation(
                    "`password` and `password_hash` cannot both be set",
                ))
            }
            (Some(password), None) => {
                check_password(&state, password, owner)?;
                Some(hash(&state, password).await?)
            }
            (None, Some(imported)) => {
                match state.passwords.check_hash(&imported) {
                    Ok(()) => {}
                    Err(HashRefused::Unknown) => return Err(ApiError::validation(
                        "`password_hash` must be a bcrypt ($2a$, $2b$, $2x$, $2y$) or Argon2id \
                         PHC hash",
                    )),
                    Err(HashRefused::TooCostly) => {
                        return Err(ApiError::validation(format!(
                            "`password_hash` costs too much to verify: bcrypt cost at most \
                         {MAX_BCRYPT_COST}, Argon2id memory, passes and lanes at most the \
                         configured `passwords.argon2` ones (or the defaults, if higher)"
                        )))
                    }
                }
                Some(imported)
            }
            (None, None) => None,
        };
    let at = now();
    let user = User {
        id: UserId::generate(),
        username: body.username,
        email: body.email.map(|email| email.to_lowercase()),
        name: body.name,
        status: body.status,
        role: body.role,
        tenant_id: body.tenant_id,
        groups: Vec::new(),
        ip_allowlist: body.ip_allowlist,
        rate_limits,
        quotas,
        password_hash,
        password_change_required: false,
        mfa_required: body.mfa_required,
        created_at: at,
        updated_at: at,
    };
    let audit = caller
        .audit("user.created", user.id.as_str(), json!({}))
        .created(&user)
        .in_tenant(user.tenant_id.as_deref());
    state
        .store
        .create_user(&user, &audit)
        .await
        .map_err(|e| name_taken(e, &user))?;
    Ok((StatusCode::CREATED, Json(user)))
}

pub async fn list(
    State(state): State<AppState>,
    _: Caller<ReadUsers>,
    ApiQuery(query): ApiQuery<UserFilter>,
    window: PageWindow,
) -> Result<impl IntoResponse, ApiError> {
    let page = state
        .store
        .users(&UserQuery {
            text: query.q.filter(|q| !q.is_empty()),
            status: query.status,
            offset: window.offset(),
            limit: window.per_page,
        })
        .await?;
    Ok(Json(window.list(page)))
}

pub async fn get(
    State(state): State<AppState>,
    _: SelfOr<ReadUsers>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

pub async fn me(caller: Caller) -> impl IntoResponse {
    Json(caller.0)
}

pub async fn change(
    State(state): State<AppState>,
    caller: Caller<ManageUsers>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangeUser>,
) -> Result<impl IntoResponse, ApiError> {
    let mut user = find_changeable(&state, &id).await?;
    let before = user.clone();
    if let Some(email) = body.email {
        validate_optional(&email, validate_email)?;
        user.email = email.map(|email| email.to_lowercase());
    }
    if let Some(name) = body.name {
        validate_optional(&name, validate_name)?;
        user.name = name;
    }
    if let Some(tenant_id) = body.tenant_id {
        validate_tenant(&tenant_id)?;
        user.tenant_id = tenant_id;
    }
    if let Some(ip_allowlist) = body.ip_allowlist {
        user.ip_allowlist = ip_allowlist;
    }
    if let Some(mfa_required) = body.mfa_required {
        user.mfa_required = mfa_required;
    }
    user.rate_limits = settings::rate_limits(body.rate_limits, user.rate_limits)?;
    user.quotas = settings::quotas(body.quotas, user.quotas)?;
    if let Some(password) = &body.password {
        check_password(&state, password, PasswordOwner::of(&user))?;
        user.password_hash = Some(hash(&state, password).await?);
    }
    if let Some(status) = body.status {
        if status == UserStatus::Deleted {
            return Err(ApiError::validation(
                "`status` deleted is set with DELETE /api/v1/users/{id}",
            ));
        }
        user.status = status;
    }
    if let Some(role) = body.role {
        user.role = role;
    }
    if user.id == caller.0.id && (user.role != Role::Admin || user.status != UserStatus::Active) {
        return Err(ApiError::conflict(
            "cannot_demote_self",
            "an admin cannot suspend or demote themselves",
        ));
    }
    user.updated_at = now();
    // A new password or a suspension ends every session, so that neither a stolen session nor
    // a later reactivation carries the old access over.
    let ends_sessions = body.password.is_some() || user.status == UserStatus::Suspended;
    let audit = caller
        .audit(
            "user.updated",
            user.id.as_str(),
            json!({
                "password_changed": body.password.is_some(),
                "sessions_ended": ends_sessions,
            }),
        )
        .changed(&before, &user)
        .in_tenant(user.tenant_id.as_deref());
    let written = if ends_sessions {
        let tokens_expire_at = state.tokens.issued_tokens_expire_at();
        state
            .store
            .update_user_ending_sessions(&user, tokens_expire_at, &audit)
            .await
    } else {
        state.store.update_user(&user, &audit).await
    };
    written.map_err(|e| name_taken(e, &user))?;
    Ok(Json(user))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller<ManageUsers>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let mut user = find(&state, &id).await?;
    if user.id == caller.0.id {
        return Err(ApiError::conflict(
            "cannot_delete_self",
            "an admin cannot delete themselves",
        ));
    }
    if user.status != UserStatus::Deleted {
        let before = user.clone();
        user.status = UserStatus::Deleted;
        user.updated_at = now();
        let audit = caller
            .audit(
                "user.deleted",
                user.id.as_str(),
                json!({"sessions_ended": true}),
            )
            .changed(&before, &user)
            .in_tenant(user.tenant_id.as_deref());
        let tokens_expire_at = state.tokens.issued_tokens_expire_at();
        state
            .store
            .update_user_ending_sessions(&user, tokens_expire_at, &audit)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The user with this id, unless deleted (409 `user_deleted`), or 404 naming it.
pub async fn find_changeable(state: &AppState, id: &str) -> Result<User, ApiError> {
    let user = find(state, id).await?;
    if user.status == UserStatus::Deleted {
        return Err(ApiError::conflict(
            "user_deleted",
            "a deleted user cannot be changed",
        ));
    }
    Ok(user)
}

/// A write of only part of a user that finds the user changed meanwhile (`NotFound`) is
/// 409 `code`, having changed nothing.
pub(super) fn unless_changed_meanwhile(
    written: Result<(), StoreError>,
    code: &'static str,
    message: &str,
) -> Result<(), ApiError> {
    match written {
        Err(StoreError::NotFound) => Err(ApiError::conflict(code, message.to_string())),
        other => Ok(other?),
    }
}

/// The user with this id, or 404 naming it.
pub async fn find(state: &AppState, id: &str) -> Result<User, ApiError> {
    let id = UserId::from_string(id.to_string());
    found(state.store.user(&id).await, "user")
}

fn validate_optional(
    value: &Option<String>,
    check: fn(&str) -> Result<(), InvalidField>,
) -> Result<(), ApiError> {
    value.as_deref().map(check).transpose()?;
    Ok(())
}

fn validate_tenant(tenant_id: &Option<String>) -> Result<(), ApiError> {
    match tenant_id {
        Some(id) if id.is_empty() || id.len() > 64 => Err(ApiError::validation(
            "`tenant_id` must be 1 to 64 characters",
        )),
        _ => Ok(()),
    }
}

/// 409 `username_taken` or `email_taken` when another user has the name in any case.
pub(super) fn name_taken(error: StoreError, user: &User) -> ApiError {
    match error {
        StoreError::Conflict("email") => ApiError::conflict(
            "email_taken",
            format!(
                "email {:?} belongs to another user",
                user.email.as_deref().unwrap_or_default()
            ),
        ),
        StoreError::Conflict(_) => ApiError::conflict(
            "username_taken",
            format!("username {:?} is already taken", user.username),
        ),
        other => other.into(),
    }
}

/// 400 `validation_failed` naming the rule of the password policy that `password` breaks.
pub fn check_password(
    state: &AppState,
    password: &str,
    owner: PasswordOwner,
) -> Result<(), ApiError> {
    state
        .password_policy
        .check(password, owner)
        .map_err(|broken| {
            ApiError::validation(format!(
                "`password` breaks the rule {}: it {}",
                broken.rule, broken.message
            ))
            .with_field("rule", json!(broken.rule))
        })
}

/// Argon2id is deliberately slow, so it runs off the async workers, a bounded few at once.
pub async fn hash(state: &AppState, password: &str) -> Result<String, ApiError> {
    let hashed = state
        .passwords
        .hash(password.to_string())
        .await
        .map_err(|_| ApiError::busy("too many password changes are in progress"))?;
    match hashed {
        Some(Ok(hash)) => Ok(hash),
        problem => {
            let problem = problem.map_or_else(
                || "the hashing task failed".to_string(),
                |failed| failed.err().map(|e| e.to_string()).unwrap_or_default(),
            );
            tracing::error!(%problem, "password hashing failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the password could not be stored",
            ))
        }
    }
}
