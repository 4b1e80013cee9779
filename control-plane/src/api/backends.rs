//! `/api/v1/backends` and `/api/v1/pools`: the upstream pools Envoy routes to, with live health.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{found, ApiError};
use super::extract::{nullable, ApiJson, Caller};
use super::openapi::shapes::ListOf;
use super::openapi::shapes::PoolSettings;
use super::openapi::shapes::PoolView;
use super::openapi::shapes::XdsNodes;
use super::paging::PageQuery;
use super::paging::{whole_list, PageWindow};
use super::permission::{ManageBackends, ReadBackends};
use super::AppState;
use crate::domain::ids::BackendId;
use crate::domain::now;
use crate::routing::backend::{
    validate_health_check_path, Backend, BackendHealth, BackendUrl, Weight,
};
use crate::routing::pool::{HealthCheckSettings, PoolName};
use crate::routing::upstream_tls::{self, TrustedCa};

const DEFAULT_HEALTH_CHECK_PATH: &str = "/";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackend {
    #[schema(
        pattern = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$",
        example = "http://10.0.0.5:8080"
    )]
    url: String,
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100, example = 100)]
    weight: Option<Weight>,
    #[schema(max_length = 200, pattern = r"^/[!-~]*$", example = "/healthz")]
    health_check_path: Option<String>,
    #[schema(value_type = Option<String>, max_length = 63, pattern = "^[a-z0-9-]+$", example = "default")]
    pool: Option<PoolName>,
    enabled: Option<bool>,
    tls_sni: Option<String>,
    tls_ca: Option<String>,
    tls_insecure: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeBackend {
    #[schema(
        pattern = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$",
        example = "http://10.0.0.5:8080"
    )]
    url: Option<String>,
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100, example = 100)]
    weight: Option<Weight>,
    #[schema(max_length = 200, pattern = r"^/[!-~]*$", example = "/healthz")]
    health_check_path: Option<String>,
    #[schema(value_type = Option<String>, max_length = 63, pattern = "^[a-z0-9-]+$", example = "default")]
    pool: Option<PoolName>,
    enabled: Option<bool>,
    tls_sni: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    tls_ca: Option<Option<String>>,
    tls_insecure: Option<bool>,
}

#[utoipa::path(
    post, path = "/api/v1/backends", tag = "backends",
    request_body = CreateBackend,
    responses((status = 201, description = "The backend", body = Backend), (status = 409, description = "`too_many_backends`: the pool is full"))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller<ManageBackends>,
    ApiJson(body): ApiJson<CreateBackend>,
) -> Result<impl IntoResponse, ApiError> {
    let url = BackendUrl::parse(&body.url)?;
    let weight = body.weight.unwrap_or(Weight::DEFAULT);
    let health_check_path = body
        .health_check_path
        .unwrap_or_else(|| DEFAULT_HEALTH_CHECK_PATH.to_string());
    validate_health_check_path(&health_check_path)?;
    let pool = body.pool.unwrap_or_else(PoolName::default_pool);
    validate_sni(body.tls_sni.as_deref())?;
    let tls_ca = body.tls_ca.as_deref().map(TrustedCa::parse).transpose()?;
    let at = now();
    let backend = Backend {
        id: BackendId::generate(),
        url,
        weight,
        health_check_path,
        pool,
        enabled: body.enabled.unwrap_or(true),
        tls_sni: body.tls_sni,
        tls_ca,
        tls_insecure: body.tls_insecure.unwrap_or(false),
        health: BackendHealth::default(),
        created_at: at,
        updated_at: at,
    };
    upstream_tls::check(&backend)?;
    ensure_room(&state, &backend.pool, None).await?;
    let audit = caller
        .audit("backend.created", backend.id.as_str(), json!({}))
        .created(&backend);
    state.store.create_backend(&backend, &audit).await?;
    upstream_tls::warn_if_unverified(&backend);
    Ok((StatusCode::CREATED, Json(backend)))
}

#[utoipa::path(
    get, path = "/api/v1/backends", tag = "backends",
    params(PageQuery),
    responses((status = 200, description = "A page of backends, with live health", body = ListOf<Backend>))
)]
pub async fn list(
    State(state): State<AppState>,
    _: Caller<ReadBackends>,
    window: PageWindow,
) -> Result<impl IntoResponse, ApiError> {
    let page = state
        .store
        .backend_page(window.offset(), window.per_page)
        .await?;
    Ok(Json(window.list(page)))
}

#[utoipa::path(
    get, path = "/api/v1/backends/{id}", tag = "backends",
    params(("id" = String, Path, description = "The backend's id", example = "b_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 200, description = "The backend", body = Backend), (status = 404, description = "`not_found`: no such backend"))
)]
pub async fn get(
    State(state): State<AppState>,
    _: Caller<ReadBackends>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(find(&state, &id).await?))
}

