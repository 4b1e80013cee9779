//! Password logins (`POST /api/v1/auth/login`) and what every login method ends with: an
//! audited attempt and a new session ([`open_session`]).

use axum::extract::State;
use axum::http::header::USER_AGENT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Duration;
use serde::Deserialize;
use serde_json::json;

use super::access::ClientAddress;
use super::auth::{token_answer, REFRESH_TOKEN_PREFIX};
use super::error::ApiError;
use super::extract::ApiJson;
use super::ldap_login::verify_ldap_password;
use super::mfa_login;
use super::openapi::shapes::LoginAnswer;
use super::tenants;
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
use crate::store::StoreError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    #[schema(example = "alice")]
    username: String,
    password: String,
    #[schema(pattern = "^(local|ldap)$", example = "local")]
    method: Option<String>,
}

/// A login: refused at once (429) while the client's address is over its budget of failures
/// or the name is locked or backing off, whatever the password; otherwise the password is
/// checked. A user with a second factor gets a challenge for it instead of a session (see
/// `mfa_login.rs`). Every attempt is audited with its method, address and user agent (the
/// refusals before any password check sampled per address, as a client can repeat them at
/// will).
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth", security(()),
    request_body = Login,
    responses(
        (status = 200, description = "A session, or the challenge for the second factor", body = LoginAnswer),
        (status = 401, description = "`invalid_credentials`: wrong name or password"),
        (status = 403, description = "`user_inactive`: the user is suspended or deleted"),
        (status = 409, description = "`email_taken`: a directory login's address belongs to another user"),
        (status = 429, description = "`too_many_attempts`: the address or the name is held back; see `Retry-After`"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    address: ClientAddress,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let method = body.method.as_deref().unwrap_or("local");
    let method = LoginMethod::parse(method)
        .filter(|method| state.login_methods.enabled(*method))
        .ok_or_else(|| {
            ApiError::validation(format!(
                "`method` {method:?} is not enabled; see /api/v1/auth/methods"
            ))
        })?;
    if method == LoginMethod::Oidc {
        return Err(oidc_starts_elsewhere());
    }
    let attempt = LoginAttempt::new(method, address, &headers);
    // A directory matches names loosely (spaces, Unicode case): a name no user can have
    // would count its failures apart from the name it reaches.
    if method == LoginMethod::Ldap && validate_username(&body.username).is_err() {
        return Err(attempt.refuse(&state, "unknown").await);
    }
    attempt.admit(&state, &body.username).await?;
    let user = match method {
        LoginMethod::Local => verify_local_password(&state, &attempt, &body).await?,
        LoginMethod::Ldap => {
            verify_ldap_password(&state, &attempt, &body.username, &body.password).await?
        }
        LoginMethod::Oidc => return Err(oidc_starts_elsewhere()),
    };
    state.lockout.forget(&body.username).await?;
    attempt.admit_method_for(&state, &user).await?;
    if let Some(challenge) = mfa_login::challenge_if_enrolled(&state, &user, &attempt).await? {
        return Ok(challenge);
    }
    let (session, refresh) = open_session(&state, &user, &attempt).await?;
    token_answer(&state, &user, &session, &refresh).await
}

fn oidc_starts_elsewhere() -> ApiError {
    ApiError::validation(
        "an OIDC login starts at its provider's `login_url`; see /api/v1/auth/methods",
    )
}

/// Checks a password against the one stored here; a failure is counted, audited and answered
/// 401 `invalid_credentials` the same way whether or not the user exists.
async fn verify_local_password(
    state: &AppState,
    attempt: &LoginAttempt,
    body: &Login,
) -> Result<User, ApiError> {
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
    match user {
        Some(user) if verified.matches && user.status == UserStatus::Active => {
            if verified.needs_rehash {
                upgrade_password_hash(state, &user, body.password.clone()).await;
            }
            if state.self_service.require_email_verification
                && state.store.email_verification_pending(&user.id).await?
            {
                // Only someone with the password learns this.
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "email_not_verified",
                    "verify the email address first: open the link mailed to it",
                ));
            }
            Ok(user)
        }
        other => {
            let target = other.as_ref().map_or("unknown", |user| user.id.as_str());
            Err(attempt.refuse(state, target).await)
        }
    }
}

/// One login attempt, as audited.
pub(super) struct LoginAttempt {
    pub(super) method: LoginMethod,
    /// The OpenID Connect provider logged in at.
    pub(super) provider: Option<String>,
    pub(super) address: ClientAddress,
    user_agent: Option<String>,
}

