//! What a person does about their own account: `POST /api/v1/users/me/password`, and
//! `GET|DELETE /api/v1/users/me/sessions[/{id}]` (see and end their sessions, one or all).

use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::access::ClientAddress;
use super::auth::session_cookie;
use super::error::ApiError;
use super::extract::{ApiJson, ChangingOwnPassword, Me};
use super::openapi::shapes::ListOf;
use super::paging::whole_list;
use super::throttle::{self, too_many_attempts};
use super::users::{check_password, hash, unless_changed_meanwhile};
use super::AppState;
use crate::accounts::user::User;
use crate::domain::ids::SessionId;
use crate::domain::{now, Timestamp};
use crate::identity::device;
use crate::identity::lockout::Admission;
use crate::identity::password_policy::PasswordOwner;
use crate::identity::session::Session;
use crate::store::StoreError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Changes the caller's password, given the current one, and ends every other session of
/// theirs. Wrong current passwords count like failed logins (per address and per account).
/// The calling session lives on; after an admin's reset it allows everything again from its
/// next refresh.
#[utoipa::path(
    post, path = "/api/v1/users/me/password", tag = "users",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "The caller, password changed", body = User),
        (status = 403, description = "`wrong_password` or `no_password`"),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    address: ClientAddress,
    ChangingOwnPassword(me): ChangingOwnPassword,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<impl IntoResponse, ApiError> {
    let user = &me.user;
    let verified_hash = verify_current_password(
        &state,
        address,
        user,
        &body.current_password,
        "current_password",
    )
    .await?;
    let verified_hash = verified_hash.as_str();
    if body.new_password == body.current_password {
        // Else the temporary password of an admin's reset, which the admin knows, could stay.
        return Err(ApiError::validation(
            "`new_password` breaks the rule reused: it is the current password",
        )
        .with_field("rule", json!("reused")));
    }
    check_password(&state, &body.new_password, PasswordOwner::of(user))?;
    let new_hash = hash(&state, &body.new_password).await?;
    let audit = me.audit(
        "user.password_changed",
        user.id.as_str(),
        json!({"sessions_ended": "others"}),
    );
    // Only the password, and only if nothing changed the account since it was read: an
    // admin's suspension, deletion or reset meanwhile wins.
    let written = state
        .store
        .change_own_password(
            &user.id,
            verified_hash,
            &new_hash,
            now(),
            me.session.as_ref(),
            state.tokens.issued_tokens_expire_at(),
            &audit,
        )
        .await;
    unless_changed_meanwhile(
        written,
        "conflict",
        "the account changed while the password was being checked; nothing was changed, try \
         again",
    )?;
    Ok(Json(state.store.user(&user.id).await?))
}

/// Checks `password` (the body's `field`) against `user`'s own, counting a wrong one like a
/// failed login (per address and per account); answers the hash it matched.
pub(super) async fn verify_current_password(
    state: &AppState,
    address: ClientAddress,
    user: &User,
    password: &str,
    field: &str,
) -> Result<String, ApiError> {
    throttle::refuse_over_budget(state, address).await?;
    if let Admission::Locked { until } = state.lockout.attempt(&user.username).await? {
        return Err(too_many_attempts(
            (until - now()).to_std().unwrap_or_default(),
        ));
    }
    let verified = state
        .passwords
        .verify(password.to_string(), user.password_hash.clone())
        .await
        .map_err(|_| ApiError::busy("too many password checks are in progress"))?;
    let Some(verified_hash) = user.password_hash.clone().filter(|_| verified.matches) else {
        state.address_failures.record(address.0).await;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_current_password",
            format!("`{field}` is not the account's password"),
        ));
    };
    state.lockout.forget(&user.username).await?;
    Ok(verified_hash)
}

/// One of the caller's sessions, as they see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SessionView {
    id: SessionId,
    method: &'static str,
    /// The browser and system, from the user agent.
    device: String,
    user_agent: Option<String>,
    address: Option<String>,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    last_used_at: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    expires_at: Timestamp,
    /// Whether this request came with it.
    current: bool,
}

impl SessionView {
    fn of(session: Session, current: Option<&SessionId>) -> Self {
        Self {
            current: current == Some(&session.id),
            device: device::describe(session.user_agent.as_deref()),
            method: session.method.as_str(),
            user_agent: session.user_agent,
            address: session.address,
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.refresh_expires_at,
            id: session.id,
        }
    }
}

/// The caller's live sessions, newest first.
#[utoipa::path(
    get, path = "/api/v1/users/me/sessions", tag = "users",
    responses((status = 200, description = "The caller's live sessions", body = ListOf<SessionView>))
)]
pub async fn sessions(
    State(state): State<AppState>,
    me: Me,
) -> Result<impl IntoResponse, ApiError> {
    let sessions: Vec<SessionView> = state
        .store
        .live_sessions_of(&me.user.id, now())
        .await?
        .into_iter()
        .map(|session| SessionView::of(session, me.session.as_ref()))
        .collect();
    Ok(Json(whole_list(&sessions)))
}

/// Ends one of the caller's sessions; another user's, or an ended one, is 404.
#[utoipa::path(
    delete, path = "/api/v1/users/me/sessions/{id}", tag = "users",
    params(("id" = String, Path, description = "The session's id", example = "s_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 204, description = "The session ended"), (status = 404, description = "`not_found`: no such session"))
)]
pub async fn end_session(
    State(state): State<AppState>,
    me: Me,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = SessionId::from_string(id);
    let at = now();
    match state.store.session(&id).await {
        Ok(session) if session.user_id == me.user.id && session.is_live(at) => {}
        Ok(_) | Err(StoreError::NotFound) => return Err(ApiError::not_found("session")),
        Err(other) => return Err(other.into()),
    }
    let audit = me.audit("session.ended", id.as_str(), json!({"by": "user"}));
    match state
        .store
        .revoke_session(&id, at, state.tokens.issued_tokens_expire_at(), &audit)
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(StoreError::NotFound) => Err(ApiError::not_found("session")),
        Err(other) => Err(other.into()),
    }
}

/// Logs the caller out everywhere: every session of theirs ends, this one included.
#[utoipa::path(
    delete, path = "/api/v1/users/me/sessions", tag = "users",
    responses((status = 204, description = "Every session of the caller ended"))
)]
pub async fn end_all_sessions(
    State(state): State<AppState>,
    me: Me,
) -> Result<impl IntoResponse, ApiError> {
    let audit = me.audit(
        "session.ended_everywhere",
        me.user.id.as_str(),
        json!({"by": "user"}),
    );
    state
        .store
        .end_sessions(
            &me.user.id,
            now(),
            state.tokens.issued_tokens_expire_at(),
            &audit,
        )
        .await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, session_cookie("", 0))],
    ))
}
