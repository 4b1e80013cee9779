//! OpenID Connect logins: `GET /api/v1/auth/oidc/{provider}/login` sends the browser to the
//! provider (authorization code with PKCE, `state` and `nonce` sealed in a cookie bound to the
//! browser); `.../callback` finishes the login into the same kind of session as a password
//! login, and sends the browser on with the session cookie and the refresh cookie.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse};
use serde::Deserialize;

use super::access::ClientAddress;
use super::auth::{cookie_value, internal, refresh_cookie, session_cookie, session_purpose};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::login::{open_session, LoginAttempt};
use super::AppState;
use crate::identity::oidc::flow::{Flow, FLOW_COOKIE, FLOW_TTL_SECS};
use crate::identity::oidc::linking::{user_for, NoUser};
use crate::identity::oidc::provider::OidcProvider;
use crate::identity::oidc::OidcError;
use crate::identity::session::LoginMethod;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// Where to go after the login; one of the provider's `allowed_redirects`.
    return_to: Option<String>,
}

/// What the provider sends back (providers add parameters of their own, ignored here).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /api/v1/auth/login`: a browser is sent to the one OIDC provider when no other
/// method is enabled; otherwise logins are posted here.
#[utoipa::path(
    get, path = "/api/v1/auth/login", tag = "auth", security(()),
    responses(
        (status = 302, description = "To the only login method, an OpenID Connect provider"),
        (status = 405, description = "`method_not_allowed`: other methods are enabled; POST a login here"),
    )
)]
pub async fn login_page(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let provider = state.login_methods.only_oidc_provider().ok_or_else(|| {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST a login here; see /api/v1/auth/methods",
        )
    })?;
    let target = match query {
        Some(query) => format!("{}?{query}", provider.login_url()),
        None => provider.login_url(),
    };
    Ok((StatusCode::FOUND, [(LOCATION, target)]))
}

#[utoipa::path(
    get, path = "/api/v1/auth/oidc/{provider}/login", tag = "auth", security(()),
    params(("provider" = String, Path, description = "The provider's name in `auth.oidc.providers`", example = "corp"), Start),
    responses(
        (status = 302, description = "To the provider, with the flow cookie set"),
        (status = 404, description = "`not_found`: no such OpenID Connect provider"),
    )
)]
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<Start>,
) -> Result<impl IntoResponse, ApiError> {
    let provider = provider_named(&state, &name)?;
    let return_to = provider
        .settings
        .redirect_target(query.return_to.as_deref())
        .ok_or_else(|| ApiError::validation("`return_to` is not one of the allowed redirects"))?;
    let (url, secrets) = provider
        .authorization_request()
        .await
        .map_err(|error| unavailable(&name, &error))?;
    let sealed = Flow { secrets, return_to }.seal(&state.sealer, &name);
    Ok((
        StatusCode::FOUND,
        AppendHeaders([
            (LOCATION, url.to_string()),
            (SET_COOKIE, flow_cookie(&name, &sealed, FLOW_TTL_SECS)),
        ]),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/auth/oidc/{provider}/callback", tag = "auth", security(()),
    params(("provider" = String, Path, description = "The provider's name in `auth.oidc.providers`", example = "corp"), Callback),
    responses(
        (status = 302, description = "Logged in: to the `return_to` of the login, with the session and refresh cookies"),
        (status = 401, description = "`oidc_failed`: the provider refused, or the flow does not match this browser"),
        (status = 403, description = "`user_inactive` or `oidc_not_allowed`: no user may log in this way"),
        (status = 404, description = "`not_found`: no such OpenID Connect provider"),
        (status = 409, description = "`email_taken`: the address belongs to another user"),
    )
)]
pub async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    address: ClientAddress,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<Callback>,
) -> Result<impl IntoResponse, ApiError> {
    let provider = provider_named(&state, &name)?;
    let attempt = LoginAttempt::new(LoginMethod::Oidc, address, &headers).at_provider(&name);
    attempt.admit_address(&state).await?;
    let flow = match (cookie_value(&headers, FLOW_COOKIE), query.state.as_deref()) {
        (Some(cookie), Some(presented)) => {
            Flow::open(&state.sealer, &name, &cookie, presented).ok()
        }
        _ => None,
    };
    let Some(flow) = flow else {
        return Err(attempt
            .refuse_with(&state, "unknown", invalid_state())
            .await);
    };
    let code = match (query.code, query.error) {
        (Some(code), None) => code,
        _ => return Err(attempt.refuse_with(&state, "unknown", login_failed()).await),
    };
    let person = match provider.finish_login(code, &flow.secrets).await {
        Ok(person) => person,
        Err(OidcError::Refused(why)) => {
            tracing::info!(provider = %name, %why, "an OIDC login was refused");
            return Err(attempt.refuse_with(&state, "unknown", login_failed()).await);
        }
        Err(error) => {
            attempt
                .audit(&state, "login.failed", "unknown", "oidc_unavailable")
                .await;
            return Err(unavailable(&name, &error));
        }
    };
    let user = match user_for(state.store.as_ref(), &provider.settings, &person).await {
        Ok(user) => user,
        Err(NoUser::Store(error)) => return Err(error.into()),
        Err(NoUser::NoSuchGroup(group)) => {
            tracing::error!(provider = %name, %group, "`create_users.group` names no group");
            return Err(internal("a first login's group does not exist"));
        }
        Err(refused) => {
            let (target, error) = no_user(refused);
            return Err(attempt.refuse_with(&state, &target, error).await);
        }
    };
    let (session, refresh) = open_session(&state, &user, &attempt).await?;
    let purpose = session_purpose(&state, &user).await?;
    let (access_token, expires_in) = state
        .tokens
        .issue(&user, &session, purpose)
        .map_err(|e| internal(&e.to_string()))?;
    Ok((
        StatusCode::FOUND,
        AppendHeaders([
            (LOCATION, flow.return_to),
            (SET_COOKIE, session_cookie(&access_token, expires_in)),
            (
                SET_COOKIE,
                refresh_cookie(refresh.expose(), state.sessions.refresh_ttl_secs),
            ),
            (SET_COOKIE, flow_cookie(&name, "", 0)),
        ]),
    ))
}

