//! `/api/v1/tenants`: tenants, their settings and their statistics. Admins manage them; a
//! tenant's own staff read theirs only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{nullable, ApiJson, ApiQuery, Caller};
use super::openapi::shapes::{ListOf, TenantView};
use super::paging::{PageQuery, PageWindow};
use super::permission::{ManageTenants, ReadTenants};
use super::reach::Reach;
use super::settings::{self, QuotasPatch, RateLimitsPatch, SettingsField};
use super::AppState;
use crate::accounts::tenant::{
    validate_default_role, validate_tenant_id, validate_tenant_name, Tenant,
};
use crate::accounts::user::{Role, User};
use crate::domain::ids::GroupId;
use crate::domain::now;
use crate::identity::session::LoginMethod;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;
use crate::limits::tenant_pool::TenantPool;
use crate::store::StoreError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Chosen by the caller, or generated.
    #[schema(max_length = 64, pattern = r"^[a-z0-9][a-z0-9_-]*$", example = "acme")]
    id: Option<String>,
    #[schema(min_length = 1, max_length = 200, example = "Acme Corp")]
    name: String,
    #[serde(default = "default_role")]
    default_role: Role,
    default_group_id: Option<String>,
    #[serde(default)]
    mfa_required: bool,
    #[serde(default)]
    login_methods: Vec<String>,
    #[schema(value_type = Option<RateLimitsPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[schema(value_type = Option<QuotasPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    quotas: SettingsField<QuotasPatch>,
}

fn default_role() -> Role {
    Role::User
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeTenant {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    default_role: Option<Role>,
    #[schema(value_type = Option<String>, nullable)]
    #[serde(default, deserialize_with = "nullable")]
    default_group_id: Option<Option<String>>,
    mfa_required: Option<bool>,
    login_methods: Option<Vec<String>>,
    #[schema(value_type = Option<RateLimitsPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[schema(value_type = Option<QuotasPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    quotas: SettingsField<QuotasPatch>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteOptions {
    /// Delete the tenant's users with it.
    #[serde(default)]
    cascade: bool,
}

#[utoipa::path(
    post, path = "/api/v1/tenants", tag = "tenants",
    request_body = CreateTenant,
    responses((status = 201, description = "The tenant", body = Tenant), (status = 409, description = "`tenant_exists`: the id is taken, now or before"))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller<ManageTenants>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<impl IntoResponse, ApiError> {
    let id = match body.id {
        Some(id) => {
            validate_tenant_id(&id)?;
            id
        }
        None => generated_id(),
    };
    validate_tenant_name(&body.name)?;
    validate_default_role(body.default_role)?;
    let at = now();
    let tenant = Tenant {
        default_group_id: default_group(&state, &id, body.default_group_id).await?,
        id,
        name: body.name,
        default_role: body.default_role,
        mfa_required: body.mfa_required,
        login_methods: login_methods(&body.login_methods)?,
        rate_limits: settings::rate_limits(body.rate_limits, RateLimits::default())?,
        quotas: settings::quotas(body.quotas, Quotas::default())?,
        created_at: at,
        updated_at: at,
    };
    let audit = caller
        .audit("tenant.created", &tenant.id, json!({}))
        .created(&tenant)
        .in_tenant(Some(&tenant.id));
    match state.store.create_tenant(&tenant, &audit).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(tenant))),
        Err(StoreError::Conflict(_)) => Err(ApiError::conflict(
            "tenant_exists",
            format!("tenant id {:?} is taken", tenant.id),
        )),
        Err(other) => Err(other.into()),
    }
}

#[utoipa::path(
    get, path = "/api/v1/tenants", tag = "tenants",
    params(PageQuery),
    responses((status = 200, description = "A page of the tenants within reach", body = ListOf<Tenant>))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller<ReadTenants>,
    window: PageWindow,
) -> Result<impl IntoResponse, ApiError> {
    let page = state
        .store
        .tenants(
            caller.reach().only_tenant(),
            window.offset(),
            window.per_page,
        )
        .await?;
    Ok(Json(window.list(page)))
}

#[utoipa::path(
    get, path = "/api/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id", example = "acme")),
    responses((status = 200, description = "The tenant and its statistics", body = TenantView), (status = 404, description = "`not_found`: no such tenant within reach"))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller<ReadTenants>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = find(&state, &caller.reach(), &id).await?;
    let period = TenantPool::of(&tenant, &state.quotas.get(), now()).period;
    let statistics = state
        .store
        .tenant_statistics(&tenant.id, period.start)
        .await?;
    let mut answer = json!(tenant);
    answer["statistics"] = json!({
        "users": statistics.users,
        "active_users": statistics.active_users,
        "keys": statistics.keys,
        "period_start": period.start,
        "period_end": period.end,
        "requests": statistics.requests,
        "bandwidth_bytes": statistics.bytes,
    });
    Ok(Json(answer))
}

