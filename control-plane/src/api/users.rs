//! `/api/v1/users`: create, list, read, change and delete users.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{found, ApiError};
use super::extract::{nullable, ApiJson, ApiQuery, Caller, OnUser, SelfOr};
use super::openapi::shapes::ListOf;
use super::paging::PageQuery;
use super::paging::PageWindow;
use super::permission::{ManageLimits, ManageUsers, ReadUsers};
use super::reach::Reach;
use super::settings::{self, QuotasPatch, RateLimitsPatch, SettingsField};
use super::{groups, tenants, AppState};
use crate::accounts::ip_allowlist::IpAllowlist;
use crate::accounts::tenant::Tenant;
use crate::accounts::user::{
    validate_email, validate_name, validate_username, Role, User, UserStatus,
};
use crate::domain::ids::{GroupId, UserId};
use crate::domain::now;
use crate::domain::validation::InvalidField;
use crate::identity::password::{HashRefused, MAX_BCRYPT_COST};
use crate::identity::password_policy::PasswordOwner;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;
use crate::store::{LoginSource, StoreError, UserOrder, UserQuery};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9._@-]+$",
        example = "alice"
    )]
    username: String,
    #[schema(format = Email, example = "alice@example.com")]
    email: Option<String>,
    name: Option<String>,
    #[schema(min_length = 8, example = "correct horse battery")]
    password: Option<String>,
    /// A hash from an older system (bcrypt or Argon2id), instead of `password`.
    password_hash: Option<String>,
    /// The tenant's default role, or `user`, when absent.
    role: Option<Role>,
    #[serde(default = "default_status")]
    status: UserStatus,
    /// The caller's own tenant when they belong to one.
    tenant_id: Option<String>,
    /// Group ids; the tenant's default group, if any, when absent.
    groups: Option<Vec<String>>,
    #[serde(flatten)]
    enterprise: EnterpriseFields,
    #[serde(default)]
    ip_allowlist: IpAllowlist,
    /// The user must log in with a second factor.
    #[serde(default)]
    mfa_required: bool,
    #[schema(value_type = Option<RateLimitsPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[schema(value_type = Option<QuotasPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    quotas: SettingsField<QuotasPatch>,
}

fn default_status() -> UserStatus {
    UserStatus::Active
}

/// The organisation fields of a directory entry, each absent (as is), `null` (cleared) or text.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct EnterpriseFields {
    #[serde(default, deserialize_with = "nullable")]
    organization: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    department: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    employee_id: Option<Option<String>>,
}

