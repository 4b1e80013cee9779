//! `/api/v1/users/{id}/keys`: issue, list, revoke and rotate a user's API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tollgate_filter_core::access::Scopes;

use super::access::may_hand_out;
use super::error::{found, ApiError};
use super::extract::{ApiJson, ApiQuery, OnUser, SelfOr};
use super::openapi::shapes::ListOf;
use super::openapi::shapes::NewKey;
use super::paging::whole_list;
use super::permission::{ManageLimits, ManageUsers, ReadUsers};
use super::settings::{self, RateLimitsPatch, SettingsField};
use super::users::find;
use super::AppState;
use crate::accounts::api_key::{ApiKey, KeyStatus, PlainApiKey};
use crate::accounts::user::{User, UserStatus};
use crate::config::MAX_ROTATION_GRACE_SECS;
use crate::domain::ids::ApiKeyId;
use crate::domain::{now, Timestamp};
use crate::limits::rate_limits::RateLimits;

const MAX_KEY_NAME_CHARS: usize = 100;
const MAX_ACTIVE_KEYS_PER_USER: u64 = 50;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]+$",
        example = "ci"
    )]
    name: String,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-01-31T09:30:00Z")]
    expires_at: Option<Timestamp>,
    #[serde(default)]
    scopes: Vec<String>,
    #[schema(value_type = Option<RateLimitsPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    rate_limits: SettingsField<RateLimitsPatch>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeKey {
    #[schema(value_type = Option<RateLimitsPatch>, nullable)]
    #[serde(default, deserialize_with = "settings::settings_object")]
    rate_limits: SettingsField<RateLimitsPatch>,
}

/// A key as answered on creation: the only time `key` is ever shown.
#[derive(Serialize)]
struct IssuedKey<'a> {
    #[serde(flatten)]
    record: &'a ApiKey,
    key: &'a str,
}