fn provider_named(state: &AppState, name: &str) -> Result<Arc<OidcProvider>, ApiError> {
    state
        .oidc
        .get(name)
        .ok_or_else(|| ApiError::not_found("OIDC provider"))
}

/// The flow cookie, sent back only to this provider's routes; `Lax`, as the provider sends
/// the browser back with a top-level GET from its own site.
fn flow_cookie(provider: &str, value: &str, max_age_secs: i64) -> String {
    format!(
        "{FLOW_COOKIE}={value}; Path=/api/v1/auth/oidc/{provider}/; Max-Age={max_age_secs}; \
         HttpOnly; Secure; SameSite=Lax"
    )
}

/// The audit target and the answer for a person without a usable account.
fn no_user(refused: NoUser) -> (String, ApiError) {
    match refused {
        NoUser::Disabled(user) => (
            user.as_str().to_string(),
            ApiError::new(
                StatusCode::FORBIDDEN,
                "account_disabled",
                "the account is suspended",
            ),
        ),
        NoUser::NameTaken(what) => (
            "unknown".into(),
            ApiError::conflict(
                "account_conflict",
                format!(
                    "a new account's {what} belongs to another user; an administrator can \
                     link the accounts"
                ),
            ),
        ),
        NoUser::AccountRequired | NoUser::Store(_) | NoUser::NoSuchGroup(_) => (
            "unknown".into(),
            ApiError::new(
                StatusCode::FORBIDDEN,
                "account_required",
                "no account here belongs to this person; ask an administrator for one",
            ),
        ),
    }
}

fn invalid_state() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_oidc_state",
        "the login's state is missing, expired or not this browser's; start the login again",
    )
}

fn login_failed() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "oidc_login_failed",
        "the provider did not prove who logged in",
    )
}

fn unavailable(provider: &str, error: &OidcError) -> ApiError {
    tracing::warn!(%provider, %error, "an OIDC provider is unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "oidc_unavailable",
        "the login provider cannot be reached; try again later",
    )
}
