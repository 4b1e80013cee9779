//! Changes authenticated by the session cookie come from the control plane's own pages.
//!
//! Browsers send the cookie with requests that other sites' pages make, `SameSite=Lax` included
//! when the other page is on the same site (another port of the same host), so a change the
//! cookie authenticates (any method but GET, HEAD and OPTIONS) must show where it comes from:
//! an `Origin` that is the control plane's own (the scheme with the request's `Host`) or one of
//! `http.allowed_origins`; without `Origin`, the header `x-tollgate-csrf: 1`, which no page can
//! send to another origin without the control plane's consent (it grants none). Anything else
//! is 403 `origin_not_allowed`. Calls authenticated by an API key or `Authorization: Bearer`
//! carry no ambient credential and pass unchecked.

use axum::extract::{Request, State};
use axum::http::header::{AsHeaderName, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{cookie_value, REFRESH_COOKIE};
use super::error::ApiError;
use super::extract::authenticates_by_cookie;
use super::AppState;
use crate::domain::web_origin::WebOrigin;

/// The header that stands in for `Origin` for clients that send none.
pub const CSRF_HEADER: &str = "x-tollgate-csrf";

/// Refuses a cookie-authenticated change from anywhere but the allowed origins.
pub async fn refuse_cross_site_changes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let is_change = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let ambient = authenticates_by_cookie(request.headers())
        || cookie_value(request.headers(), REFRESH_COOKIE).is_some();
    if is_change
        && ambient
        && !comes_from_allowed_origin(
            request.headers(),
            request.uri(),
            &state.access.allowed_origins,
        )
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "a change authenticated by the session cookie must come from the control \
                 plane's own origin or one of `http.allowed_origins` (or, without Origin, carry \
                 `{CSRF_HEADER}: 1`)"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

fn comes_from_allowed_origin(headers: &HeaderMap, uri: &Uri, allowed: &[WebOrigin]) -> bool {
    if headers.contains_key(ORIGIN) {
        only_value(headers, ORIGIN)
            .and_then(|origin| origin.to_str().ok())
            .and_then(WebOrigin::parse)
            .is_some_and(|origin| allowed.contains(&origin) || is_own(&origin, headers, uri))
    } else {
        only_value(headers, CSRF_HEADER).is_some_and(|value| value.as_bytes() == b"1")
    }
}

/// The header's value when it comes exactly once.
fn only_value(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// Whether `origin` names the host and port the request was sent to.
fn is_own(origin: &WebOrigin, headers: &HeaderMap, uri: &Uri) -> bool {
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| uri.authority().map(|authority| authority.as_str()));
    host.and_then(|host| origin.with_authority(host))
        .is_some_and(|own| own == *origin)
}
