//! `/api/v1/groups`: groups, their routing pools and their members.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{found, ApiError};
use super::extract::{nullable, ApiJson, Caller};
use super::paging::whole_list;
use super::permission::{ManageGroups, ReadGroups};
use super::settings::{self, QuotasPatch, RateLimitsPatch, SettingsField};
use super::users::find as find_user;
use super::AppState;
use crate::accounts::group::{validate_group_name, validate_group_pools, Group};
use crate::domain::ids::{GroupId, UserId};
use crate::domain::now;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;
use crate::routing::pool::PoolName;
use crate::store::StoreError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    name: String,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    pools: Vec<PoolName>,
    #[serde(default, deserialize_with = "nullable")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[serde(default, deserialize_with = "nullable")]
    quotas: SettingsField<QuotasPatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeGroup {
    name: Option<String>,
    priority: Option<i32>,
    pools: Option<Vec<PoolName>>,
    #[serde(default, deserialize_with = "nullable")]
    rate_limits: SettingsField<RateLimitsPatch>,
    #[serde(default, deserialize_with = "nullable")]
    quotas: SettingsField<QuotasPatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    user_id: String,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    ApiJson(body): ApiJson<CreateGroup>,
) -> Result<impl IntoResponse, ApiError> {
    validate_group_name(&body.name)?;
    validate_group_pools(&body.pools)?;
    let rate_limits = settings::rate_limits(body.rate_limits, RateLimits::default())?;
    let quotas = settings::quotas(body.quotas, Quotas::default())?;
    let at = now();
    let group = Group {
        id: GroupId::generate(),
        name: body.name,
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

pub async fn list(
    State(state): State<AppState>,
    _: Caller<ReadGroups>,
) -> Result<impl IntoResponse, ApiError> {
    let groups = state.store.groups().await?;
    let mut items = Vec::with_capacity(groups.len());
    for group in &groups {
        items.push(with_members(
            group,
            state.store.members(&group.id).await?.len(),
        ));
    }
    Ok(Json(whole_list(&items)))
}

pub async fn get(
    State(state): State<AppState>,
    _: Caller<ReadGroups>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let group = find(&state, &id).await?;
    let members = state.store.members(&group.id).await?.len();
    Ok(Json(with_members(&group, members)))
}

pub async fn change(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangeGroup>,
) -> Result<impl IntoResponse, ApiError> {
    let mut group = find(&state, &id).await?;
    let before = group.clone();
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

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let group = find(&state, &id).await?;
    let audit = caller
        .audit("group.deleted", group.id.as_str(), json!({}))
        .removed(&group);
    state.store.delete_group(&group.id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn members(
    State(state): State<AppState>,
    _: Caller<ReadGroups>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let group = find(&state, &id).await?;
    let members = state.store.members(&group.id).await?;
    Ok(Json(whole_list(&members)))
}

pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AddMember>,
) -> Result<impl IntoResponse, ApiError> {
    let group = find(&state, &id).await?;
    let user = find_user(&state, &body.user_id).await?;
    let audit = caller
        .audit(
            "group.member_added",
            group.id.as_str(),
            json!({"user_id": user.id}),
        )
        .created(&Membership::of(&group, &user.id))
        .in_tenant(user.tenant_id.as_deref());
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

pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller<ManageGroups>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let group = find(&state, &id).await?;
    let user = UserId::from_string(user_id);
    let audit = caller
        .audit(
            "group.member_removed",
            group.id.as_str(),
            json!({"user_id": user}),
        )
        .removed(&Membership::of(&group, &user));
    match state.store.remove_member(&group.id, &user, &audit).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::not_found("membership")),
        Err(other) => return Err(other.into()),
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn find(state: &AppState, id: &str) -> Result<Group, ApiError> {
    let id = GroupId::from_string(id.to_string());
    found(state.store.group(&id).await, "group")
}

/// A user's membership of a group, as its audit entries record it.
#[derive(Serialize)]
struct Membership<'a> {
    group_id: &'a GroupId,
    group: &'a str,
    user_id: &'a UserId,
}

impl<'a> Membership<'a> {
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