#[utoipa::path(
    post, path = "/api/v1/users/{id}/keys", tag = "keys",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key; `key` is shown this once", body = NewKey),
        (status = 404, description = "`not_found`: no such user"),
        (status = 409, description = "`user_deleted` or `too_many_keys`"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: SelfOr<ManageUsers>,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<impl IntoResponse, ApiError> {
    let user = find(&state, &user_id).await?;
    if user.status == UserStatus::Deleted {
        return Err(ApiError::conflict(
            "user_deleted",
            "a deleted user cannot get keys",
        ));
    }
    validate(&body)?;
    let scopes = Scopes::parse(&body.scopes)
        .map_err(|error| ApiError::validation(format!("`scopes`: {error}")))?;
    may_hand_out(caller.scopes(), &scopes)?;
    if body.rate_limits.is_some() {
        caller.also_holding::<ManageLimits>()?;
    }
    let rate_limits = settings::rate_limits(body.rate_limits, RateLimits::default())?;
    if state.store.active_keys_of(&user.id).await? >= MAX_ACTIVE_KEYS_PER_USER {
        return Err(ApiError::conflict(
            "too_many_keys",
            format!("a user may hold at most {MAX_ACTIVE_KEYS_PER_USER} active keys"),
        ));
    }
    let plain = PlainApiKey::generate(&state.key_prefix, &user.id);
    let tenant = user.audit_tenant().map(str::to_string);
    let key = ApiKey {
        rate_limits,
        ..ApiKey::new(
            user.id,
            body.name,
            &plain,
            &state.hasher,
            body.expires_at,
            body.scopes,
        )
    };
    let audit = caller
        .audit("api_key.created", key.id.as_str(), json!({}))
        .created(&key)
        .in_tenant(tenant.as_deref());
    state.store.create_key(&key, &audit).await?;
    Ok(issued(&key, &plain))
}

#[utoipa::path(
    get, path = "/api/v1/users/{id}/keys", tag = "keys",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 200, description = "Every key of the user", body = ListOf<ApiKey>), (status = 404, description = "`not_found`: no such user"))
)]
pub async fn list(
    State(state): State<AppState>,
    _: SelfOr<ReadUsers>,
    Path(user_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let user = find(&state, &user_id).await?;
    let keys = state.store.keys_of(&user.id).await?;
    Ok(Json(whole_list(&keys)))
}

#[utoipa::path(
    delete, path = "/api/v1/users/{id}/keys/{key_id}", tag = "keys",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0"), ("key_id" = String, Path, description = "The key's id", example = "k_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 204, description = "Revoked (or already was)"), (status = 404, description = "`not_found`: no such user or API key"))
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: SelfOr<ManageUsers>,
    Path((user_id, key_id)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (owner, key) = owned_key(&state, &user_id, &key_id).await?;
    if key.status == KeyStatus::Active {
        let at = now();
        let audit = caller
            .audit("api_key.revoked", key.id.as_str(), json!({}))
            .changed(&key, &key.revoked(at))
            .in_tenant(owner.audit_tenant());
        state.store.revoke_key(&key.id, at, &audit).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a key's rate limits. Only for those who set limits: a key's limits may be the
/// operator's cap.
#[utoipa::path(
    patch, path = "/api/v1/users/{id}/keys/{key_id}", tag = "keys",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0"), ("key_id" = String, Path, description = "The key's id", example = "k_3k9xq2m8v7c4n1b6z5l0")),
    request_body = ChangeKey,
    responses((status = 200, description = "The key as changed", body = ApiKey), (status = 404, description = "`not_found`: no such user or API key"))
)]
pub async fn change(
    State(state): State<AppState>,
    OnUser { caller, .. }: OnUser<ManageLimits>,
    Path((user_id, key_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ChangeKey>,
) -> Result<impl IntoResponse, ApiError> {
    let (owner, mut key) = owned_key(&state, &user_id, &key_id).await?;
    let before = key.clone();
    key.rate_limits = settings::rate_limits(body.rate_limits, key.rate_limits)?;
    let audit = caller
        .audit("api_key.updated", key.id.as_str(), json!({}))
        .changed(&before, &key)
        .in_tenant(owner.audit_tenant());
    state
        .store
        .set_key_limits(&key.id, &key.rate_limits, &audit)
        .await?;
    Ok(Json(key))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// How long the old key keeps working beside the new one (0: it stops at once).
    #[param(maximum = 2_592_000, example = 3600)]
    grace_secs: Option<u32>,
}

/// Issues a key in place of another. The old key keeps working for the grace period
/// (`keys.rotation_grace_secs`, or `?grace_secs=`), which its `expires_at` then shows, so
/// clients can move to the new one without an outage; with no grace it is revoked at once.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/keys/{key_id}/rotate", tag = "keys",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0"), ("key_id" = String, Path, description = "The key's id", example = "k_3k9xq2m8v7c4n1b6z5l0"), Rotation),
    responses(
        (status = 201, description = "The replacement; `key` is shown this once", body = NewKey),
        (status = 404, description = "`not_found`: no such user or API key"),
        (status = 409, description = "`key_revoked` or `key_replaced`"),
    )
)]
pub async fn rotate(
    State(state): State<AppState>,
    caller: SelfOr<ManageUsers>,
    Path((user_id, key_id)): Path<(String, String)>,
    ApiQuery(rotation): ApiQuery<Rotation>,
) -> Result<impl IntoResponse, ApiError> {
    let grace_secs = rotation.grace_secs.unwrap_or(state.key_rotation_grace_secs);
    if grace_secs > MAX_ROTATION_GRACE_SECS {
        return Err(ApiError::validation(format!(
            "`grace_secs` must be 0 to {MAX_ROTATION_GRACE_SECS}"
        ))
        .with_field("field", json!("grace_secs")));
    }
    let (owner, old) = owned_key(&state, &user_id, &key_id).await?;
    if old.status != KeyStatus::Active {
        return Err(ApiError::conflict(
            "key_revoked",
            "a revoked key cannot be rotated",
        ));
    }
    if old.replaced_by.is_some() {
        // Else whoever holds a leaked key could mint a fresh one after its owner rotated it.
        return Err(ApiError::conflict(
            "key_replaced",
            "the key was already rotated; rotate its replacement, or revoke it",
        ));
    }
    // The new key keeps the old one's scopes, so the caller's must cover them. Scopes stored
    // before creation checked them may not parse: only an unrestricted caller covers those.
    let scopes = Scopes::parse(&old.scopes).unwrap_or_default();
    may_hand_out(caller.scopes(), &scopes)?;
    let plain = PlainApiKey::generate(&state.key_prefix, &old.user_id);
    let new = ApiKey {
        rate_limits: old.rate_limits,
        ..ApiKey::new(
            old.user_id.clone(),
            old.name.clone(),
            &plain,
            &state.hasher,
            old.expires_at,
            old.scopes.clone(),
        )
    };
    let at = now();
    let old_works_until = (grace_secs > 0).then(|| at + Duration::seconds(grace_secs.into()));
    let audit = caller
        .audit(
            "api_key.rotated",
            old.id.as_str(),
            json!({"replaced_by": new.id, "old_works_until": old_works_until}),
        )
        .changed(&old, &old.replaced(&new.id, at, old_works_until))
        .in_tenant(owner.audit_tenant());
    state
        .store
        .rotate_key(&old.id, &new, at, old_works_until, &audit)
        .await?;
    Ok(issued(&new, &plain))
}

fn issued(key: &ApiKey, plain: &PlainApiKey) -> impl IntoResponse {
    let body = IssuedKey {
        record: key,
        key: plain.expose(),
    };
    (StatusCode::CREATED, Json(json!(body)))
}

/// The key `key_id` of the user `user_id`, with that user.
async fn owned_key(
    state: &AppState,
    user_id: &str,
    key_id: &str,
) -> Result<(User, ApiKey), ApiError> {
    let user = find(state, user_id).await?;
    let key = found(
        state
            .store
            .key(&ApiKeyId::from_string(key_id.to_string()))
            .await,
        "API key",
    )?;
    if key.user_id != user.id {
        return Err(ApiError::not_found("API key"));
    }
    Ok((user, key))
}

fn validate(body: &CreateKey) -> Result<(), ApiError> {
    let name_chars = body.name.chars().count();
    if name_chars == 0 || name_chars > MAX_KEY_NAME_CHARS || body.name.chars().any(char::is_control)
    {
        return Err(ApiError::validation(
            "`name` must be 1 to 100 printable characters",
        ));
    }
    if body.expires_at.is_some_and(|at| at <= now()) {
        return Err(ApiError::validation("`expires_at` must be in the future"));
    }
    Ok(())
}
