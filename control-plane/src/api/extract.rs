//! Extractors: JSON bodies with the project's error shape, and the authenticated caller and
//! what their role permits.

use std::marker::PhantomData;
use std::sync::LazyLock;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use tollgate_filter_core::access::Scopes;
use tollgate_filter_core::credential::{self, CredentialError, Presented};
use tollgate_filter_core::local_digest::LocalDigester;

use super::access::{self, ClientAddress};
use super::error::ApiError;
use super::permission::{Authenticated, Permission};
use super::reach::Reach;
use super::throttle;
use super::AppState;
use crate::accounts::api_key::{KeyDigest, KeyState};
use crate::accounts::user::{User, UserStatus};
use crate::changes::audit::AuditEntry;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::validation::with_refusal;
use crate::identity::tokens::TokenPurpose;
use crate::store::StoreError;

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

/// An authenticated caller whose role holds the permission `P`, calling from an address their
/// allowlist admits with a credential whose scopes cover the call (see [`access`]); a handler
/// that takes one cannot run for anyone else. Without `P`, any such caller.
pub struct Caller<P = Authenticated>(pub User, PhantomData<fn() -> P>);

impl<P> Caller<P> {
    /// An audit entry naming this caller as the one who acted.
    pub fn audit(&self, action: &str, target: &str, details: serde_json::Value) -> AuditEntry {
        AuditEntry::new(Some(self.0.id.clone()), action, target, details)
    }

    /// Which tenants' objects this caller may touch.
    pub fn reach(&self) -> Reach {
        Reach::of(&self.0)
    }

    /// 403 unless the caller's role also holds `Q`, which only some of a request's input needs.
    pub fn also_holding<Q: Permission>(&self) -> Result<(), ApiError> {
        holding::<Q>(&self.0)
    }
}

impl<P: Permission> FromRequestParts<AppState> for Caller<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = authenticate(parts, state).await?.with_full_access()?.user;
        holding::<P>(&user)?;
        Ok(Self(user, PhantomData))
    }
}

/// A caller acting on the user `{id}` of the path: that user themselves, or anyone whose role
/// holds `P` and whose [`Reach`] covers the user (404 as if the user did not exist
/// otherwise), admitted like a [`Caller`]. Only for routes under `/api/v1/users/{id}`.
pub struct SelfOr<P>(pub User, PhantomData<fn() -> P>, Scopes);

impl<P> SelfOr<P> {
    /// An audit entry naming this caller as the one who acted.
    pub fn audit(&self, action: &str, target: &str, details: serde_json::Value) -> AuditEntry {
        AuditEntry::new(Some(self.0.id.clone()), action, target, details)
    }

    /// The scopes of the caller's key; unrestricted for a session or an unscoped key.
    pub fn scopes(&self) -> &Scopes {
        &self.2
    }

    /// 403 unless the caller's role also holds `Q`, which only some of a request's input needs.
    pub fn also_holding<Q: Permission>(&self) -> Result<(), ApiError> {
        holding::<Q>(&self.0)
    }
}

/// 403 unless the caller's role holds `Q`, and, for a permission over the whole deployment,
/// the caller reaches every tenant.
fn holding<Q: Permission>(caller: &User) -> Result<(), ApiError> {
    let held =
        Q::held_by(caller.role) && (!Q::DEPLOYMENT_WIDE || Reach::of(caller) == Reach::Everything);
    if held {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// A caller whose role holds `P` acting on the user `{id}` of the path, which their [`Reach`]
/// covers (404 as if the user did not exist otherwise), admitted like a [`Caller`]. Only for
/// routes under `/api/v1/users/{id}`.
pub struct OnUser<P> {
    pub caller: Caller<P>,
    /// The user the path names, as read while admitting the call.
    pub target: User,
}

impl<P: Permission> FromRequestParts<AppState> for OnUser<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::<P>::from_request_parts(parts, state).await?;
        let target = target_user_id(parts, state).await?;
        let target = user_within(state, &caller.reach(), target).await?;
        Ok(Self { caller, target })
    }
}

/// The `{id}` of a route under `/api/v1/users/{id}`; other parameters are left to the handler.
#[derive(Deserialize)]
struct TargetUserId {
    id: String,
}

async fn target_user_id(parts: &mut Parts, state: &AppState) -> Result<UserId, ApiError> {
    let Path(target) = Path::<TargetUserId>::from_request_parts(parts, state)
        .await
        .map_err(|rejection: PathRejection| {
            if rejection.status().is_client_error() {
                ApiError::validation(rejection.body_text())
            } else {
                tracing::error!(%rejection, "a route without a user id asks for one");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the route names no user",
                )
            }
        })?;
    Ok(UserId::from_string(target.id))
}

