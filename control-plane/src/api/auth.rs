//! Logins and sessions: `/api/v1/auth/*` and the JWKS the filter and others verify with.

use axum::extract::State;
use axum::http::header::{SET_COOKIE, USER_AGENT};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Duration;
use serde::Deserialize;
use serde_json::json;
use tollgate_filter_core::credential::SESSION_COOKIE;

use super::access::ClientAddress;
use super::error::ApiError;
use super::extract::{presented_session_token, ApiJson, Caller};
use super::permission::ManageSigningKeys;
use super::throttle::{self, too_many_attempts};
use super::AppState;
use crate::accounts::api_key::PlainApiKey;
use crate::accounts::user::{validate_username, User, UserStatus};
use crate::changes::audit::AuditEntry;
use crate::domain::ids::SessionId;
use crate::domain::now;
use crate::identity::device::kept_user_agent;
use crate::identity::lockout::Admission;
use crate::identity::session::{LoginMethod, Session};
use crate::identity::signing::SigningKeyRecord;
use crate::identity::tokens::{TokenPurpose, LEEWAY_SECS};
use crate::store::StoreError;

const REFRESH_TOKEN_PREFIX: &str = "tgr";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
    method: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    refresh_token: String,
}

pub async fn methods(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({"methods": state.login_methods.listing()}))
}

pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.tokens.jwks())
}

/// A login: refused at once (429) while the client's address is over its budget of failures
/// or the name is locked or backing off, whatever the password; otherwise the password is
/// checked. Every attempt is audited with its method, address and user agent (the refusals
/// before any password check sampled per address, as a client can repeat them at will).
pub async fn login(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Login>,
) -> Result<impl IntoResponse, ApiError> {
    let method = body.method.as_deref().unwrap_or("local");
    let method = LoginMethod::parse(method)
        .filter(|method| state.login_methods.enabled(*method))
        .ok_or_else(|| {
            ApiError::validation(format!(
                "`method` {method:?} is not enabled; see /api/v1/auth/methods"
            ))
        })?;
    let attempt = LoginAttempt {
        method,
        address,
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(kept_user_agent),
    };
    if let Err(refused) = throttle::refuse_over_budget(&state, address).await {
        count_login("throttled");
        attempt.audit_refusal(&state, "throttled").await;
        return Err(refused);
    }
    if let Admission::Locked { until } = state.lockout.attempt(&body.username).await? {
        count_login("locked");
        attempt.audit_refusal(&state, "locked").await;
        return Err(too_many_attempts(
            (until - now()).to_std().unwrap_or_default(),
        ));
    }
    // A name no user can have is not looked up (a database may fold case beyond ASCII and
    // find one): it is an unknown user, checked against the decoy like any other.
    let user = if validate_username(&body.username).is_err() {
        None
    } else {
        match state.store.user_by_username(&body.username).await {
            Ok(user) => Some(user),
            Err(StoreError::NotFound) => None,
            Err(other) => return Err(other.into()),
        }
    };
    let stored_hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let verified = state
        .passwords
        .verify(body.password.clone(), stored_hash)
        .await
        .map_err(|_| ApiError::busy("too many logins are in progress"))?;
    // A suspended or deleted account answers exactly like a wrong password, whatever the
    // password, so a guess at it reveals nothing.
    let user = match user {
        Some(user) if verified.matches && user.status == UserStatus::Active => user,
        other => {
            state.address_failures.record(address.0).await;
            count_login("refused");
            let target = other.as_ref().map_or("unknown", |user| user.id.as_str());
            attempt
                .audit(&state, "login.failed", target, "invalid_credentials")
                .await;
            return Err(invalid_credentials());
        }
    };
    state.lockout.forget(&body.username).await?;
    if verified.needs_rehash {
        upgrade_password_hash(&state, &user, body.password).await;
    }
    let refresh = PlainApiKey::generate(REFRESH_TOKEN_PREFIX, &user.id);
    let at = now();
    let session = Session {
        id: SessionId::generate(),
        user_id: user.id.clone(),
        refresh_hash: state.hasher.hash(&refresh.digest()),
        method,
        address: Some(address.0.to_string()),
        user_agent: attempt.user_agent.clone(),
        created_at: at,
        last_used_at: at,
        refresh_expires_at: at + Duration::seconds(state.sessions.refresh_ttl_secs),
        revoked_at: None,
    };
    let audit = AuditEntry::new(
        Some(user.id.clone()),
        "session.created",
        session.id.as_str(),
        attempt.details("succeeded"),
    );
    state
        .store
        .create_session_within_cap(
            &session,
            state.sessions.max_per_user,
            state.tokens.issued_tokens_expire_at(),
            &audit,
        )
        .await?;
    count_login("ok");
    token_answer(&state, &user, &session.id, &refresh)
}

