//! Sessions after a login (`login.rs`): refresh, logout, signing keys, the login methods offered,
//! and the JWKS the filter and others verify with.

use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::Json;
use chrono::Duration;
use serde::Deserialize;
use serde_json::json;
use tollgate_filter_core::credential::SESSION_COOKIE;

use super::access::ClientAddress;
use super::error::ApiError;
use super::extract::{presented_session_token, ApiJson, Caller};
use super::mfa::{has_confirmed_totp, second_factor_required};
use super::openapi::shapes::Methods;
use super::openapi::shapes::SigningKey;
use super::openapi::shapes::Tokens;
use super::permission::ManageSigningKeys;
use super::AppState;
use crate::accounts::api_key::PlainApiKey;
use crate::accounts::user::{User, UserStatus};
use crate::changes::audit::AuditEntry;
use crate::domain::ids::SessionId;
use crate::domain::now;
use crate::identity::signing::SigningKeyRecord;
use crate::identity::tokens::{TokenPurpose, LEEWAY_SECS};
use crate::store::StoreError;

pub(super) const REFRESH_TOKEN_PREFIX: &str = "tgr";
/// The cookie holding a browser session's refresh token.
pub const REFRESH_COOKIE: &str = "tollgate_refresh";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    refresh_token: String,
}

#[utoipa::path(
    get, path = "/api/v1/auth/methods", tag = "auth", security(()),
    responses((status = 200, description = "The login methods offered", body = Methods))
)]
pub async fn methods(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({"methods": state.login_methods.listing()}))
}

#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "auth", security(()),
    responses((status = 200, description = "The public keys session tokens are signed with (RFC 7517)", body = Object))
)]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.tokens.jwks())
}

/// A new access token for a refresh token, which is replaced. The token comes in the body, or,
/// from a browser, in the refresh cookie a single sign-on login set; then the answer sets the
/// replacement cookie too.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth", security(()),
    request_body(content = Refresh, description = "Omitted (no `Content-Type`) when the refresh cookie carries the token"),
    responses(
        (status = 200, description = "A new access token, and a replacement refresh token", body = Tokens),
        (status = 401, description = "`invalid_refresh_token`: unknown, expired or already used"),
        (status = 403, description = "`user_inactive`: the user is suspended or deleted"),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    address: ClientAddress,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let from_cookie = request
        .headers()
        .get(CONTENT_TYPE)
        .is_none()
        .then(|| cookie_value(request.headers(), REFRESH_COOKIE))
        .flatten();
    let (presented, by_cookie) = match from_cookie {
        Some(token) => (token, true),
        None => {
            let ApiJson(body) = ApiJson::<Refresh>::from_request(request, &state).await?;
            (body.refresh_token, false)
        }
    };
    let presented = PlainApiKey::from_client(presented);
    let presented_hash = state.hasher.hash(&presented.digest());
    let session = match state.store.session_by_refresh_hash(&presented_hash).await {
        Ok(session) if session.is_live(now()) => session,
        Ok(_) => return Err(refused_refresh(&state, address, "ended").await),
        Err(StoreError::NotFound) => {
            end_session_of_reused_token(&state, &presented_hash).await?;
            return Err(refused_refresh(&state, address, "unknown").await);
        }
        Err(other) => return Err(other.into()),
    };
    let user = state.store.user(&session.user_id).await?;
    if user.status != UserStatus::Active {
        return Err(refused_refresh(&state, address, "user_inactive").await);
    }
    let replacement = PlainApiKey::generate(REFRESH_TOKEN_PREFIX, &user.id);
    match state
        .store
        .replace_refresh_hash(
            &session.id,
            &presented_hash,
            &state.hasher.hash(&replacement.digest()),
            &AuditEntry::new(
                Some(user.id.clone()),
                "session.refreshed",
                session.id.as_str(),
                json!({"address": address.0.to_string()}),
            ),
        )
        .await
    {
        Ok(()) => {}
        // The same token was used twice at once: one of the holders is not the user.
        Err(StoreError::NotFound) => {
            end_session_of_reused_token(&state, &presented_hash).await?;
            return Err(refused_refresh(&state, address, "reused").await);
        }
        Err(other) => return Err(other.into()),
    }
    let cookie = by_cookie.then(|| {
        (
            SET_COOKIE,
            refresh_cookie(replacement.expose(), state.sessions.refresh_ttl_secs),
        )
    });
    Ok((
        AppendHeaders(cookie),
        token_answer(&state, &user, &session.id, &replacement).await?,
    ))
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
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 204, description = "The session ended; the cookies are cleared"))
)]
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
        AppendHeaders([
            (SET_COOKIE, session_cookie("", 0)),
            (SET_COOKIE, refresh_cookie("", 0)),
        ]),
    ))
}