impl EnterpriseFields {
    /// Sets on `user` what the body holds, each checked.
    fn apply(self, user: &mut User) -> Result<(), ApiError> {
        let fields = [
            ("organization", self.organization, &mut user.organization),
            ("department", self.department, &mut user.department),
            ("employee_id", self.employee_id, &mut user.employee_id),
        ];
        for (field, value, slot) in fields {
            if let Some(value) = value {
                if let Some(text) = &value {
                    validate_enterprise_field(field, text)?;
                }
                *slot = value;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeUser {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(format = Email, example = "alice@example.com")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    name: Option<Option<String>>,
    #[schema(min_length = 8)]
    password: Option<String>,
    role: Option<Role>,
    status: Option<UserStatus>,
    #[serde(default, deserialize_with = "nullable")]
    tenant_id: Option<Option<String>>,
    /// Replaces every membership.
    groups: Option<Vec<String>>,
    #[serde(flatten)]
    enterprise: EnterpriseFields,
    ip_allowlist: Option<IpAllowlist>,
    mfa_required: Option<bool>,
    #[schema(value_type = Option<RateLimitsPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[schema(value_type = Option<QuotasPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    quotas: SettingsField<QuotasPatch>,
}

impl ChangeUser {
    /// Whether the body sets anything beside the limits and quotas.
    fn changes_more_than_limits(&self) -> bool {
        let enterprise = &self.enterprise;
        self.email.is_some()
            || self.name.is_some()
            || self.password.is_some()
            || self.role.is_some()
            || self.status.is_some()
            || self.tenant_id.is_some()
            || self.groups.is_some()
            || enterprise.organization.is_some()
            || enterprise.department.is_some()
            || enterprise.employee_id.is_some()
            || self.ip_allowlist.is_some()
            || self.mfa_required.is_some()
    }
}

/// What narrows a listing of users, and its order; its page is a [`PageWindow`].
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    q: Option<String>,
    status: Option<UserStatus>,
    role: Option<Role>,
    tenant_id: Option<String>,
    group: Option<String>,
    source: Option<LoginSource>,
    #[serde(default)]
    sort: UserOrder,
}

#[utoipa::path(
    post, path = "/api/v1/users", tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, description = "The user", body = User),
        (status = 404, description = "`not_found`: the tenant or a group named does not exist within reach"),
        (status = 409, description = "`already_exists` or `email_taken`"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller<ManageUsers>,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, ApiError> {
    validate_username(&body.username)?;
    validate_optional(&body.email, validate_email)?;
    validate_optional(&body.name, validate_name)?;
    let tenant = tenant_for_new_user(&state, &caller, body.tenant_id).await?;
    let role = body
        .role
        .or(tenant.as_ref().map(|tenant| tenant.default_role))
        .unwrap_or(Role::User);
    may_grant(
        &caller,
        role,
        tenant.as_ref().map(|tenant| tenant.id.as_str()),
    )?;
    if body.rate_limits.is_some() || body.quotas.is_some() {
        caller.also_holding::<ManageLimits>()?;
    }
    let rate_limits = settings::rate_limits(body.rate_limits, RateLimits::default())?;
    let quotas = settings::quotas(body.quotas, Quotas::default())?;
    if body.status == UserStatus::Deleted {
        return Err(ApiError::validation(
            "`status` of a new user is active or suspended",
        ));
    }
    let tenant_id = tenant.as_ref().map(|tenant| tenant.id.clone());
    let groups = match body.groups {
        Some(groups) => groups_for(&state, &caller.reach(), tenant_id.as_deref(), groups).await?,
        // Chosen by an admin, who may pick a group of the whole deployment.
        None => tenant
            .and_then(|tenant| tenant.default_group_id)
            .map(|group| vec![group.to_string()])
            .unwrap_or_default(),
    };
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
    let mut user = User {
        email: body.email.map(|email| email.to_lowercase()),
        name: body.name,
        status: body.status,
        tenant_id,
        groups,
        ip_allowlist: body.ip_allowlist,
        rate_limits,
        quotas,
        password_hash,
        mfa_required: body.mfa_required,
        ..User::new(UserId::generate(), body.username, role, now())
    };
    body.enterprise.apply(&mut user)?;
    let audit = caller
        .audit("user.created", user.id.as_str(), json!({}))
        .created(&user)
        .in_tenant(user.audit_tenant());
    state
        .store
        .create_user(&user, &audit)
        .await
        .map_err(|e| name_taken(e, &user))?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    params(UserFilter, PageQuery),
    responses((status = 200, description = "A page of users", body = ListOf<User>))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller<ReadUsers>,
    ApiQuery(query): ApiQuery<UserFilter>,
    window: PageWindow,
) -> Result<impl IntoResponse, ApiError> {
    let page = state
        .store
        .users(&UserQuery {
            text: query.q.filter(|q| !q.is_empty()),
            status: query.status,
            role: query.role,
            tenant: query.tenant_id,
            group: query.group,
            source: query.source,
            confined_to: caller.reach().only_tenant().map(str::to_string),
            order: query.sort,
            offset: window.offset(),
            limit: window.per_page,
        })
        .await?;
    Ok(Json(window.list(page)))
}

#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 200, description = "The user", body = User), (status = 404, description = "`not_found`: no such user"))
)]
pub async fn get(
    State(state): State<AppState>,
    _: SelfOr<ReadUsers>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

#[utoipa::path(
    get, path = "/api/v1/users/me", tag = "users",
    responses((status = 200, description = "The caller", body = User))
)]
pub async fn me(caller: Caller) -> impl IntoResponse {
    Json(caller.0)
}

