//! Users and the rules for creating and changing them.

use serde::{Deserialize, Serialize};

use crate::accounts::ip_allowlist::IpAllowlist;
use crate::domain::ids::UserId;
use crate::domain::validation::InvalidField;
use crate::domain::Timestamp;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;

/// Whether a user may authenticate. `Deleted` is terminal and hides the user's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Suspended,
    Deleted,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// What a user may do in the admin API (`api::permission` holds the whole table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Everything inside their own tenant.
    TenantAdmin,
    /// Backends, pools, limits and quotas; reads users.
    Operator,
    /// Reads everything, the audit log included; changes nothing but themselves.
    Auditor,
    /// Their own profile, keys, sessions and quota.
    User,
}

impl Role {
    pub const ALL: [Self; 5] = [
        Self::Admin,
        Self::TenantAdmin,
        Self::Operator,
        Self::Auditor,
        Self::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::TenantAdmin => "tenant_admin",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::User => "user",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == value)
    }

    /// Whether a holder of this role may give `role` to someone: an admin any role, a tenant
    /// admin only the roles confined to a tenant.
    pub fn may_grant(self, role: Self) -> bool {
        match self {
            Self::Admin => true,
            Self::TenantAdmin => role.confined_to_tenant(),
            Self::Operator | Self::Auditor | Self::User => false,
        }
    }

    /// Whether a holder of this role in a tenant reaches no further than that tenant, so the
    /// tenant's admins may see and manage them.
    pub fn confined_to_tenant(self) -> bool {
        matches!(self, Self::TenantAdmin | Self::Auditor | Self::User)
    }
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub status: UserStatus,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub organization: Option<String>,
    pub department: Option<String>,
    pub employee_id: Option<String>,
    pub groups: Vec<String>,
    /// Addresses and CIDRs the user may call from; empty allows every address.
    pub ip_allowlist: IpAllowlist,
    pub rate_limits: RateLimits,
    pub quotas: Quotas,
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Set by an admin's password reset: until the user changes their password, a login only
    /// allows that change.
    pub password_change_required: bool,
    /// Set by an admin: the user must log in with a second factor, whatever their role.
    pub mfa_required: bool,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub updated_at: Timestamp,
}

impl User {
    /// The tenant whose staff may read the audit entries about this user: theirs when their
    /// role is confined to it, else none, as staff of the tenant cannot see such a user.
    pub fn audit_tenant(&self) -> Option<&str> {
        self.tenant_id
            .as_deref()
            .filter(|_| self.role.confined_to_tenant())
    }

    /// A new active user created at `at`, with no email, name, tenant, groups, allowlist,
    /// limits, quotas or password of its own.
    pub fn new(id: UserId, username: String, role: Role, at: Timestamp) -> Self {
        Self {
            id,
            username,
            email: None,
            name: None,
            status: UserStatus::Active,
            role,
            tenant_id: None,
            organization: None,
            department: None,
            employee_id: None,
            groups: Vec::new(),
            ip_allowlist: IpAllowlist::default(),
            rate_limits: RateLimits::default(),
            quotas: Quotas::default(),
            password_hash: None,
            password_change_required: false,
            mfa_required: false,
            created_at: at,
            updated_at: at,
        }
    }
}

const MAX_USERNAME_CHARS: usize = 64;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_NAME_CHARS: usize = 200;

/// Usernames are 1-64 characters of letters, digits, `.`, `_`, `-`, `@`.
pub fn validate_username(username: &str) -> Result<(), InvalidField> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS {
        return Err(InvalidField {
            field: "username",
            problem: "must be 1 to 64 characters",
        });
    }
    if !username.chars().all(allowed) {
        return Err(InvalidField {
            field: "username",
            problem: "may contain only letters, digits and . _ - @",
        });
    }
    Ok(())
}

/// A plausible address: one `@` with text on both sides, no spaces, at most 254 characters.
pub fn validate_email(email: &str) -> Result<(), InvalidField> {
    let plausible = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@'));
    if plausible {
        Ok(())
    } else {
        Err(InvalidField {
            field: "email",
            problem: "must be an email address like alice@example.com",
        })
    }
}

/// Display names are 1-200 characters without control characters.
pub fn validate_name(name: &str) -> Result<(), InvalidField> {
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(InvalidField {
            field: "name",
            problem: "must be 1 to 200 printable characters",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked() {
        assert!(validate_username("alice.smith-2@corp").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username(&"a".repeat(65)).is_err());
        assert!(validate_username("ålice").is_err());
    }

    #[test]
    fn emails_are_checked() {
        assert!(validate_email("alice@example.com").is_ok());
        assert!(validate_email("alice").is_err());
        assert!(validate_email("@example.com").is_err());
        assert!(validate_email("alice@localhost").is_err());
        assert!(validate_email("a lice@example.com").is_err());
    }

    #[test]
    fn statuses_and_roles_round_trip() {
        for status in [
            UserStatus::Active,
            UserStatus::Suspended,
            UserStatus::Deleted,
        ] {
            assert_eq!(UserStatus::parse(status.as_str()), Some(status));
        }
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(UserStatus::parse("gone"), None);
    }
}