#[utoipa::path(
    patch, path = "/api/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id", example = "acme")),
    request_body = ChangeTenant,
    responses((status = 200, description = "The tenant as changed", body = Tenant), (status = 404, description = "`not_found`: no such tenant"))
)]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller<ManageTenants>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangeTenant>,
) -> Result<impl IntoResponse, ApiError> {
    let before = find(&state, &caller.reach(), &id).await?;
    let mut tenant = before.clone();
    if let Some(name) = body.name {
        validate_tenant_name(&name)?;
        tenant.name = name;
    }
    if let Some(role) = body.default_role {
        validate_default_role(role)?;
        tenant.default_role = role;
    }
    if let Some(group) = body.default_group_id {
        tenant.default_group_id = default_group(&state, &tenant.id, group).await?;
    }
    if let Some(mfa_required) = body.mfa_required {
        tenant.mfa_required = mfa_required;
    }
    if let Some(methods) = body.login_methods {
        tenant.login_methods = login_methods(&methods)?;
    }
    tenant.rate_limits = settings::rate_limits(body.rate_limits, tenant.rate_limits)?;
    tenant.quotas = settings::quotas(body.quotas, tenant.quotas)?;
    tenant.updated_at = now();
    let audit = caller
        .audit("tenant.updated", &tenant.id, json!({}))
        .changed(&before, &tenant)
        .in_tenant(Some(&tenant.id));
    state.store.update_tenant(&tenant, &audit).await?;
    Ok(Json(tenant))
}

#[utoipa::path(
    delete, path = "/api/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "The tenant's id", example = "acme"), DeleteOptions),
    responses((status = 204, description = "Deleted, with its groups (and its users, with `cascade`)"), (status = 404, description = "`not_found`: no such tenant"), (status = 409, description = "`tenant_not_empty`: the tenant has users"))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller<ManageTenants>,
    Path(id): Path<String>,
    ApiQuery(options): ApiQuery<DeleteOptions>,
) -> Result<impl IntoResponse, ApiError> {
    let tenant = find(&state, &caller.reach(), &id).await?;
    let audit = caller
        .audit(
            "tenant.deleted",
            &tenant.id,
            json!({ "cascade": options.cascade }),
        )
        .removed(&tenant)
        .in_tenant(Some(&tenant.id));
    let tokens_expire_at = state.tokens.issued_tokens_expire_at();
    match state
        .store
        .delete_tenant(&tenant.id, options.cascade, tokens_expire_at, &audit)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::Conflict(_)) => Err(ApiError::conflict(
            "tenant_not_empty",
            "the tenant has users; delete them first, or delete with ?cascade=true to delete \
             them with it",
        )),
        Err(StoreError::NotFound) => Err(ApiError::not_found("tenant")),
        Err(other) => Err(other.into()),
    }
}

/// The tenant `id`, or 404 when there is none or `reach` does not cover it.
pub async fn find(state: &AppState, reach: &Reach, id: &str) -> Result<Tenant, ApiError> {
    if !reach.covers_tenant(Some(id)) {
        return Err(ApiError::not_found("tenant"));
    }
    match state.store.tenant(id).await {
        Err(StoreError::NotFound) => Err(ApiError::not_found("tenant")),
        other => Ok(other?),
    }
}

/// The tenant `user` belongs to, with its settings; `None` for a user of no tenant (or of one
/// since deleted, which holds no users that are not deleted).
pub async fn of_user(state: &AppState, user: &User) -> Result<Option<Tenant>, ApiError> {
    let Some(id) = user.tenant_id.as_deref() else {
        return Ok(None);
    };
    match state.store.tenant(id).await {
        Ok(tenant) => Ok(Some(tenant)),
        Err(StoreError::NotFound) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// A fresh tenant id, `t_` and random characters, in the form callers may choose.
fn generated_id() -> String {
    GroupId::generate().as_str().replacen("g_", "t_", 1)
}

/// The default group named in a body: one of the tenant's own or of the whole deployment
/// (400 naming `default_group_id` otherwise).
async fn default_group(
    state: &AppState,
    tenant: &str,
    group: Option<String>,
) -> Result<Option<GroupId>, ApiError> {
    let Some(group) = group else {
        return Ok(None);
    };
    let unusable = || {
        ApiError::validation(
            "`default_group_id` must name a group of the tenant or of the whole deployment",
        )
    };
    match state.store.group(&GroupId::from_string(group)).await {
        Ok(group) if group.tenant_id.as_deref().is_none_or(|own| own == tenant) => {
            Ok(Some(group.id))
        }
        Ok(_) | Err(StoreError::NotFound) => Err(unusable()),
        Err(other) => Err(other.into()),
    }
}

/// Login method names, each one of `local`, `ldap` and `oidc`, none twice.
fn login_methods(names: &[String]) -> Result<Vec<LoginMethod>, ApiError> {
    let mut methods = Vec::with_capacity(names.len());
    for name in names {
        let method = LoginMethod::parse(name).ok_or_else(|| {
            ApiError::validation(format!(
                "`login_methods` may hold local, ldap and oidc, not {name:?}"
            ))
        })?;
        if methods.contains(&method) {
            return Err(ApiError::validation(format!(
                "`login_methods` names {name:?} twice"
            )));
        }
        methods.push(method);
    }
    Ok(methods)
}