/// Changes a user: the limits and quotas for those who set limits, everything else for those
/// who manage users.
#[utoipa::path(
    patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    request_body = ChangeUser,
    responses(
        (status = 200, description = "The user as changed", body = User),
        (status = 404, description = "`not_found`: no such user"),
        (status = 409, description = "`user_deleted`, `email_taken` or `last_admin`"),
    )
)]
pub async fn change(
    State(state): State<AppState>,
    OnUser { caller, target }: OnUser<ReadUsers>,
    ApiJson(body): ApiJson<ChangeUser>,
) -> Result<impl IntoResponse, ApiError> {
    let sets_limits = body.rate_limits.is_some() || body.quotas.is_some();
    if sets_limits {
        caller.also_holding::<ManageLimits>()?;
    }
    if body.changes_more_than_limits() || !sets_limits {
        caller.also_holding::<ManageUsers>()?;
    }
    if target.id == caller.0.id
        && caller.0.role != Role::Admin
        && (body.password.is_some() || body.mfa_required.is_some() || body.ip_allowlist.is_some())
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "own_security_settings",
            "change your own password with POST /api/v1/users/me/password; your second factor \
             and allowlist are set by an admin",
        ));
    }
    let before = changeable(target)?;
    let mut user = before.clone();
    if let Some(email) = body.email {
        validate_optional(&email, validate_email)?;
        user.email = email.map(|email| email.to_lowercase());
    }
    if let Some(name) = body.name {
        validate_optional(&name, validate_name)?;
        user.name = name;
    }
    body.enterprise.apply(&mut user)?;
    if let Some(tenant_id) = body.tenant_id {
        user.tenant_id = match tenant_id {
            Some(id) => Some(tenants::find(&state, &caller.reach(), &id).await?.id),
            None if caller.reach().covers_tenant(None) => None,
            None => return Err(ApiError::not_found("tenant")),
        };
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
    if user.role != before.role || user.tenant_id != before.tenant_id {
        may_grant(&caller, user.role, user.tenant_id.as_deref())?;
    }
    if user.id == caller.0.id && (user.role != caller.0.role || user.status != UserStatus::Active) {
        return Err(ApiError::conflict(
            "cannot_demote_self",
            "no one can suspend themselves or change their own role",
        ));
    }
    let regroup = match body.groups {
        Some(groups) => {
            let reach = caller.reach();
            let mut wanted = groups_for(&state, &reach, user.tenant_id.as_deref(), groups).await?;
            // Memberships the caller cannot see stay: they may be an operator's limits.
            for kept in out_of_reach(&state, &reach, &before.groups).await? {
                if !wanted.contains(&kept) {
                    wanted.push(kept);
                }
            }
            user.groups = wanted;
            true
        }
        None if user.tenant_id != before.tenant_id => {
            // Memberships never cross tenants: groups of the old tenant are left behind.
            user.groups = groups_for(
                &state,
                &caller.reach(),
                user.tenant_id.as_deref(),
                kept_on_move(&state, &user.groups).await?,
            )
            .await?;
            true
        }
        None => false,
    };
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
        .in_tenant(user.audit_tenant());
    let tokens_expire_at = ends_sessions.then(|| state.tokens.issued_tokens_expire_at());
    let written = match (regroup, tokens_expire_at) {
        (true, _) => {
            state
                .store
                .update_user_with_groups(&user, tokens_expire_at, &audit)
                .await
        }
        (false, Some(tokens_expire_at)) => {
            state
                .store
                .update_user_ending_sessions(&user, tokens_expire_at, &audit)
                .await
        }
        (false, None) => state.store.update_user(&user, &audit).await,
    };
    written.map_err(|e| name_taken(e, &user))?;
    Ok(Json(user))
}

