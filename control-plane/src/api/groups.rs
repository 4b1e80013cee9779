//! `/api/v1/groups`: groups, their routing pools and their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::extract::{user_within, ApiJson, Caller};
use super::openapi::shapes::GroupView;
use super::openapi::shapes::ListOf;
use super::openapi::shapes::Membership;
use super::paging::whole_list;
use super::permission::{ManageBackends, ManageGroups, ManageLimits, ReadGroups};
use super::reach::Reach;
use super::settings::{self, QuotasPatch, RateLimitsPatch, SettingsField};
use super::{tenants, AppState};
use crate::accounts::group::{validate_group_name, validate_group_pools, Group};
use crate::domain::ids::{GroupId, UserId};
use crate::domain::now;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;
use crate::routing::pool::PoolName;
use crate::store::StoreError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9._-]+$",
        example = "gold"
    )]
    name: String,
    /// The caller's own tenant when they belong to one; none for a group of the whole
    /// deployment.
    tenant_id: Option<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    #[schema(max_items = 10)]
    pools: Vec<PoolName>,
    #[schema(value_type = Option<RateLimitsPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[schema(value_type = Option<QuotasPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    quotas: SettingsField<QuotasPatch>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeGroup {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9._-]+$",
        example = "gold"
    )]
    name: Option<String>,
    priority: Option<i32>,
    #[schema(max_items = 10)]
    pools: Option<Vec<PoolName>>,
    #[schema(value_type = Option<RateLimitsPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[schema(value_type = Option<QuotasPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    quotas: SettingsField<QuotasPatch>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    user_id: String,
}

#[utoipa::path(
    post, path = "/api/v1/groups", tag = "groups",
    request_body = CreateGroup,
    responses((status = 201, description = "The group", body = GroupView), (status = 404, description = "`not_found`: the tenant named does not exist within reach"), (status = 409, description = "`name_taken`"))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    ApiJson(body): ApiJson<CreateGroup>,
) -> Result<impl IntoResponse, ApiError> {
    validate_group_name(&body.name)?;
    validate_group_pools(&body.pools)?;
    if !body.pools.is_empty() {
        caller.also_holding::<ManageBackends>()?;
    }
    if body.rate_limits.is_some() || body.quotas.is_some() {
        caller.also_holding::<ManageLimits>()?;
    }
    let reach = caller.reach();
    let tenant_id = match body
        .tenant_id
        .or_else(|| reach.only_tenant().map(str::to_string))
    {
        Some(id) => Some(tenants::find(&state, &reach, &id).await?.id),
        None => None,
    };
    let rate_limits = settings::rate_limits(body.rate_limits, RateLimits::default())?;
    let quotas = settings::quotas(body.quotas, Quotas::default())?;
    let at = now();
    let group = Group {
        id: GroupId::generate(),
        name: body.name,
        tenant_id,
        priority: body.priority,
        pools: body.pools,
        rate_limits,
        quotas,
        created_at: at,
        updated_at: at,
    };
    let audit = caller
        .audit("group.created", group.id.as_str(), json!({}))
        .created(&group);
    state
        .store
        .create_group(&group, &audit)
        .await
        .map_err(name_taken)?;
    Ok((StatusCode::CREATED, Json(with_members(&group, 0))))
}

#[utoipa::path(
    get, path = "/api/v1/groups", tag = "groups",
    responses((status = 200, description = "Every group", body = ListOf<GroupView>))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller<ReadGroups>,
) -> Result<impl IntoResponse, ApiError> {
    let reach = caller.reach();
    let groups = state.store.groups().await?;
    let mut items = Vec::with_capacity(groups.len());
    for group in groups.iter().filter(|group| reach.covers_group(group)) {
        items.push(with_members(
            group,
            state.store.members(&group.id).await?.len(),
        ));
    }
    Ok(Json(whole_list(&items)))
}

#[utoipa::path(
    get, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "The group's id", example = "g_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 200, description = "The group", body = GroupView), (status = 404, description = "`not_found`: no such group"))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller<ReadGroups>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let group = find(&state, &caller.reach(), &id).await?;
    let members = state.store.members(&group.id).await?.len();
    Ok(Json(with_members(&group, members)))
}

/// Changes a group: its name and priority for those who manage groups, its pools for those
/// who manage routing, its limits and quotas for those who set limits.
#[utoipa::path(
    patch, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "The group's id", example = "g_3k9xq2m8v7c4n1b6z5l0")),
    request_body = ChangeGroup,
    responses((status = 200, description = "The group as changed", body = GroupView), (status = 404, description = "`not_found`: no such group"), (status = 409, description = "`name_taken`"))
)]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller<ReadGroups>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangeGroup>,
) -> Result<impl IntoResponse, ApiError> {
    if body.name.is_some() || body.priority.is_some() {
        caller.also_holding::<ManageGroups>()?;
    }
    if body.pools.is_some() {
        caller.also_holding::<ManageBackends>()?;
    }
    if body.rate_limits.is_some() || body.quotas.is_some() {
        caller.also_holding::<ManageLimits>()?;
    }
    let any_change = caller.also_holding::<ManageGroups>().is_ok()
        || caller.also_holding::<ManageBackends>().is_ok()
        || caller.also_holding::<ManageLimits>().is_ok();
    if !any_change {
        return Err(ApiError::forbidden());
    }
    let before = find(&state, &caller.reach(), &id).await?;
    let mut group = before.clone();
    if let Some(name) = body.name {
        validate_group_name(&name)?;
        group.name = name;
    }
    if let Some(priority) = body.priority {
        group.priority = priority;
    }
    if let Some(pools) = body.pools {
        validate_group_pools(&pools)?;
        group.pools = pools;
    }
    group.rate_limits = settings::rate_limits(body.rate_limits, group.rate_limits)?;
    group.quotas = settings::quotas(body.quotas, group.quotas)?;
    group.updated_at = now();
    let audit = caller
        .audit("group.updated", group.id.as_str(), json!({}))
        .changed(&before, &group);
    state
        .store
        .update_group(&group, &audit)
        .await
        .map_err(name_taken)?;
    let members = state.store.members(&group.id).await?.len();
    Ok(Json(with_members(&group, members)))
}

