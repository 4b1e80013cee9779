//! A person's second factor: `POST /api/v1/users/me/mfa/totp` (enrol), `.../totp/confirm`,
//! `GET|DELETE /api/v1/users/me/mfa` (state, removal), and an admin's reset
//! (`DELETE /api/v1/users/{id}/mfa`). Codes checked here and at a login's second step
//! (`mfa_login.rs`) count against the user's second-factor lockout, apart from their
//! password's.

use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::access::ClientAddress;
use super::error::{found, ApiError};
use super::extract::{ApiJson, EnrollingMfa, Me, OnUser};
use super::me::verify_current_password;
use super::openapi::shapes::BackupCodes;
use super::openapi::shapes::MfaStatus;
use super::openapi::shapes::TotpSetup;
use super::permission::ManageUsers;
use super::throttle::{self, too_many_attempts};
use super::{tenants, AppState};
use crate::accounts::user::User;
use crate::domain::ids::UserId;
use crate::domain::now;
use crate::identity::lockout::Admission;
use crate::identity::totp::{
    backup_code_hash, generate_backup_codes, qr_svg, TotpEnrolment, TotpSecret,
};
use crate::store::StoreError;

/// Answers that hold a secret are kept by no cache.
const NO_STORE: [(axum::http::HeaderName, &str); 1] = [(CACHE_CONTROL, "no-store")];

/// Whether `user` has a confirmed TOTP.
pub(super) async fn has_confirmed_totp(state: &AppState, user: &UserId) -> Result<bool, ApiError> {
    Ok(state
        .store
        .totp_enrolment(user)
        .await?
        .is_some_and(|enrolment| enrolment.confirmed_at.is_some()))
}

/// A new TOTP secret for the caller, pending until a code confirms it (replacing a pending
/// one): answers its `otpauth://` URI and the URI's QR code. 409 while a confirmed one exists.
#[utoipa::path(
    post, path = "/api/v1/users/me/mfa/totp", tag = "users",
    responses(
        (status = 201, description = "A pending TOTP secret, to confirm with a first code", body = TotpSetup),
        (status = 409, description = "`mfa_enabled`: remove the current one first"),
    )
)]
pub async fn enrol(
    State(state): State<AppState>,
    EnrollingMfa(me): EnrollingMfa,
) -> Result<impl IntoResponse, ApiError> {
    let user = &me.user;
    let secret = TotpSecret::generate();
    let uri = secret
        .uri(&state.mfa.issuer, &user.username)
        .map_err(|e| internal(&e.to_string()))?;
    let qr = qr_svg(&uri).map_err(|e| internal(&e.to_string()))?;
    let enrolment = TotpEnrolment {
        user_id: user.id.clone(),
        sealed_secret: secret.seal(&state.sealer, &user.id),
        created_at: now(),
        confirmed_at: None,
        last_used_step: None,
    };
    let audit = me.audit(
        "user.mfa_enrolment_started",
        user.id.as_str(),
        json!({"kind": "totp"}),
    );
    match state.store.begin_totp_enrolment(&enrolment, &audit).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::conflict(
                "mfa_already_enabled",
                "a confirmed TOTP exists; remove it first: DELETE /api/v1/users/me/mfa",
            ))
        }
        Err(other) => return Err(other.into()),
    }
    Ok((
        StatusCode::CREATED,
        NO_STORE,
        Json(json!({"otpauth_uri": uri, "qr_svg": qr})),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    code: String,
    /// Needed when the account has a password, so that a stolen session alone cannot bind the
    /// account to an authenticator the thief holds.
    password: Option<String>,
}

/// Confirms the caller's pending TOTP with a first code (and the password, when the account
/// has one); answers ten one-time backup codes, shown this once. A session that allowed only
/// enrolment allows everything from its next refresh.
#[utoipa::path(
    post, path = "/api/v1/users/me/mfa/totp/confirm", tag = "users",
    request_body = Confirmation,
    responses(
        (status = 200, description = "Enabled; the backup codes, shown this once", body = BackupCodes),
        (status = 403, description = "`invalid_code` or `wrong_password`"),
        (status = 404, description = "`not_found`: nothing pending"),
    )
)]
pub async fn confirm(
    State(state): State<AppState>,
    address: ClientAddress,
    EnrollingMfa(me): EnrollingMfa,
    ApiJson(body): ApiJson<Confirmation>,
) -> Result<impl IntoResponse, ApiError> {
    let user = &me.user;
    let pending = state
        .store
        .totp_enrolment(&user.id)
        .await?
        .filter(|enrolment| enrolment.confirmed_at.is_none())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no TOTP is pending confirmation: POST /api/v1/users/me/mfa/totp first",
            )
        })?;
    if user.password_hash.is_some() {
        let password = body
            .password
            .as_deref()
            .ok_or_else(|| ApiError::validation("`password` is required: the account has one"))?;
        verify_current_password(&state, address, user, password, "password").await?;
    }
    admit_second_factor(&state, address, &user.id).await?;
    let at = now();
    let Some(step) = open_secret(&state, &pending)?.matching_step(&body.code, unix_secs(at)) else {
        return Err(wrong_code(&state, address, StatusCode::FORBIDDEN).await);
    };
    let codes = generate_backup_codes();
    let hashes: Vec<_> = codes
        .iter()
        .map(|code| backup_code_hash(&state.hasher, code))
        .collect();
    let audit = me.audit(
        "user.mfa_enabled",
        user.id.as_str(),
        json!({"kind": "totp", "backup_codes": codes.len()}),
    );
    found(
        state
            .store
            .confirm_totp(&user.id, step, at, &hashes, &audit)
            .await,
        "pending TOTP",
    )?;
    state.mfa_lockout.forget(user.id.as_str()).await?;
    Ok((NO_STORE, Json(json!({"backup_codes": codes}))))
}

