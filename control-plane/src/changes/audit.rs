//! The audit log: who did what to which object, and when.

use serde::Serialize;

use super::request_context::RequestContext;

use crate::domain::ids::{AuditId, UserId};
use crate::domain::Timestamp;

/// Fields an object's snapshot never keeps, whatever the object's own encoding shows: hashes
/// of passwords and keys, second-factor secrets, credentials.
const SECRET_FIELDS: &[&str] = &[
    "password",
    "password_hash",
    "hash",
    "key_hash",
    "secret",
    "totp_secret",
    "credential",
    "credentials",
    "client_secret",
    "bind_password",
];

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
    /// The tenant of the object acted on; `None` for objects outside any tenant.
    pub tenant_id: Option<String>,
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
            tenant_id: None,
        }
    }

    /// The entry, about an object of `tenant`.
    pub fn in_tenant(mut self, tenant: Option<&str>) -> Self {
        self.tenant_id = tenant.map(str::to_string);
        self
    }

    /// The entry, with the object as it was created (`details.after`).
    pub fn created(self, after: &impl Serialize) -> Self {
        self.with_snapshot("after", after)
    }

    /// The entry, with the object as it was and as it is (`details.before`, `details.after`).
    pub fn changed(self, before: &impl Serialize, after: &impl Serialize) -> Self {
        self.with_snapshot("before", before)
            .with_snapshot("after", after)
    }

    /// The entry, with the object as it was before it went (`details.before`).
    pub fn removed(self, before: &impl Serialize) -> Self {
        self.with_snapshot("before", before)
    }

    fn with_snapshot(mut self, key: &str, object: &impl Serialize) -> Self {
        let snapshot = serde_json::to_value(object)
            .map(redacted)
            .unwrap_or_else(|error| serde_json::json!({"unrecorded": error.to_string()}));
        if !self.details.is_object() {
            self.details = serde_json::json!({"details": self.details});
        }
        if let Some(details) = self.details.as_object_mut() {
            details.insert(key.to_string(), snapshot);
        }
        self
    }
}

/// `value` without any [`SECRET_FIELDS`], at any depth.
fn redacted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(fields) => fields
            .into_iter()
            .filter(|(name, _)| !SECRET_FIELDS.contains(&name.as_str()))
            .map(|(name, value)| (name, redacted(value)))
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(redacted).collect(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_keep_no_secret_at_any_depth() {
        let before = serde_json::json!({
            "username": "ada",
            "password_hash": "$argon2id$...",
            "mfa": {"totp_secret": "JBSWY3DP", "enabled": true},
            "keys": [{"name": "ci", "key_hash": "ab12"}],
        });
        let entry = AuditEntry::new(None, "user.updated", "u_1", serde_json::json!({})).changed(
            &before,
            &serde_json::json!({"username": "ada", "password": "x"}),
        );
        assert_eq!(
            entry.details,
            serde_json::json!({
                "before": {"username": "ada", "mfa": {"enabled": true}, "keys": [{"name": "ci"}]},
                "after": {"username": "ada"},
            })
        );
    }
}
