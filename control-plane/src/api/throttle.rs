//! Holding back clients that keep failing to authenticate: the 429 a client's address gets
//! once over its budget of failures, and the hook the admin API's credential check runs
//! through. Logins spend the same budget (`login.rs`).

use std::future::Future;
use std::time::Duration;

use axum::http::StatusCode;

use super::access::ClientAddress;
use super::error::ApiError;
use super::AppState;

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
pub async fn counting_failures<T>(
    state: &AppState,
    address: ClientAddress,
    check: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    refuse_over_budget(state, address).await?;
    let checked = check.await;
    if matches!(&checked, Err(error) if error.status == StatusCode::UNAUTHORIZED) {
        state.address_failures.record(address.0).await;
    }
    checked
}