/// Whether the caller has a second factor, must have one, and how many backup codes remain.
#[utoipa::path(
    get, path = "/api/v1/users/me/mfa", tag = "users",
    responses((status = 200, description = "The caller's second factor", body = MfaStatus))
)]
pub async fn status(
    State(state): State<AppState>,
    EnrollingMfa(me): EnrollingMfa,
) -> Result<impl IntoResponse, ApiError> {
    let enrolment = state.store.totp_enrolment(&me.user.id).await?;
    let enabled = enrolment.as_ref().is_some_and(|e| e.confirmed_at.is_some());
    let backup_codes_remaining = if enabled {
        state.store.backup_codes_left(&me.user.id).await?
    } else {
        0
    };
    Ok(Json(json!({
        "enabled": enabled,
        "pending": enrolment.is_some() && !enabled,
        "required": second_factor_required(&state, &me.user).await?,
        "backup_codes_remaining": backup_codes_remaining,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Removal {
    code: Option<String>,
    password: Option<String>,
}

/// Removes the caller's TOTP and backup codes, given a current code or the password.
#[utoipa::path(
    delete, path = "/api/v1/users/me/mfa", tag = "users",
    request_body = Removal,
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`invalid_code`, `wrong_password` or `mfa_required`"),
        (status = 404, description = "`not_found`: no second factor"),
    )
)]
pub async fn remove(
    State(state): State<AppState>,
    address: ClientAddress,
    me: Me,
    ApiJson(body): ApiJson<Removal>,
) -> Result<impl IntoResponse, ApiError> {
    let user = &me.user;
    match (body.code, body.password) {
        (Some(code), None) => {
            let Some(enrolment) = state.store.totp_enrolment(&user.id).await? else {
                return Err(ApiError::not_found("mfa"));
            };
            admit_second_factor(&state, address, &user.id).await?;
            if check_code(&state, user, &enrolment, &code).await? != CodeCheck::Accepted {
                return Err(wrong_code(&state, address, StatusCode::FORBIDDEN).await);
            }
            state.mfa_lockout.forget(user.id.as_str()).await?;
        }
        (None, Some(password)) => {
            verify_current_password(&state, address, user, &password, "password").await?;
        }
        _ => {
            return Err(ApiError::validation(
                "give either `code` (from the authenticator) or `password`",
            ))
        }
    }
    let audit = me.audit("user.mfa_removed", user.id.as_str(), json!({"by": "user"}));
    found(state.store.remove_mfa(&user.id, &audit).await, "mfa")?;
    Ok(StatusCode::NO_CONTENT)
}

/// An admin's reset of a user's second factor (a lost phone): the TOTP and backup codes go,
/// and the user's wrong codes are forgotten.
#[utoipa::path(
    delete, path = "/api/v1/users/{id}/mfa", tag = "users",
    params(("id" = String, Path, description = "The user's id", example = "u_3k9xq2m8v7c4n1b6z5l0")),
    responses((status = 204, description = "The user's second factor is removed"), (status = 404, description = "`not_found`: no such user, or no second factor"))
)]
pub async fn reset(
    State(state): State<AppState>,
    OnUser {
        caller,
        target: user,
    }: OnUser<ManageUsers>,
) -> Result<impl IntoResponse, ApiError> {
    let audit = caller
        .audit("user.mfa_reset", user.id.as_str(), json!({"by": "admin"}))
        .in_tenant(user.audit_tenant());
    found(state.store.remove_mfa(&user.id, &audit).await, "mfa")?;
    state.mfa_lockout.forget(user.id.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a TOTP code proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CodeCheck {
    Accepted,
    Wrong,
    /// Right, but a code of its time step (or a later one) was accepted before.
    Replayed,
}

impl CodeCheck {
    /// How an audit entry names it.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Wrong => "wrong_code",
            Self::Replayed => "replayed_code",
        }
    }
}