/// Publishes a new signing key now and makes it sign after the publish delay; the
/// current keys keep verifying until every token they signed has expired.
#[utoipa::path(
    post, path = "/api/v1/auth/signing-keys/rotate", tag = "auth",
    responses((status = 201, description = "The new key, published now and signing from `activates_at`", body = SigningKey))
)]
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
/// A user who must change their password gets a token that allows only that, and is told so;
/// one who must use a second factor and has none yet, a token that allows only enrolling one.
/// What a session of `user` may do now: everything, or only the password change or the
/// second-factor enrolment they owe.
pub(super) async fn session_purpose(
    state: &AppState,
    user: &User,
) -> Result<TokenPurpose, ApiError> {
    Ok(if user.password_change_required {
        TokenPurpose::PasswordChange
    } else if second_factor_required(state, user).await?
        && !has_confirmed_totp(state, &user.id).await?
    {
        TokenPurpose::MfaEnrolment
    } else {
        TokenPurpose::Access
    })
}

pub(super) async fn token_answer(
    state: &AppState,
    user: &User,
    session: &SessionId,
    refresh: &PlainApiKey,
) -> Result<Response, ApiError> {
    let purpose = session_purpose(state, user).await?;
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
    match purpose {
        // The session allows nothing but POST /api/v1/users/me/password until then.
        TokenPurpose::PasswordChange => answer["password_change_required"] = json!(true),
        // ...or nothing but /api/v1/users/me/mfa[/totp[/confirm]].
        TokenPurpose::MfaEnrolment => answer["mfa_enrolment_required"] = json!(true),
        TokenPurpose::Access => {}
    }
    Ok(([(SET_COOKIE, cookie)], Json(answer)).into_response())
}

/// The refresh token of a browser session, sent only to the session routes (`refresh`,
/// `logout`), and never from another site's page.
pub(super) fn refresh_cookie(value: &str, max_age_secs: i64) -> String {
    format!(
        "{REFRESH_COOKIE}={value}; Path=/api/v1/auth/; Max-Age={max_age_secs}; HttpOnly; Secure; \
         SameSite=Strict"
    )
}

/// The value of the cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.to_string())
        })
}

pub(super) fn session_cookie(value: &str, max_age_secs: i64) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Lax"
    )
}

/// Audits a refused refresh token (at most once per address and reason per sample interval,
/// like refused logins) and answers 401 `invalid_refresh_token`.
async fn refused_refresh(state: &AppState, address: ClientAddress, reason: &str) -> ApiError {
    if state
        .login_refusals
        .due(format!("{} refresh {reason}", address.0))
    {
        let audit = AuditEntry::new(
            None,
            "session.refresh_refused",
            "unknown",
            json!({"address": address.0.to_string(), "result": reason}),
        );
        if let Err(error) = state.store.record_audit(&audit).await {
            tracing::warn!(%error, "cannot audit a refused refresh");
        }
    }
    invalid_refresh_token()
}

fn invalid_refresh_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
        "the refresh token is unknown, used or expired; log in again",
    )
}

pub(super) fn internal(problem: &str) -> ApiError {
    tracing::error!(%problem, "session operation failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the session could not be created",
    )
}