/// Soft-deletes a user: the account stays for the audit trail and a later restore, while
/// every key is revoked and every session ends.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses(
        (status = 204, description = "Deleted: the user can no longer authenticate, and their keys are revoked"),
        (status = 404, description = "`not_found`: no such user"),
        (status = 409, description = "`last_admin`: the last active admin stays"),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    OnUser { caller, target }: OnUser<ManageUsers>,
) -> Result<impl IntoResponse, ApiError> {
    let mut user = target;
    if user.id == caller.0.id {
        return Err(ApiError::conflict(
            "cannot_delete_self",
            "no one can delete themselves",
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
                json!({"sessions_ended": true, "keys_revoked": true}),
            )
            .changed(&before, &user)
            .in_tenant(user.audit_tenant());
        let tokens_expire_at = state.tokens.issued_tokens_expire_at();
        state
            .store
            .delete_user(&user, tokens_expire_at, &audit)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Brings a deleted user back, active, with no keys or sessions: those ended with the
/// deletion and stay ended.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/restore", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 200, description = "The user, active again", body = User), (status = 404, description = "`not_found`: no such user"), (status = 409, description = "`user_not_deleted`"))
)]
pub async fn restore(
    State(state): State<AppState>,
    OnUser { caller, target }: OnUser<ManageUsers>,
) -> Result<impl IntoResponse, ApiError> {
    let before = target.clone();
    let mut user = target;
    if user.status != UserStatus::Deleted {
        return Err(ApiError::conflict(
            "user_not_deleted",
            "only a deleted user can be restored",
        ));
    }
    if let Some(tenant) = user.tenant_id.as_deref() {
        if let Err(StoreError::NotFound) = state.store.tenant(tenant).await {
            // The tenant went with its users; an admin brings the user back without one.
            if caller.reach() != Reach::Everything {
                return Err(ApiError::not_found("user"));
            }
            user.tenant_id = None;
            user.groups = kept_on_move(&state, &user.groups).await?;
        }
    }
    user.status = UserStatus::Active;
    user.updated_at = now();
    let audit = caller
        .audit("user.restored", user.id.as_str(), json!({}))
        .changed(&before, &user)
        .in_tenant(user.audit_tenant());
    state.store.update_user(&user, &audit).await?;
    Ok(Json(user))
}

/// The tenant a new user joins: the one named, or the caller's own when they belong to one
/// (404 for a tenant that does not exist or is out of the caller's reach).
async fn tenant_for_new_user(
    state: &AppState,
    caller: &Caller<ManageUsers>,
    named: Option<String>,
) -> Result<Option<Tenant>, ApiError> {
    let reach = caller.reach();
    match named.or_else(|| reach.only_tenant().map(str::to_string)) {
        Some(id) => Ok(Some(tenants::find(state, &reach, &id).await?)),
        None => Ok(None),
    }
}

/// 403 `role_not_grantable` unless the caller may give `role`; 400 for a tenant admin
/// without a tenant.
fn may_grant<P>(caller: &Caller<P>, role: Role, tenant: Option<&str>) -> Result<(), ApiError> {
    if !caller.0.role.may_grant(role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "role_not_grantable",
            format!(
                "a {} cannot grant the role {}",
                caller.0.role.as_str(),
                role.as_str()
            ),
        ));
    }
    if role == Role::TenantAdmin && tenant.is_none() {
        return Err(ApiError::validation(
            "`tenant_id` is required for the role tenant_admin",
        ));
    }
    Ok(())
}

/// The groups `ids` name, as memberships of a user of `tenant`: each must exist within the
/// caller's reach (404 otherwise) and belong to that tenant or to the whole deployment.
async fn groups_for(
    state: &AppState,
    reach: &Reach,
    tenant: Option<&str>,
    ids: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let mut groups: Vec<String> = Vec::with_capacity(ids.len());
    for id in ids {
        let group = groups::find(state, reach, &id).await?;
        if group
            .tenant_id
            .as_deref()
            .is_some_and(|own| Some(own) != tenant)
        {
            return Err(ApiError::conflict(
                "tenant_mismatch",
                format!("group {id} belongs to another tenant than the user"),
            ));
        }
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    Ok(groups)
}

/// Of `groups`, those `reach` does not cover.
async fn out_of_reach(
    state: &AppState,
    reach: &Reach,
    groups: &[String],
) -> Result<Vec<String>, ApiError> {
    if *reach == Reach::Everything {
        return Ok(Vec::new());
    }
    let mut kept = Vec::new();
    for id in groups {
        match state.store.group(&GroupId::from_string(id.clone())).await {
            Ok(group) if !reach.covers_group(&group) => kept.push(id.clone()),
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(kept)
}

/// Of `groups`, those of the whole deployment, which a user keeps when moving tenants.
async fn kept_on_move(state: &AppState, groups: &[String]) -> Result<Vec<String>, ApiError> {
    let mut kept = Vec::new();
    for id in groups {
        let group = found(
            state.store.group(&GroupId::from_string(id.clone())).await,
            "group",
        )?;
        if group.tenant_id.is_none() {
            kept.push(id.clone());
        }
    }
    Ok(kept)
}

/// The user, unless deleted (409 `user_deleted`).
pub(super) fn changeable(user: User) -> Result<User, ApiError> {
    if user.status == UserStatus::Deleted {
        return Err(ApiError::conflict(
            "user_deleted",
            "a deleted user cannot be changed; restore them first",
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

/// The organisation fields are 1-200 printable characters.
fn validate_enterprise_field(field: &'static str, text: &str) -> Result<(), InvalidField> {
    validate_name(text).map_err(|invalid| InvalidField {
        field,
        problem: invalid.problem,
    })
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