/// Checks `code` against `user`'s confirmed TOTP and, when it is right, spends its time step.
pub(super) async fn check_code(
    state: &AppState,
    user: &User,
    enrolment: &TotpEnrolment,
    code: &str,
) -> Result<CodeCheck, ApiError> {
    if enrolment.confirmed_at.is_none() {
        return Ok(CodeCheck::Wrong);
    }
    let Some(step) = open_secret(state, enrolment)?.matching_step(code, unix_secs(now())) else {
        return Ok(CodeCheck::Wrong);
    };
    if state.store.use_totp_step(&user.id, step).await? {
        Ok(CodeCheck::Accepted)
    } else {
        Ok(CodeCheck::Replayed)
    }
}

/// Whether `user` must log in with a second factor: as the deployment's policy or an admin
/// says of them, or as their tenant says of all its users.
pub(super) async fn second_factor_required(
    state: &AppState,
    user: &User,
) -> Result<bool, ApiError> {
    if state.mfa.required_for(user) {
        return Ok(true);
    }
    Ok(tenants::of_user(state, user)
        .await?
        .is_some_and(|tenant| tenant.mfa_required))
}

/// 429 while the client's address is over its budget of failures, or the user's second
/// factor is locked or backing off; otherwise counts the attempt.
pub(super) async fn admit_second_factor(
    state: &AppState,
    address: ClientAddress,
    user: &UserId,
) -> Result<(), ApiError> {
    throttle::refuse_over_budget(state, address).await?;
    match state.mfa_lockout.attempt(user.as_str()).await? {
        Admission::Check => Ok(()),
        Admission::Locked { until } => Err(too_many_attempts(
            (until - now()).to_std().unwrap_or_default(),
        )),
    }
}

/// A wrong code: counted against the client's address; answered `status`
/// `invalid_mfa_code`.
pub(super) async fn wrong_code(
    state: &AppState,
    address: ClientAddress,
    status: StatusCode,
) -> ApiError {
    state.address_failures.record(address.0).await;
    ApiError::new(
        status,
        "invalid_mfa_code",
        "the code is wrong, expired or already used",
    )
}

fn open_secret(state: &AppState, enrolment: &TotpEnrolment) -> Result<TotpSecret, ApiError> {
    TotpSecret::open(&state.sealer, &enrolment.user_id, &enrolment.sealed_secret).map_err(|_| {
        internal(&format!(
            "the stored TOTP secret of {} cannot be opened with this server secret",
            enrolment.user_id
        ))
    })
}

/// 500 `internal_error`, the problem logged (it never holds a secret).
fn internal(problem: &str) -> ApiError {
    tracing::error!(%problem, "a second factor failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the second factor could not be set up or checked",
    )
}

fn unix_secs(at: crate::domain::Timestamp) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or_default()
}
