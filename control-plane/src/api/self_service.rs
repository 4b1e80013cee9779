//! What people do for themselves by email, without a session: `POST /api/v1/auth/register`,
//! `POST /api/v1/auth/verify-email[/resend]`, `POST /api/v1/auth/password-reset[/confirm]`.
//!
//! Nothing here tells a caller whether an address has an account: a registration with a taken
//! address, a resend or a reset request all answer 202 alike, and the owner of the address is
//! the one told by mail. Every message counts against the client's and the recipient's budgets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::access::ClientAddress;
use super::error::ApiError;
use super::extract::ApiJson;
use super::openapi::shapes::Status;
use super::throttle::too_many_attempts;
use super::users::{check_password, hash, name_taken};
use super::AppState;
use crate::accounts::user::{
    validate_email, validate_name, validate_username, Role, User, UserStatus,
};
use crate::changes::audit::AuditEntry;
use crate::domain::ids::UserId;
use crate::domain::now;
use crate::identity::email_links::{LinkError, LinkPurpose};
use crate::identity::password_policy::PasswordOwner;
use crate::mail::{letters, Letter};
use crate::store::StoreError;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9._@-]+$",
        example = "alice"
    )]
    username: String,
    #[schema(format = Email, example = "alice@example.com")]
    email: String,
    #[schema(min_length = 8, example = "correct horse battery")]
    password: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkToken {
    token: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[schema(format = Email, example = "alice@example.com")]
    email: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    token: String,
    new_password: String,
}

/// Creates an account for whoever asks, when registration is enabled. With verification
/// required (the default) the account cannot log in until the link mailed to it is opened,
/// and the answer is 202 whether or not the address was free; otherwise 201 with the user.
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth", security(()),
    request_body = Registration,
    responses(
        (status = 201, description = "Registered without verification", body = User),
        (status = 202, description = "A verification link was mailed, if the address was free", body = Status, example = json!({"status": "verification_sent"})),
        (status = 403, description = "`registration_disabled`"),
        (status = 409, description = "`already_exists`: the name is taken"),
        (status = 429, description = "`too_many_requests`: the mail budget is spent"),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    address: ClientAddress,
    ApiJson(body): ApiJson<Registration>,
) -> Result<impl IntoResponse, ApiError> {
    if !state.self_service.registration {
        return Err(disabled("registration"));
    }
    validate_username(&body.username)?;
    validate_email(&body.email)?;
    if let Some(name) = &body.name {
        validate_name(name)?;
    }
    let email = body.email.to_lowercase();
    check_password(
        &state,
        &body.password,
        PasswordOwner {
            username: &body.username,
            email: Some(&email),
        },
    )?;
    let verify = state.self_service.require_email_verification;
    // A registration counts against the client's budget whether or not it mails.
    if !state.mail_budget.take_for_address(address.0).await {
        return Err(too_many_mails(&state));
    }
    // Hashed before the address is looked up, so a taken address answers no sooner.
    let password_hash = hash(&state, &body.password).await?;
    if verify {
        match state.store.user_by_email(&email).await {
            Ok(_) => {
                deliver(&state, &email, letters::already_registered())?;
                return Ok(verification_sent().into_response());
            }
            Err(StoreError::NotFound) => {}
            Err(other) => return Err(other.into()),
        }
    }
    let user = User {
        email: Some(email.clone()),
        name: body.name,
        password_hash: Some(password_hash),
        ..User::new(UserId::generate(), body.username, Role::User, now())
    };
    let audit = AuditEntry::new(
        Some(user.id.clone()),
        "user.registered",
        user.id.as_str(),
        json!({"address": address.0.to_string(), "verification": verify}),
    );
    if !verify {
        state
            .store
            .create_user(&user, &audit)
            .await
            .map_err(|error| name_taken(error, &user))?;
        return Ok((StatusCode::CREATED, Json(user)).into_response());
    }
    state
        .store
        .register_user(&user, &audit)
        .await
        .map_err(|error| name_taken(error, &user))?;
    send_verification(&state, &user, &email)?;
    Ok(verification_sent().into_response())
}

