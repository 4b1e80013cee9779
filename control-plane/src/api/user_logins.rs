//! An admin's hold over a user's logins: `POST /api/v1/users/{id}/password-reset` (a new
//! password that must be changed at the next login) and `GET|DELETE
//! /api/v1/users/{id}/lockout` (the failed logins that hold the account back, and unlocking).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{ApiJson, OnUser};
use super::openapi::shapes::Lockout;
use super::openapi::shapes::UserAfterReset;
use super::permission::{ManageUsers, ReadUsers};
use super::users::{changeable, check_password, hash, unless_changed_meanwhile};
use super::AppState;
use crate::accounts::user::User;
use crate::domain::now;
use crate::identity::password_policy::PasswordOwner;

/// Groups of random characters in a generated temporary password, joined by `-`.
const TEMPORARY_PASSWORD_GROUPS: usize = 4;
const TEMPORARY_PASSWORD_GROUP_CHARS: usize = 6;
/// Draws of a temporary password before giving up on one the policy accepts.
const TEMPORARY_PASSWORD_DRAWS: usize = 100;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The temporary password; generated (and answered once) when absent.
    password: Option<String>,
}

/// Sets a temporary password and ends every session of the user; their next login may only
/// change the password.
#[utoipa::path(
    post, path = "/api/v1/users/{id}/password-reset", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    request_body = PasswordReset,
    responses(
        (status = 200, description = "The user; `temporary_password` when it was generated", body = UserAfterReset),
        (status = 404, description = "`not_found`: no such user"),
        (status = 409, description = "`user_deleted`"),
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    OnUser { caller, target }: OnUser<ManageUsers>,
    ApiJson(body): ApiJson<PasswordReset>,
) -> Result<impl IntoResponse, ApiError> {
    let user = changeable(target)?;
    let generated = body.password.is_none();
    let password = match body.password {
        Some(password) => {
            check_password(&state, &password, PasswordOwner::of(&user))?;
            password
        }
        None => temporary_password(&state, PasswordOwner::of(&user))?,
    };
    let new_hash = hash(&state, &password).await?;
    let at = now();
    let reset = User {
        password_change_required: true,
        updated_at: at,
        ..user.clone()
    };
    let audit = caller
        .audit(
            "user.password_reset",
            user.id.as_str(),
            json!({"generated": generated, "sessions_ended": true}),
        )
        .changed(&user, &reset)
        .in_tenant(user.audit_tenant());
    // Only the password: whatever else changed meanwhile stays.
    let written = state
        .store
        .reset_password(
            &user.id,
            &new_hash,
            at,
            state.tokens.issued_tokens_expire_at(),
            &audit,
        )
        .await;
    unless_changed_meanwhile(written, "user_deleted", "a deleted user cannot be changed")?;
    let mut answer = json!(state.store.user(&user.id).await?);
    if generated {
        answer["temporary_password"] = json!(password);
    }
    Ok(Json(answer))
}

/// A random password the policy accepts.
fn temporary_password(state: &AppState, owner: PasswordOwner) -> Result<String, ApiError> {
    let mut rng = rand::rng();
    (0..TEMPORARY_PASSWORD_DRAWS)
        .map(|_| {
            (0..TEMPORARY_PASSWORD_GROUPS)
                .map(|_| Alphanumeric.sample_string(&mut rng, TEMPORARY_PASSWORD_GROUP_CHARS))
                .collect::<Vec<_>>()
                .join("-")
        })
        .find(|password| state.password_policy.check(password, owner).is_ok())
        .ok_or_else(|| {
            ApiError::validation(
                "no temporary password meets the password policy; set `password` instead",
            )
        })
}

/// The failed logins that count against the user's name, and until when they hold it back.
#[utoipa::path(
    get, path = "/api/v1/users/{id}/lockout", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 200, description = "The failed logins held against the user", body = Lockout), (status = 404, description = "`not_found`: no such user"))
)]
pub async fn lockout(
    State(state): State<AppState>,
    OnUser { target: user, .. }: OnUser<ReadUsers>,
) -> Result<impl IntoResponse, ApiError> {
    let held = state.lockout.state(&user.username).await?;
    Ok(Json(json!({
        "user_id": user.id,
        "failures": held.failures,
        "locked_until": held.waiting_until,
    })))
}

/// Forgets the user's failed logins and wrong second-factor codes: the next attempt is
/// checked at once.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}/lockout", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 204, description = "Forgotten"), (status = 404, description = "`not_found`: no such user"))
)]
pub async fn unlock(
    State(state): State<AppState>,
    OnUser {
        caller,
        target: user,
    }: OnUser<ManageUsers>,
) -> Result<impl IntoResponse, ApiError> {
    state.lockout.forget(&user.username).await?;
    state.mfa_lockout.forget(user.id.as_str()).await?;
    let audit = caller
        .audit("user.unlocked", user.id.as_str(), json!({}))
        .in_tenant(user.audit_tenant());
    state.store.record_audit(&audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
