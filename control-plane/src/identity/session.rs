//! Login sessions: a short-lived signed access token plus a rotating refresh token.

use crate::accounts::api_key::StoredKeyHash;
use crate::domain::ids::{SessionId, UserId};
use crate::domain::Timestamp;

/// How a user proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMethod {
    Local,
    /// A bind against the LDAP directory.
    Ldap,
    /// At an OpenID Connect provider (which one is in the audit entry).
    Oidc,
}

impl LoginMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Ldap => "ldap",
            Self::Oidc => "oidc",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "local" => Some(Self::Local),
            "ldap" => Some(Self::Ldap),
            "oidc" => Some(Self::Oidc),
            _ => None,
        }
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    /// Keyed hash of the current refresh token; the token itself is never stored.
    pub refresh_hash: StoredKeyHash,
    pub method: LoginMethod,
    /// The client address that logged in.
    pub address: Option<String>,
    /// The `User-Agent` that logged in.
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    /// The login, or the last refresh of the access token.
    pub last_used_at: Timestamp,
    pub refresh_expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl Session {
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.refresh_expires_at > now
    }
}