/// Opens a verification link: the account's email is verified and it may log in.
#[utoipa::path(
    post, path = "/api/v1/auth/verify-email", tag = "auth", security(()),
    request_body = LinkToken,
    responses(
        (status = 200, description = "The address is verified", body = Status, example = json!({"status": "verified"})),
        (status = 403, description = "`self_service_disabled`"),
    )
)]
pub async fn verify_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LinkToken>,
) -> Result<impl IntoResponse, ApiError> {
    let link = state
        .email_links
        .open(&body.token, LinkPurpose::VerifyEmail)
        .map_err(refused_link)?;
    let user = match state.store.user(&link.user).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(refused_link(LinkError::Invalid)),
        Err(other) => return Err(other.into()),
    };
    let Some(email) = user.email.as_deref().filter(|email| link.binds(email)) else {
        return Err(refused_link(LinkError::Invalid));
    };
    let audit = AuditEntry::new(
        Some(user.id.clone()),
        "user.email_verified",
        user.id.as_str(),
        json!({}),
    );
    match state
        .store
        .verify_email(&user.id, email, now(), &audit)
        .await
    {
        // Opened twice: the address was verified the first time.
        Ok(()) | Err(StoreError::NotFound) => Ok(Json(json!({"status": "verified"}))),
        Err(other) => Err(other.into()),
    }
}

/// Mails a new verification link to an account that registered with `email` and has not
/// verified it; 202 whatever the address.
#[utoipa::path(
    post, path = "/api/v1/auth/verify-email/resend", tag = "auth", security(()),
    request_body = Address,
    responses(
        (status = 202, description = "A new link was mailed, if the address waits for one", body = Status, example = json!({"status": "verification_sent"})),
        (status = 403, description = "`self_service_disabled`"),
        (status = 429, description = "`too_many_requests`: the mail budget is spent"),
    )
)]
pub async fn resend_verification(
    State(state): State<AppState>,
    address: ClientAddress,
    ApiJson(body): ApiJson<Address>,
) -> Result<impl IntoResponse, ApiError> {
    admit_mail_request(
        &state,
        address,
        state.self_service.registration,
        "registration",
    )
    .await?;
    if let Some(user) = user_with_email(&state, &body.email).await? {
        if let Some(email) = user.email.as_deref() {
            if state.store.email_verification_pending(&user.id).await? {
                send_verification(&state, &user, email)?;
            }
        }
    }
    Ok(verification_sent())
}

/// Mails a link that sets a new password to the active account with `email` and a password
/// kept here; 202 whatever the address.
#[utoipa::path(
    post, path = "/api/v1/auth/password-reset", tag = "auth", security(()),
    request_body = Address,
    responses(
        (status = 202, description = "A reset link was mailed, if the address has an account", body = Status, example = json!({"status": "reset_link_sent_if_the_address_has_an_account"})),
        (status = 403, description = "`self_service_disabled`"),
        (status = 429, description = "`too_many_requests`: the mail budget is spent"),
    )
)]
pub async fn request_password_reset(
    State(state): State<AppState>,
    address: ClientAddress,
    ApiJson(body): ApiJson<Address>,
) -> Result<impl IntoResponse, ApiError> {
    let enabled = state.self_service.password_reset;
    admit_mail_request(&state, address, enabled, "password reset").await?;
    let user = user_with_email(&state, &body.email)
        .await?
        .filter(|user| user.status == UserStatus::Active);
    let with_password_and_address = user.and_then(|user| {
        let password_hash = user.password_hash.clone()?;
        let email = user.email.clone()?;
        Some((user, password_hash, email))
    });
    if let Some((user, password_hash, email)) = with_password_and_address {
        let ttl = state.self_service.reset_link_ttl_secs;
        let token =
            state
                .email_links
                .issue(LinkPurpose::ResetPassword, &user.id, &password_hash, ttl);
        let link = state.self_service.link("reset-password", &token);
        let letter = letters::reset_password(&user.username, &link, ttl / 60);
        // To the address stored, never to the one typed: a database may match addresses
        // that differ beyond case (Unicode folding).
        deliver(&state, &email, letter)?;
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "reset_link_sent_if_the_address_has_an_account"})),
    ))
}

