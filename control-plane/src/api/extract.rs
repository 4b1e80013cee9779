//! Extractors: JSON bodies with the project's error shape, the authenticated caller,
//! and list paging.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::error::ApiError;
use super::AppState;
use crate::accounts::api_key::{KeyStatus, PlainApiKey};
use crate::accounts::user::{Role, User, UserStatus};
use crate::domain::ids::SessionId;
use crate::domain::validation::with_refusal;
use crate::store::{Page, StoreError};

const API_KEY_HEADER: &str = "x-api-key";
/// The cookie holding a browser session's access token.
pub const SESSION_COOKIE: &str = "tollgate_session";
const MAX_CREDENTIAL_BYTES: usize = 8192;

/// A JSON body. Malformed input answers 400 `invalid_body`, and a value its type refuses
/// (see [`crate::domain::validation`]) 400 `validation_failed` with the rule's message.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(json) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|rejection: JsonRejection| {
                // Every malformed body is a validation error (400), as the contract says;
                // only an oversized one keeps its own status.
                let status = match rejection.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, "invalid_body", rejection.body_text())
            })?;
        match with_refusal(|| serde_path_to_error::deserialize::<_, T>(json)) {
            (Ok(value), _) => Ok(Self(value)),
            (Err(_), Some(refusal)) => Err(ApiError::validation(refusal)),
            (Err(error), None) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("Failed to deserialize the JSON body into the target type: {error}"),
            )),
        }
    }
}

/// A body field that may be absent (leave as is), `null` (clear) or a value (set).
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Query parameters; malformed input answers 400 in the documented error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| ApiError::validation(rejection.body_text()))
    }
}

/// The authenticated user making an admin-API request.
pub struct Caller(pub User);

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.0.role == Role::Admin
    }

    /// Admins act on anyone; others only on themselves.
    pub fn require_self_or_admin(&self, user_id: &str) -> Result<(), ApiError> {
        if self.is_admin() || self.0.id.as_str() == user_id {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let credential = bearer_or_api_key(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        if looks_like_jwt(&credential) {
            return session_caller(state, &credential).await.map(Self);
        }
        let credential = PlainApiKey::from_client(credential);
        let hash = state.hasher.hash(&credential.digest());
        let owner = match state.store.key_by_hash(&hash).await {
            Ok(owner) => owner,
            Err(StoreError::NotFound) => return Err(ApiError::unauthenticated()),
            Err(other) => return Err(other.into()),
        };
        let expired = owner
            .key
            .expires_at
            .is_some_and(|at| at <= crate::domain::now());
        if owner.key.status != KeyStatus::Active
            || expired
            || owner.user.status != UserStatus::Active
        {
            return Err(ApiError::unauthenticated());
        }
        Ok(Self(owner.user))
    }
}

/// The credential of a request: `X-API-Key`, else `Authorization: Bearer`, else the session
/// cookie.
pub fn bearer_or_api_key(headers: &HeaderMap) -> Option<String> {
    let from_api_key_header = headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok());
    let from_bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        });
    let from_cookie = || {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.trim())
    };
    from_api_key_header
        .or(from_bearer)
        .or_else(from_cookie)
        .filter(|credential| !credential.is_empty() && credential.len() <= MAX_CREDENTIAL_BYTES)
        .map(str::to_string)
}

/// API keys never contain dots; a compact JWT has exactly two.
fn looks_like_jwt(credential: &str) -> bool {
    credential.bytes().filter(|&b| b == b'.').count() == 2
}

/// A verified access token of a live session of an active user.
async fn session_caller(state: &AppState, token: &str) -> Result<User, ApiError> {
    let claims = state
        .tokens
        .verify(token)
        .map_err(|_| ApiError::unauthenticated())?;
    let session = match state
        .store
        .session(&SessionId::from_string(claims.sid))
        .await
    {
        Ok(session) => session,
        Err(StoreError::NotFound) => return Err(ApiError::unauthenticated()),
        Err(other) => return Err(other.into()),
    };
    if session.revoked_at.is_some() || session.user_id.as_str() != claims.sub {
        return Err(ApiError::unauthenticated());
    }
    let user = state.store.user(&session.user_id).await?;
    if user.status != UserStatus::Active {
        return Err(ApiError::unauthenticated());
    }
    Ok(user)
}

const DEFAULT_PER_PAGE: u64 = 50;
const MAX_PER_PAGE: u64 = 200;

/// Where a page of a listing starts: `?page=` counts from 1, `?per_page=` is 1-200.
#[derive(Debug, Clone, Copy)]
pub struct PageWindow {
    pub page: u64,
    pub per_page: u64,
}

impl PageWindow {
    pub fn from_query(page: Option<u64>, per_page: Option<u64>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
        if page == 0 {
            return Err(ApiError::validation("`page` starts at 1"));
        }
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(ApiError::validation("`per_page` must be 1 to 200"));
        }
        Ok(Self { page, per_page })
    }

    pub fn offset(self) -> u64 {
        (self.page - 1).saturating_mul(self.per_page)
    }

    /// The documented list shape: `{"items", "total", "page", "per_page"}`.
    pub fn list<T: serde::Serialize>(self, page: Page<T>) -> serde_json::Value {
        serde_json::json!({
            "items": page.items,
            "total": page.total,
            "page": self.page,
            "per_page": self.per_page,
        })
    }
}

/// An unpaged listing in the documented list shape: every item on page 1.
pub fn whole_list<T: serde::Serialize>(items: &[T]) -> serde_json::Value {
    serde_json::json!({
        "items": items,
        "total": items.len(),
        "page": 1,
        "per_page": items.len(),
    })
}