#[utoipa::path(
    delete, path = "/api/v1/groups/{id}", tag = "groups",
    params(("id" = String, Path, description = "The group's id", example = "g_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`not_found`: no such group"))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let group = find(&state, &caller.reach(), &id).await?;
    let audit = caller
        .audit("group.deleted", group.id.as_str(), json!({}))
        .removed(&group);
    state.store.delete_group(&group.id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/api/v1/groups/{id}/members", tag = "groups",
    params(("id" = String, Path, description = "The group's id", example = "g_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 200, description = "The ids of the group's members", body = ListOf<UserId>), (status = 404, description = "`not_found`: no such group"))
)]
pub async fn members(
    State(state): State<AppState>,
    caller: Caller<ReadGroups>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let group = find(&state, &caller.reach(), &id).await?;
    let members = state.store.members(&group.id).await?;
    Ok(Json(whole_list(&members)))
}

#[utoipa::path(
    post, path = "/api/v1/groups/{id}/members", tag = "groups",
    params(("id" = String, Path, description = "The group's id", example = "g_3k9xq2m8v7c4n1b6z5l0")),
    request_body = AddMember,
    responses((status = 201, description = "Added", body = Membership), (status = 404, description = "`not_found`: no such group or user"), (status = 409, description = "`already_member`"))
)]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<impl IntoResponse, ApiError> {
    let reach = caller.reach();
    let group = find(&state, &reach, &id).await?;
    let user = user_within(&state, &reach, UserId::from_string(body.user_id)).await?;
    if group
        .tenant_id
        .as_deref()
        .is_some_and(|tenant| user.tenant_id.as_deref() != Some(tenant))
    {
        return Err(ApiError::conflict(
            "tenant_mismatch",
            "the group belongs to another tenant than the user",
        ));
    }
    let audit = caller
        .audit(
            "group.member_added",
            group.id.as_str(),
            json!({"user_id": user.id}),
        )
        .created(&RecordedMembership::of(&group, &user.id))
        .in_tenant(user.audit_tenant());
    match state.store.add_member(&group.id, &user.id, &audit).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::conflict(
                "already_member",
                "the user is already a member",
            ))
        }
        Err(other) => return Err(other.into()),
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"group_id": group.id, "user_id": user.id})),
    ))
}

#[utoipa::path(
    delete, path = "/api/v1/groups/{id}/members/{user_id}", tag = "groups",
    params(("id" = String, Path, description = "The group's id", example = "g_3k9xq2m8v7c4n1b6z5l0"), ("user_id" = String, Path, description = "The member's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 204, description = "Removed"), (status = 404, description = "`not_found`: no such group or membership"))
)]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let reach = caller.reach();
    let group = find(&state, &reach, &id).await?;
    let user = user_within(&state, &reach, UserId::from_string(user_id))
        .await?
        .id;
    let audit = caller
        .audit(
            "group.member_removed",
            group.id.as_str(),
            json!({"user_id": user}),
        )
        .removed(&RecordedMembership::of(&group, &user))
        .in_tenant(group.tenant_id.as_deref());
    match state.store.remove_member(&group.id, &user, &audit).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::not_found("membership")),
        Err(other) => return Err(other.into()),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The group `id`, or 404 when there is none or `reach` does not cover it.
pub async fn find(state: &AppState, reach: &Reach, id: &str) -> Result<Group, ApiError> {
    let id = GroupId::from_string(id.to_string());
    match state.store.group(&id).await {
        Ok(group) if reach.covers_group(&group) => Ok(group),
        Ok(_) | Err(StoreError::NotFound) => Err(ApiError::not_found("group")),
        Err(other) => Err(other.into()),
    }
}

/// A user's membership of a group, as its audit entries record it.
#[derive(Serialize)]
struct RecordedMembership<'a> {
    group_id: &'a GroupId,
    group: &'a str,
    user_id: &'a UserId,
}

impl<'a> RecordedMembership<'a> {
    fn of(group: &'a Group, user_id: &'a UserId) -> Self {
        Self {
            group_id: &group.id,
            group: &group.name,
            user_id,
        }
    }
}

fn with_members(group: &Group, members: usize) -> serde_json::Value {
    let mut value = json!(group);
    value["members"] = json!(members);
    value
}

fn name_taken(error: StoreError) -> ApiError {
    match error {
        StoreError::Conflict(_) => {
            ApiError::conflict("name_taken", "a group with this name exists")
        }
        other => other.into(),
    }
}
