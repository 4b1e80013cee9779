//! The request an audit entry is made while handling: set once per HTTP request around its
//! handling, and read by [`super::audit::AuditEntry::new`], so every entry a handler makes
//! carries it without each handler passing it on.

use std::future::Future;

use serde::Serialize;

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// Who sent the request and under which correlation id; each `None` when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RequestContext {
    /// The client's address, as the admin API works it out (see `api::access`).
    pub client_address: Option<String>,
    /// The client's `User-Agent`, cut to a bounded length.
    pub user_agent: Option<String>,
    /// The request's `x-request-id` (see [`crate::domain::correlation`]).
    pub correlation_id: Option<String>,
}

impl RequestContext {
    /// The context of the request being handled; empty outside one.
    pub fn current() -> Self {
        CURRENT.try_with(Clone::clone).unwrap_or_default()
    }

    /// Runs `handling` with this as the current request's context.
    pub async fn scope<F: Future>(self, handling: F) -> F::Output {
        CURRENT.scope(self, handling).await
    }

    /// Whether nothing about the request is known (an entry the system made by itself, or one
    /// written before requests were recorded).
    pub fn is_empty(&self) -> bool {
        self.client_address.is_none() && self.user_agent.is_none() && self.correlation_id.is_none()
    }
}