#[utoipa::path(
    patch, path = "/api/v1/backends/{id}", tag = "backends",
    params(("id" = String, Path, description = "The backend's id", example = "b_3k9xq2m8v7c4n1b6z5l0")),
    request_body = ChangeBackend,
    responses((status = 200, description = "The backend as changed", body = Backend), (status = 404, description = "`not_found`: no such backend"), (status = 409, description = "`too_many_backends` or `too_few_backends`"))
)]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller<ManageBackends>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ChangeBackend>,
) -> Result<impl IntoResponse, ApiError> {
    let mut backend = find(&state, &id).await?;
    let before = backend.clone();
    if let Some(url) = body.url {
        let url = BackendUrl::parse(&url)?;
        if url != backend.url {
            backend.url = url;
            backend.health = BackendHealth::default();
        }
    }
    if let Some(weight) = body.weight {
        backend.weight = weight;
    }
    if let Some(path) = body.health_check_path {
        validate_health_check_path(&path)?;
        backend.health_check_path = path;
    }
    if let Some(pool) = body.pool {
        if pool != backend.pool {
            ensure_room(&state, &pool, Some(&backend.id)).await?;
        }
        backend.pool = pool;
    }
    if let Some(enabled) = body.enabled {
        backend.enabled = enabled;
    }
    if body.tls_sni.is_some() {
        validate_sni(body.tls_sni.as_deref())?;
        backend.tls_sni = body.tls_sni;
    }
    if let Some(tls_ca) = body.tls_ca {
        backend.tls_ca = tls_ca.as_deref().map(TrustedCa::parse).transpose()?;
    }
    if let Some(insecure) = body.tls_insecure {
        backend.tls_insecure = insecure;
    }
    upstream_tls::check(&backend)?;
    backend.updated_at = now();
    let audit = caller
        .audit("backend.updated", backend.id.as_str(), json!({}))
        .changed(&before, &backend);
    state.store.update_backend(&backend, &audit).await?;
    upstream_tls::warn_if_unverified(&backend);
    Ok(Json(backend))
}

#[utoipa::path(
    delete, path = "/api/v1/backends/{id}", tag = "backends",
    params(("id" = String, Path, description = "The backend's id", example = "b_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "`not_found`: no such backend"), (status = 409, description = "`too_few_backends`"))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller<ManageBackends>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let backend = find(&state, &id).await?;
    let audit = caller
        .audit("backend.deleted", backend.id.as_str(), json!({}))
        .removed(&backend);
    state.store.delete_backend(&backend.id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/pools`: each pool with its backends' health and its health-check settings.
#[utoipa::path(
    get, path = "/api/v1/pools", tag = "backends",
    responses((status = 200, description = "Every pool with backends", body = ListOf<PoolView>))
)]
pub async fn pools(
    State(state): State<AppState>,
    _: Caller<ReadBackends>,
) -> Result<impl IntoResponse, ApiError> {
    let settings: BTreeMap<String, HealthCheckSettings> =
        state.store.pool_settings().await?.into_iter().collect();
    let min_backends = u64::try_from(state.pool_limits.min_backends).unwrap_or(u64::MAX);
    let defaults = *state.default_health_check.get();
    let items: Vec<_> = state
        .store
        .pool_backends()
        .await?
        .iter()
        .map(|pool| {
            json!({
                "name": pool.pool,
                "enabled_backends": pool.enabled,
                "available_backends": pool.available,
                "below_minimum": pool.enabled < min_backends,
                "health_check": settings.get(pool.pool.as_str()).copied().unwrap_or(defaults),
            })
        })
        .collect();
    Ok(Json(whole_list(&items)))
}

/// `PUT /api/v1/pools/{name}`: the pool's health-check settings.
#[utoipa::path(
    put, path = "/api/v1/pools/{name}", tag = "backends",
    params(("name" = String, Path, description = "The pool's name", example = "default")),
    request_body = HealthCheckSettings,
    responses((status = 200, description = "The pool's settings", body = PoolSettings))
)]
pub async fn set_pool(
    State(state): State<AppState>,
    caller: Caller<ManageBackends>,
    Path(name): Path<String>,
    ApiJson(settings): ApiJson<HealthCheckSettings>,
) -> Result<impl IntoResponse, ApiError> {
    let name = PoolName::parse(&name)?;
    settings.validate()?;
    let before = state
        .store
        .pool_settings()
        .await?
        .into_iter()
        .find(|(pool, _)| pool == name.as_str())
        .map_or(*state.default_health_check.get(), |(_, settings)| settings);
    let audit = caller
        .audit("pool.updated", name.as_str(), json!({}))
        .changed(
            &json!({"name": name, "health_check": before}),
            &json!({"name": name, "health_check": settings}),
        );
    state
        .store
        .set_pool_settings(name.as_str(), &settings, &audit)
        .await?;
    Ok(Json(json!({"name": name, "health_check": settings})))
}

/// `GET /api/v1/xds/nodes`: each connected Envoy's accepted versions and refusals.
#[utoipa::path(
    get, path = "/api/v1/xds/nodes", tag = "backends",
    responses((status = 200, description = "What every Envoy accepted and refused", body = XdsNodes))
)]
pub async fn xds_nodes(
    State(state): State<AppState>,
    _: Caller<ReadBackends>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({"nodes": state.xds_nodes.all()})))
}

/// Refuses a backend that would take `pool` past its maximum.
async fn ensure_room(
    state: &AppState,
    pool: &PoolName,
    moving: Option<&BackendId>,
) -> Result<(), ApiError> {
    let in_pool = state.store.backends_in_pool(pool, moving).await?;
    if in_pool >= u64::try_from(state.pool_limits.max_backends).unwrap_or(u64::MAX) {
        return Err(ApiError::conflict(
            "pool_full",
            format!(
                "pool {pool:?} already has {in_pool} backends (the maximum is {})",
                state.pool_limits.max_backends
            ),
        ));
    }
    Ok(())
}

fn validate_sni(sni: Option<&str>) -> Result<(), ApiError> {
    match sni {
        Some(name)
            if name.is_empty()
                || name.len() > 253
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
        {
            Err(ApiError::validation("`tls_sni` must be a DNS name"))
        }
        _ => Ok(()),
    }
}

async fn find(state: &AppState, id: &str) -> Result<Backend, ApiError> {
    let id = BackendId::from_string(id.to_string());
    found(state.store.backend(&id).await, "backend")
}