/// Sets a new password with a reset link. The link works once: it is bound to the password
/// it replaces. Every session of the account ends, and its failed logins are forgotten.
#[utoipa::path(
    post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", security(()),
    request_body = NewPassword,
    responses(
        (status = 200, description = "The password is changed and every session ended", body = Status, example = json!({"status": "password_changed"})),
        (status = 403, description = "`self_service_disabled`"),
    )
)]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewPassword>,
) -> Result<impl IntoResponse, ApiError> {
    if !state.self_service.password_reset {
        return Err(disabled("password reset"));
    }
    let link = state
        .email_links
        .open(&body.token, LinkPurpose::ResetPassword)
        .map_err(refused_link)?;
    let user = match state.store.user(&link.user).await {
        Ok(user) if user.status == UserStatus::Active => user,
        Ok(_) | Err(StoreError::NotFound) => return Err(refused_link(LinkError::Invalid)),
        Err(other) => return Err(other.into()),
    };
    let Some(replaced) = user
        .password_hash
        .as_deref()
        .filter(|hash| link.binds(hash))
    else {
        return Err(refused_link(LinkError::Invalid));
    };
    check_password(&state, &body.new_password, PasswordOwner::of(&user))?;
    let new_hash = hash(&state, &body.new_password).await?;
    let audit = AuditEntry::new(
        Some(user.id.clone()),
        "user.password_reset_by_email",
        user.id.as_str(),
        json!({"sessions_ended": "all"}),
    );
    match state
        .store
        .change_own_password(
            &user.id,
            replaced,
            &new_hash,
            now(),
            None,
            state.tokens.issued_tokens_expire_at(),
            &audit,
        )
        .await
    {
        Ok(()) => {}
        // The password changed since the link was opened: the link is spent.
        Err(StoreError::NotFound) => return Err(refused_link(LinkError::Invalid)),
        Err(other) => return Err(other.into()),
    }
    state.lockout.forget(&user.username).await?;
    Ok(Json(json!({"status": "password_changed"})))
}

/// 403 when the feature (`what`) is off, 429 when the client's budget of messages is spent.
async fn admit_mail_request(
    state: &AppState,
    address: ClientAddress,
    enabled: bool,
    what: &str,
) -> Result<(), ApiError> {
    if !enabled {
        return Err(disabled(what));
    }
    if !state.mail_budget.take_for_address(address.0).await {
        return Err(too_many_mails(state));
    }
    Ok(())
}

async fn user_with_email(state: &AppState, email: &str) -> Result<Option<User>, ApiError> {
    if validate_email(email).is_err() {
        return Ok(None);
    }
    match state.store.user_by_email(email).await {
        Ok(user) => Ok(Some(user)),
        Err(StoreError::NotFound) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

fn send_verification(state: &AppState, user: &User, email: &str) -> Result<(), ApiError> {
    let ttl = state.self_service.verify_link_ttl_secs;
    let token = state
        .email_links
        .issue(LinkPurpose::VerifyEmail, &user.id, email, ttl);
    let link = state.self_service.link("verify-email", &token);
    deliver(
        state,
        email,
        letters::verify_email(&user.username, &link, ttl / 3600),
    )
}

/// Mails `letter` in the background, so that the answer comes as soon whether or not a
/// message goes out; not at all when the recipient's budget is spent (see [`crate::mail::Mailer::deliver`]).
fn deliver(state: &AppState, to: &str, letter: Letter) -> Result<(), ApiError> {
    let Some(mailer) = state.mailer.clone() else {
        return Err(disabled("mail"));
    };
    let budget = state.mail_budget.clone();
    let to = to.to_string();
    tokio::spawn(async move {
        if budget.take_for_recipient(&to).await {
            mailer.deliver(&to, letter).await;
        } else {
            tracing::info!("a recipient's budget of messages is spent; a message was not sent");
        }
    });
    Ok(())
}

fn verification_sent() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "verification_sent"})),
    )
}

fn refused_link(error: LinkError) -> ApiError {
    match error {
        LinkError::Expired => ApiError::new(
            StatusCode::BAD_REQUEST,
            "link_expired",
            "the link has expired; ask for a new one",
        ),
        LinkError::Invalid => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_link",
            "the link is not valid, or was already used",
        ),
    }
}

/// 429 until the client's budget has room for one more message.
fn too_many_mails(state: &AppState) -> ApiError {
    let per_hour = u64::from(state.self_service.mails_per_address_per_hour.max(1));
    too_many_attempts(std::time::Duration::from_secs(3600 / per_hour))
}

fn disabled(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "self_service_disabled",
        format!("{what} is not enabled on this deployment"),
    )
}