impl LoginAttempt {
    pub(super) fn new(method: LoginMethod, address: ClientAddress, headers: &HeaderMap) -> Self {
        Self {
            method,
            provider: None,
            address,
            user_agent: headers
                .get(USER_AGENT)
                .and_then(|agent| agent.to_str().ok())
                .map(kept_user_agent),
        }
    }

    /// The same attempt, at the OpenID Connect provider `name`.
    pub(super) fn at_provider(mut self, name: &str) -> Self {
        self.provider = Some(name.to_string());
        self
    }

    /// 429 while the client's address is over its budget of failures or `username` is locked
    /// or backing off.
    pub(super) async fn admit(&self, state: &AppState, username: &str) -> Result<(), ApiError> {
        self.admit_address(state).await?;
        if let Admission::Locked { until } = state.lockout.attempt(username).await? {
            count_login(self.method, "locked");
            self.audit_refusal(state, "locked").await;
            return Err(too_many_attempts(
                (until - now()).to_std().unwrap_or_default(),
            ));
        }
        Ok(())
    }

    /// 429 while the client's address is over its budget of failures.
    pub(super) async fn admit_address(&self, state: &AppState) -> Result<(), ApiError> {
        if let Err(refused) = throttle::refuse_over_budget(state, self.address).await {
            count_login(self.method, "throttled");
            self.audit_refusal(state, "throttled").await;
            return Err(refused);
        }
        Ok(())
    }

    /// 403 `login_method_not_allowed` when the tenant of `user`, who proved who they are,
    /// does not allow this attempt's method; audited as a failed login.
    pub(super) async fn admit_method_for(
        &self,
        state: &AppState,
        user: &User,
    ) -> Result<(), ApiError> {
        let allowed = tenants::of_user(state, user)
            .await?
            .is_none_or(|tenant| tenant.allows_login_with(self.method));
        if allowed {
            return Ok(());
        }
        count_login(self.method, "refused");
        self.audit(
            state,
            "login.failed",
            user.id.as_str(),
            "login_method_not_allowed",
        )
        .await;
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "login_method_not_allowed",
            format!(
                "the organisation of this account does not allow logging in with {}",
                self.method.as_str()
            ),
        ))
    }

    /// Counts a failed attempt at `target` (a user id, or `unknown`) against the client's
    /// address, audits it, and gives the answer: 401 `invalid_credentials`.
    pub(super) async fn refuse(&self, state: &AppState, target: &str) -> ApiError {
        self.refuse_with(state, target, invalid_credentials()).await
    }

    /// Like [`Self::refuse`], answering `error` (whose code is audited as the reason).
    pub(super) async fn refuse_with(
        &self,
        state: &AppState,
        target: &str,
        error: ApiError,
    ) -> ApiError {
        state.address_failures.record(self.address.0).await;
        count_login(self.method, "refused");
        self.audit(state, "login.failed", target, error.code).await;
        error
    }

    fn details(&self, result: &str) -> serde_json::Value {
        let mut details = json!({
            "method": self.method.as_str(),
            "address": self.address.0.to_string(),
            "user_agent": self.user_agent,
            "result": result,
        });
        if let Some(provider) = &self.provider {
            details["provider"] = json!(provider);
        }
        details
    }

    /// Audits the attempt as `action` on `target` with `result`; a failure to write is
    /// logged, not answered.
    pub(super) async fn audit(&self, state: &AppState, action: &str, target: &str, result: &str) {
        let entry = AuditEntry::new(None, action, target, self.details(result));
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

/// Starts a session for `user`, who proved who they are in `attempt`: stored (ending the
/// oldest beyond the per-user cap) and audited as the attempt's success. Answers the session
/// and its first refresh token.
pub(super) async fn open_session(
    state: &AppState,
    user: &User,
    attempt: &LoginAttempt,
) -> Result<(SessionId, PlainApiKey), ApiError> {
    attempt.admit_method_for(state, user).await?;
    let refresh = PlainApiKey::generate(REFRESH_TOKEN_PREFIX, &user.id);
    let at = now();
    let session = Session {
        id: SessionId::generate(),
        user_id: user.id.clone(),
        refresh_hash: state.hasher.hash(&refresh.digest()),
        method: attempt.method,
        address: Some(attempt.address.0.to_string()),
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
    count_login(attempt.method, "ok");
    Ok((session.id, refresh))
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

/// Counts a login attempt's `result`, in all and by the method it used.
pub(super) fn count_login(method: LoginMethod, result: &'static str) {
    metrics::counter!("tollgate_logins_total", "result" => result).increment(1);
    metrics::counter!(
        "tollgate_auth_attempts_total",
        "method" => method.as_str(),
        "outcome" => result,
    )
    .increment(1);
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the username or password is wrong",
    )
}