/// The user `id`, or 404 when there is none or `reach` does not cover them.
pub async fn user_within(state: &AppState, reach: &Reach, id: UserId) -> Result<User, ApiError> {
    match state.store.user(&id).await {
        Ok(user) if reach.covers_user(&user) => Ok(user),
        Ok(_) | Err(StoreError::NotFound) => Err(ApiError::not_found("user")),
        Err(other) => Err(other.into()),
    }
}

impl<P: Permission> FromRequestParts<AppState> for SelfOr<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let VerifiedCaller { user, scopes, .. } =
            authenticate(parts, state).await?.with_full_access()?;
        let target = target_user_id(parts, state).await?;
        if user.id == target {
            return Ok(Self(user, PhantomData, scopes));
        }
        holding::<P>(&user)?;
        let reach = Reach::of(&user);
        if reach != Reach::Everything {
            user_within(state, &reach, target).await?;
        }
        Ok(Self(user, PhantomData, scopes))
    }
}

/// A caller acting on themselves under `/api/v1/users/me`, admitted like a [`Caller`], with
/// the session they call with, if they call with one.
pub struct Me {
    pub user: User,
    pub session: Option<SessionId>,
}

impl Me {
    /// An audit entry naming this caller as the one who acted.
    pub fn audit(&self, action: &str, target: &str, details: serde_json::Value) -> AuditEntry {
        AuditEntry::new(Some(self.user.id.clone()), action, target, details)
    }
}

impl FromRequestParts<AppState> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(authenticate(parts, state).await?.with_full_access()?.into())
    }
}

impl From<VerifiedCaller> for Me {
    fn from(caller: VerifiedCaller) -> Self {
        Self {
            user: caller.user,
            session: caller.session.map(|session| session.id),
        }
    }
}

/// A [`Me`] that may also call with a session that only allows changing the password (after
/// an admin's reset): for that change alone.
pub struct ChangingOwnPassword(pub Me);

impl FromRequestParts<AppState> for ChangingOwnPassword {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(authenticate(parts, state).await?.into()))
    }
}

/// A [`Me`] calling with a session (403 `session_required` for an API key), which may also be
/// one that only allows enrolling a second factor (a user who must use one and has none
/// yet): for that enrolment alone.
pub struct EnrollingMfa(pub Me);

impl FromRequestParts<AppState> for EnrollingMfa {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = authenticate(parts, state).await?;
        match caller.session.as_ref().map(|session| session.purpose) {
            Some(TokenPurpose::PasswordChange) => Err(password_change_required()),
            Some(_) => Ok(Self(caller.into())),
            // A key is a machine's: one that leaked must not tie the person's logins to an
            // authenticator its holder controls.
            None => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "session_required",
                "a second factor is enrolled with a login session, not an API key",
            )),
        }
    }
}

/// Who a request authenticated as, and with what.
struct VerifiedCaller {
    user: User,
    /// The scopes of the caller's key; unrestricted for a session or an unscoped key.
    scopes: Scopes,
    session: Option<CallerSession>,
}

/// The session a request authenticated with.
struct CallerSession {
    id: SessionId,
    purpose: TokenPurpose,
}

impl VerifiedCaller {
    /// 403 `password_change_required` for a session that may only change the password, and
    /// `mfa_enrolment_required` for one that may only enrol a second factor.
    fn with_full_access(self) -> Result<Self, ApiError> {
        match self.session.as_ref().map(|session| session.purpose) {
            Some(TokenPurpose::PasswordChange) => Err(password_change_required()),
            Some(TokenPurpose::MfaEnrolment) => Err(mfa_enrolment_required()),
            _ => Ok(self),
        }
    }
}

/// 403 `mfa_enrolment_required`: the user must log in with a second factor, and this session
/// may only enrol one.
fn mfa_enrolment_required() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "mfa_enrolment_required",
        "a second factor must be enrolled first: POST /api/v1/users/me/mfa/totp",
    )
}

/// 403 `password_change_required`: an admin reset the password, and this session may only
/// change it.
fn password_change_required() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "password_change_required",
        "the password must be changed first: POST /api/v1/users/me/password",
    )
}

/// Longest credential read, as the filter's default `max_credential_bytes`.
const MAX_CREDENTIAL_BYTES: usize = 8192;