/// One login attempt, as audited.
struct LoginAttempt {
    method: LoginMethod,
    address: ClientAddress,
    user_agent: Option<String>,
}

impl LoginAttempt {
    fn details(&self, result: &str) -> serde_json::Value {
        json!({
            "method": self.method.as_str(),
            "address": self.address.0.to_string(),
            "user_agent": self.user_agent,
            "result": result,
        })
    }

    /// Audits an attempt refused for `reason`; a failure to write is logged, not answered.
    async fn audit(&self, state: &AppState, action: &str, target: &str, reason: &str) {
        let entry = AuditEntry::new(None, action, target, self.details(reason));
        if let Err(error) = state.store.record_audit(&entry).await {
            tracing::warn!(%error, "cannot audit a login attempt");
        }
    }

    /// Audits an attempt refused before any password check, at most once per address and
    /// reason per sample interval.
    async fn audit_refusal(&self, state: &AppState, reason: &str) {
        if state
            .login_refusals
            .due(format!("{} {reason}", self.address.0))
        {
            self.audit(state, "login.refused", "unknown", reason).await;
        }
    }
}

/// Replaces a hash the password verified against but that is not Argon2id with the configured
/// parameters (a bcrypt hash imported from an older system, or older parameters). The login
/// goes on whatever happens here.
async fn upgrade_password_hash(state: &AppState, user: &User, password: String) {
    let Some(old) = user.password_hash.as_deref() else {
        return;
    };
    let new = match state.passwords.hash(password).await {
        Ok(Some(Ok(new))) => new,
        _ => {
            tracing::warn!(user = %user.id, "cannot re-hash a password now; kept the old hash");
            return;
        }
    };
    let from = old.split('$').nth(1).unwrap_or_default();
    let audit = AuditEntry::new(
        Some(user.id.clone()),
        "user.password_rehashed",
        user.id.as_str(),
        json!({"from": from, "to": "argon2id"}),
    );
    match state
        .store
        .replace_password_hash(&user.id, old, &new, &audit)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(error) => tracing::warn!(%error, user = %user.id, "cannot store a re-hashed password"),
    }
}

fn count_login(result: &'static str) {
    metrics::counter!("tollgate_logins_total", "result" => result).increment(1);
}

pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<impl IntoResponse, ApiError> {
    let presented = PlainApiKey::from_client(body.refresh_token);
    let presented_hash = state.hasher.hash(&presented.digest());
    let session = match state.store.session_by_refresh_hash(&presented_hash).await {
        Ok(session) if session.is_live(now()) => session,
        Ok(_) => return Err(invalid_refresh_token()),
        Err(StoreError::NotFound) => {
            end_session_of_reused_token(&state, &presented_hash).await?;
            return Err(invalid_refresh_token());
        }
        Err(other) => return Err(other.into()),
    };
    let user = state.store.user(&session.user_id).await?;
    if user.status != UserStatus::Active {
        return Err(invalid_refresh_token());
    }
    let replacement = PlainApiKey::generate(REFRESH_TOKEN_PREFIX, &user.id);
    match state
        .store
        .replace_refresh_hash(
            &session.id,
            &presented_hash,
            &state.hasher.hash(&replacement.digest()),
        )
        .await
    {
        Ok(()) => {}
        // The same token was used twice at once: one of the holders is not the user.
        Err(StoreError::NotFound) => {
            end_session_of_reused_token(&state, &presented_hash).await?;
            return Err(invalid_refresh_token());
        }
        Err(other) => return Err(other.into()),
    }
    token_answer(&state, &user, &session.id, &replacement)
}

