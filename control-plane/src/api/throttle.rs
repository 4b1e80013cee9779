//! Holding back clients that keep failing to authenticate: the client's address, the 429 it
//! gets once over its budget of failures, and the hook the admin API's credential check runs
//! through. Logins spend the same budget (`auth.rs`).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;

use super::error::ApiError;
use super::AppState;
use crate::accounts::user::User;

/// The address a request comes from: the connection's peer.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                tracing::error!("the HTTP server is not told its clients' addresses");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the client address is unknown",
                )
            })?;
        Ok(Self(peer.ip().to_canonical()))
    }
}

/// 429 `too_many_attempts`, with `Retry-After` in whole seconds (rounded up).
pub fn too_many_attempts(wait: Duration) -> ApiError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError {
        retry_after_secs: Some(secs.max(1)),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed attempts; retry after the seconds in Retry-After",
        )
    }
}

/// 429 when `address` has used its budget of failed authentications.
pub async fn refuse_over_budget(state: &AppState, address: ClientAddress) -> Result<(), ApiError> {
    match state.address_failures.wait(address.0).await {
        Some(wait) => Err(too_many_attempts(wait)),
        None => Ok(()),
    }
}

/// Runs `check` (which looks a credential up) unless `address` has used its budget of
/// failures, and counts a refused credential against that budget.
pub async fn counting_failures(
    state: &AppState,
    address: ClientAddress,
    check: impl Future<Output = Result<User, ApiError>>,
) -> Result<User, ApiError> {
    refuse_over_budget(state, address).await?;
    let checked = check.await;
    if matches!(&checked, Err(error) if error.status == StatusCode::UNAUTHORIZED) {
        state.address_failures.record(address.0).await;
    }
    checked
}