/// The filter's parser names every credential by a digest under a per-process secret for its
/// own caches; the control plane keeps no such cache, but parses with the same code.
static CREDENTIAL_DIGESTER: LazyLock<LocalDigester> =
    LazyLock::new(|| LocalDigester::new(rand::random()));

/// The credential of a request, read exactly as the filter reads it: a session token
/// (`Authorization: Bearer <JWT>`, else the session cookie when no key is sent) wins over an
/// API key (`X-API-Key`, else `Authorization: Bearer`); a key sent twice is refused.
fn presented(headers: &HeaderMap) -> Result<Presented, CredentialError> {
    let pairs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    credential::extract(&pairs, MAX_CREDENTIAL_BYTES, &CREDENTIAL_DIGESTER)
}

/// The session token a request presents, if it presents one.
pub fn presented_session_token(headers: &HeaderMap) -> Option<String> {
    match presented(headers) {
        Ok(Presented::Session { token, .. }) => Some(token),
        _ => None,
    }
}

/// Whether the session cookie is what authenticates the request: no key and no bearer token
/// came with it.
pub fn authenticates_by_cookie(headers: &HeaderMap) -> bool {
    matches!(
        presented(headers),
        Ok(Presented::Session {
            from_cookie: true,
            ..
        })
    )
}

/// What authenticates a request, as read from its headers.
enum Credential {
    Session(String),
    ApiKey(KeyDigest),
}

fn credential(headers: &HeaderMap) -> Result<Credential, ApiError> {
    match presented(headers) {
        Ok(Presented::Session {
            token,
            alongside_api_key,
            ..
        }) => {
            if alongside_api_key {
                tracing::info!("a request sent both a session and an API key; the session wins");
                metrics::counter!("tollgate_http_dual_credentials_total").increment(1);
            }
            Ok(Credential::Session(token))
        }
        Ok(Presented::ApiKey(key)) => Ok(Credential::ApiKey(key.digest().into())),
        Err(CredentialError::Missing | CredentialError::Invalid) => {
            Err(ApiError::unauthenticated())
        }
    }
}

/// The active user behind the request's credential and what that credential is limited to,
/// once [`access::admit`] lets the call through. A client address that keeps presenting
/// refused credentials is held back before any lookup (see [`throttle`]).
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<VerifiedCaller, ApiError> {
    let credential = credential(&parts.headers)?;
    let address = ClientAddress::from_request_parts(parts, state).await?;
    let caller = throttle::counting_failures(state, address, async {
        match credential {
            Credential::Session(token) => session_caller(state, &token).await,
            Credential::ApiKey(digest) => {
                let (user, scopes) = key_caller(state, &digest).await?;
                Ok(VerifiedCaller {
                    user,
                    scopes,
                    session: None,
                })
            }
        }
    })
    .await?;
    access::admit(parts, address, &caller.user, &caller.scopes)?;
    Ok(caller)
}

/// The owner of a usable key, if the owner is active, and the key's scopes. Scopes that cannot
/// be read admit nothing, as in the filter.
async fn key_caller(state: &AppState, digest: &KeyDigest) -> Result<(User, Scopes), ApiError> {
    let owner = match state.store.key_by_hash(&state.hasher.hash(digest)).await {
        Ok(owner) => owner,
        Err(StoreError::NotFound) => return Err(ApiError::unauthenticated()),
        Err(other) => return Err(other.into()),
    };
    if owner.key.state_at(crate::domain::now()) != KeyState::Usable
        || owner.user.status != UserStatus::Active
    {
        return Err(ApiError::unauthenticated());
    }
    let scopes = Scopes::parse(&owner.key.scopes).map_err(|error| {
        tracing::error!(%error, key = %owner.key.id, "a stored key's scopes are unreadable");
        ApiError::new(
            StatusCode::FORBIDDEN,
            "scope_denied",
            "the API key's scopes cannot be read",
        )
    })?;
    Ok((owner.user, scopes))
}

/// A verified access token of a live session of an active user.
async fn session_caller(state: &AppState, token: &str) -> Result<VerifiedCaller, ApiError> {
    let claims = state
        .tokens
        .verify(token)
        .map_err(|_| ApiError::unauthenticated())?;
    let purpose = state.tokens.purpose(&claims);
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
    Ok(VerifiedCaller {
        user,
        scopes: Scopes::default(),
        session: Some(CallerSession {
            id: session.id,
            purpose,
        }),
    })
}
