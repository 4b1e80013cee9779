//! The audit log: who did what to which object, and when.

use serde::Serialize;

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
}

impl AuditEntry {
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
        }
    }
}