/// A refresh token that was already replaced is being used again, so it was copied: the
/// session it belonged to ends, for the thief and the user alike (the user logs in again).
async fn end_session_of_reused_token(
    state: &AppState,
    hash: &crate::accounts::api_key::StoredKeyHash,
) -> Result<(), ApiError> {
    let session = match state.store.session_by_retired_refresh_hash(hash).await {
        Ok(session) if session.revoked_at.is_none() => session,
        Ok(_) | Err(StoreError::NotFound) => return Ok(()),
        Err(other) => return Err(other.into()),
    };
    tracing::warn!(session = %session.id, "a replaced refresh token was presented; ending the session");
    let audit = AuditEntry::new(
        Some(session.user_id.clone()),
        "session.refresh_token_reused",
        session.id.as_str(),
        json!({}),
    );
    match state
        .store
        .revoke_session(
            &session.id,
            now(),
            state.tokens.issued_tokens_expire_at(),
            &audit,
        )
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

/// Ends the caller's session (an access token in `Authorization: Bearer` or the session cookie).
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let token = presented_session_token(&headers).ok_or_else(ApiError::unauthenticated)?;
    let claims = state
        .tokens
        .verify(&token)
        .map_err(|_| ApiError::unauthenticated())?;
    let id = SessionId::from_string(claims.sid);
    let audit = AuditEntry::new(
        Some(crate::domain::ids::UserId::from_string(claims.sub)),
        "session.ended",
        id.as_str(),
        json!({}),
    );
    match state
        .store
        .revoke_session(&id, now(), state.tokens.issued_tokens_expire_at(), &audit)
        .await
    {
        Ok(()) | Err(StoreError::NotFound) => {}
        Err(other) => return Err(other.into()),
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, session_cookie("", 0))],
    ))
}

/// Publishes a new signing key now and makes it sign after the publish delay; the
/// current keys keep verifying until every token they signed has expired.
pub async fn rotate_signing_key(
    State(state): State<AppState>,
    caller: Caller<ManageSigningKeys>,
) -> Result<impl IntoResponse, ApiError> {
    let at = now();
    let activates_at = at + Duration::seconds(state.sessions.key_publish_delay_secs);
    let retire_others_at = activates_at
        + Duration::seconds(state.tokens.policy().access_ttl_secs)
        + Duration::seconds(i64::try_from(LEEWAY_SECS).unwrap_or(0));
    let algorithm = state.sessions.algorithm;
    let sealer = state.sealer.clone();
    let key = tokio::task::spawn_blocking(move || {
        SigningKeyRecord::generate(algorithm, &sealer, at, activates_at)
    })
    .await
    .map_err(|e| internal(&e.to_string()))?
    .map_err(|e| internal(&e.to_string()))?;
    let audit = caller.audit(
        "signing_key.created",
        &key.kid,
        json!({"alg": key.alg.as_str(), "activates_at": activates_at}),
    );
    state
        .store
        .add_signing_key(&key, Some(retire_others_at), &audit)
        .await?;
    let records = state.store.signing_keys().await?;
    state
        .tokens
        .reload(records, &state.sealer, state.store.followers())
        .map_err(|e| internal(&e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"kid": key.kid, "alg": key.alg.as_str(), "activates_at": activates_at, "previous_keys_retire_at": retire_others_at}),
        ),
    ))
}

/// The tokens as JSON, and the access token again as an HttpOnly session cookie for browsers.
/// A user who must change their password gets a token that allows only that, and is told so.
fn token_answer(
    state: &AppState,
    user: &User,
    session: &SessionId,
    refresh: &PlainApiKey,
) -> Result<impl IntoResponse, ApiError> {
    let purpose = if user.password_change_required {
        TokenPurpose::PasswordChange
    } else {
        TokenPurpose::Access
    };
    let (access_token, expires_in) = state
        .tokens
        .issue(user, session, purpose)
        .map_err(|e| internal(&e.to_string()))?;
    let cookie = session_cookie(&access_token, expires_in);
    let mut answer = json!({
        "access_token": access_token,
        "refresh_token": refresh.expose(),
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    if purpose == TokenPurpose::PasswordChange {
        // The session allows nothing but POST /api/v1/users/me/password until then.
        answer["password_change_required"] = json!(true);
    }
    Ok(([(SET_COOKIE, cookie)], Json(answer)))
}

pub(super) fn session_cookie(value: &str, max_age_secs: i64) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Lax"
    )
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the username or password is wrong",
    )
}

fn invalid_refresh_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        "the refresh token is unknown, used or expired; log in again",
    )
}

fn internal(problem: &str) -> ApiError {
    tracing::error!(%problem, "session operation failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the session could not be created",
    )
}
