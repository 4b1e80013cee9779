//! Logins in two steps: a user with a confirmed TOTP whose password was right gets a sealed,
//! short-lived challenge instead of a session, and `POST /api/v1/auth/mfa` trades it, with a
//! current code or a backup code, for the session (through `open_session`, like every login).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::access::ClientAddress;
use super::auth::token_answer;
use super::error::ApiError;
use super::extract::ApiJson;
use super::login::{count_login, open_session, LoginAttempt};
use super::mfa::{admit_second_factor, check_code, has_confirmed_totp, wrong_code, CodeCheck};
use super::openapi::shapes::Tokens;
use super::AppState;
use crate::accounts::user::{User, UserStatus};
use crate::domain::now;
use crate::identity::mfa::MfaChallenge;
use crate::identity::totp::backup_code_hash;
use crate::store::StoreError;

/// After a login's first step proved `user`'s password: when the user has a confirmed TOTP,
/// the answer that asks for it (`mfa_required`, the challenge token and its lifetime).
pub(super) async fn challenge_if_enrolled(
    state: &AppState,
    user: &User,
    attempt: &LoginAttempt,
) -> Result<Option<Response>, ApiError> {
    if !has_confirmed_totp(state, &user.id).await? {
        return Ok(None);
    }
    let expires_at = now() + state.mfa.challenge_ttl;
    let challenge = MfaChallenge::new(
        &user.id,
        attempt.method,
        attempt.address.0.to_string(),
        expires_at,
    );
    count_login(attempt.method, "mfa_required");
    attempt
        .audit(
            state,
            "login.mfa_required",
            user.id.as_str(),
            "mfa_required",
        )
        .await;
    Ok(Some(
        Json(json!({
            "mfa_required": true,
            "mfa_token": challenge.seal(&state.sealer),
            "expires_in": state.mfa.challenge_ttl.num_seconds(),
        }))
        .into_response(),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactor {
    mfa_token: String,
    code: Option<String>,
    backup_code: Option<String>,
}

/// The second step of a login: the challenge of the first, from the same address, and a
/// current TOTP code (not one already used) or an unused backup code. A wrong code is
/// audited and counted against the user's second factor (backoff, then lockout) and the
/// client's address; an expired, tampered or spent challenge is 401 `invalid_mfa_token`.
#[utoipa::path(
    post, path = "/api/v1/auth/mfa", tag = "auth", security(()),
    request_body = SecondFactor,
    responses(
        (status = 200, description = "The session", body = Tokens),
        (status = 401, description = "`invalid_mfa_token` or `invalid_code`"),
        (status = 429, description = "`too_many_attempts`: wrong codes hold the factor or the address back"),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SecondFactor>,
) -> Result<Response, ApiError> {
    let factor = match (body.code, body.backup_code) {
        (Some(code), None) => Factor::Code(code),
        (None, Some(backup_code)) => Factor::BackupCode(backup_code),
        _ => {
            return Err(ApiError::validation(
                "give either `code` (from the authenticator) or `backup_code`",
            ))
        }
    };
    let at = now();
    let challenge =
        MfaChallenge::open(&state.sealer, &body.mfa_token, at).map_err(|_| invalid_mfa_token())?;
    let method = challenge
        .login_method()
        .filter(|method| state.login_methods.enabled(*method))
        .filter(|_| challenge.address == address.0.to_string())
        .ok_or_else(invalid_mfa_token)?;
    // Checked before any code is spent on it; spending it below settles a race.
    if state.store.mfa_challenge_spent(&challenge.id).await? {
        return Err(invalid_mfa_token());
    }
    let attempt = LoginAttempt::new(method, address, &headers);
    let user = match state.store.user(&challenge.user_id).await {
        Ok(user) if user.status == UserStatus::Active => user,
        Ok(_) | Err(StoreError::NotFound) => return Err(invalid_mfa_token()),
        Err(other) => return Err(other.into()),
    };
    if let Err(refused) = admit_second_factor(&state, address, &user.id).await {
        // Repeated at will without any code checked: sampled like the login's refusals.
        if state
            .login_refusals
            .due(format!("{} mfa {}", address.0, user.id))
        {
            attempt
                .audit(&state, "login.mfa_refused", user.id.as_str(), "locked")
                .await;
        }
        return Err(refused);
    }
    let check = match &factor {
        Factor::Code(code) => match state.store.totp_enrolment(&user.id).await? {
            Some(enrolment) => check_code(&state, &user, &enrolment, code).await?,
            None => CodeCheck::Wrong,
        },
        Factor::BackupCode(backup_code) => {
            let hash = backup_code_hash(&state.hasher, backup_code);
            if state.store.use_backup_code(&user.id, &hash, at).await? {
                CodeCheck::Accepted
            } else {
                CodeCheck::Wrong
            }
        }
    };
    if check != CodeCheck::Accepted {
        count_login(attempt.method, "mfa_refused");
        attempt
            .audit(&state, "login.mfa_failed", user.id.as_str(), check.as_str())
            .await;
        return Err(wrong_code(&state, address, StatusCode::UNAUTHORIZED).await);
    }
    if !state
        .store
        .spend_mfa_challenge(&challenge.id, challenge.expires_at, at)
        .await?
    {
        return Err(invalid_mfa_token());
    }
    state.mfa_lockout.forget(user.id.as_str()).await?;
    let (session, refresh) = open_session(&state, &user, &attempt).await?;
    token_answer(&state, &user, &session, &refresh).await
}

/// What a second step proves the user with.
enum Factor {
    Code(String),
    BackupCode(String),
}

/// 401 `invalid_mfa_token`: the challenge is not one this server issued, has expired, was
/// issued to another address or was already used; the login starts again.
fn invalid_mfa_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_mfa_token",
        "the MFA token is invalid, expired or used; log in again",
    )
}
