//! Where an admin API call comes from and what a key may reach, beyond its user's role: the
//! client's address, the user's IP allowlist (for keys and sessions alike) and the key's
//! scopes, read and matched by the filter's own code, so both doors answer a credential alike.
//!
//! A key without scopes is unrestricted: it reaches every route behind Envoy and the whole admin
//! API, as far as its user's role goes. A scoped key reaches the admin API only through
//! [`ADMIN_API_SCOPE`] or a path scope covering the call (`GET /api/v1/users`), and hands out
//! only keys whose scopes its own cover.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use tollgate_filter_core::access::{
    client_ip, ClientIpError, IpAllowlist, Scopes, ADMIN_API_SCOPE,
};

use super::error::ApiError;
use super::AppState;
use crate::accounts::user::User;
use crate::domain::web_origin::WebOrigin;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// What the admin API knows about the proxies and pages in front of it.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// How many proxies in front of the control plane append the address they saw to
    /// `X-Forwarded-For`; with 0 the peer is the client.
    pub trusted_hops: u8,
    /// Origins besides the control plane's own whose pages may send changes authenticated by
    /// the session cookie (see [`super::cross_site`]).
    pub allowed_origins: Vec<WebOrigin>,
}

/// The address a request comes from, as the filter works it out: the connection's peer, or
/// the `X-Forwarded-For` entry `http.trusted_hops` proxies vouch for (400
/// `invalid_forwarded_for` when that entry is no address).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        client_address(parts, state.access.trusted_hops).map(Self)
    }
}

/// Admits a call by `user` from `address` with a credential limited to `scopes` (a session's
/// are unrestricted): 403 `ip_not_allowed` from outside the user's allowlist, 403
/// `scope_denied` outside the key's scopes.
pub fn admit(
    parts: &Parts,
    address: ClientAddress,
    user: &User,
    scopes: &Scopes,
) -> Result<(), ApiError> {
    let allowlist = IpAllowlist::parse(user.ip_allowlist.entries()).map_err(|error| {
        tracing::error!(%error, user = %user.id, "a stored allowlist is unreadable; refusing");
        ip_not_allowed()
    })?;
    if !allowlist.allows(address.0) {
        return Err(ip_not_allowed());
    }
    if !scopes.permits_admin_api(parts.method.as_str(), parts.uri.path()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scope_denied",
            format!(
                "the API key's scopes do not cover {} {}; the admin API needs the scope \
                 {ADMIN_API_SCOPE:?} or a path scope covering the call",
                parts.method,
                parts.uri.path()
            ),
        ));
    }
    Ok(())
}

/// 403 `scopes_too_wide` unless a caller limited to `caller` may hand out a key limited to
/// `key`: a key never reaches further than the key that made it.
pub fn may_hand_out(caller: &Scopes, key: &Scopes) -> Result<(), ApiError> {
    if caller.covers(key) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "scopes_too_wide",
            "a scoped API key may only issue or rotate keys whose `scopes` are within its own",
        ))
    }
}

fn client_address(parts: &Parts, trusted_hops: u8) -> Result<IpAddr, ApiError> {
    let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
        tracing::error!("the HTTP server is not told its clients' addresses");
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the client address is unknown",
        ));
    };
    let forwarded_for: Vec<&[u8]> = parts
        .headers
        .get_all(FORWARDED_FOR)
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    let forwarded_for = forwarded_for.join(&b", "[..]);
    let forwarded_for = Some(forwarded_for.as_slice()).filter(|list| !list.is_empty());
    client_ip(&peer.ip().to_string(), forwarded_for, trusted_hops).map_err(|error| match error {
        ClientIpError::InvalidForwardedFor { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_forwarded_for",
            error.to_string(),
        ),
        ClientIpError::InvalidSourceAddress { .. } => {
            tracing::error!(%error, "the peer address cannot be read");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the client address is unknown",
            )
        }
    })
}

fn ip_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
        "requests from this address are not allowed for this user",
    )
}
