//! Ties each request's log lines and audit entries together: takes its correlation id from
//! `x-request-id` (see [`crate::domain::correlation`]), handles the request in a span that
//! names it and with its [`RequestContext`], and answers the id in `x-request-id`.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::USER_AGENT;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::access::ClientAddress;
use super::AppState;
use crate::changes::request_context::RequestContext;
use crate::domain::correlation::{CorrelationId, REQUEST_ID_HEADER};
use crate::identity::device::kept_user_agent;

/// The middleware; the id is also left in the request's extensions for handlers.
pub async fn correlate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let id = CorrelationId::from_header(
        parts
            .headers
            .get(REQUEST_ID_HEADER)
            .map(HeaderValue::as_bytes),
    );
    // A request whose address cannot be worked out is answered by whatever needs it.
    let address = ClientAddress::from_request_parts(&mut parts, &state)
        .await
        .ok();
    let context = RequestContext {
        client_address: address.map(|address| address.0.to_string()),
        user_agent: parts
            .headers
            .get(USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(kept_user_agent),
        correlation_id: Some(id.to_string()),
    };
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %parts.method,
        path = %parts.uri.path(),
    );
    parts.extensions.insert(id.clone());
    let mut response = context
        .scope(next.run(Request::from_parts(parts, body)))
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}
