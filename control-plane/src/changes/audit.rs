//! The audit log: who did what to which object, and when.

use serde::Serialize;

use super::request_context::RequestContext;

use crate::domain::ids::{AuditId, UserId};
use crate::domain::Timestamp;

/// One audit entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: AuditId,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub at: Timestamp,
    /// `None` for actions the system takes itself (bootstrap).
    pub actor_user_id: Option<UserId>,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
    /// The request the entry was made while handling.
    #[serde(flatten)]
    #[schema(inline)]
    pub context: RequestContext,
}

impl AuditEntry {
    /// An entry made now, carrying the context of the request being handled, if any.
    pub fn new(
        actor_user_id: Option<UserId>,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Self {
        Self {
            id: AuditId::generate(),
            at: crate::domain::now(),
            actor_user_id,
            action: action.to_string(),
            target: target.to_string(),
            details,
            context: RequestContext::current(),
        }
    }
}
