//! Tenants: the organisations that share a deployment. A tenant's users and groups are out of
//! every other tenant's reach, and they inherit its settings below their own.

use serde::{Serialize, Serializer};

use crate::accounts::user::{Role, User};
use crate::domain::ids::GroupId;
use crate::domain::validation::InvalidField;
use crate::domain::Timestamp;
use crate::identity::session::LoginMethod;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    #[schema(example = "acme")]
    pub id: String,
    pub name: String,
    /// The role of a user created in the tenant without one: `user` or `auditor`.
    pub default_role: Role,
    /// The group a user created in the tenant joins.
    pub default_group_id: Option<GroupId>,
    /// Every user of the tenant must log in with a second factor.
    pub mfa_required: bool,
    /// The login methods the tenant's users may use; empty allows every configured one.
    #[serde(serialize_with = "method_names")]
    #[schema(value_type = Vec<String>, example = json!(["local", "oidc"]))]
    pub login_methods: Vec<LoginMethod>,
    /// Inherited by the tenant's users and groups below their own.
    pub rate_limits: RateLimits,
    pub quotas: Quotas,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub updated_at: Timestamp,
}

impl Tenant {
    /// Whether the tenant's users may log in with `method`.
    pub fn allows_login_with(&self, method: LoginMethod) -> bool {
        self.login_methods.is_empty() || self.login_methods.contains(&method)
    }

    /// Whether `user` belongs to this tenant.
    pub fn holds(&self, user: &User) -> bool {
        user.tenant_id.as_deref() == Some(self.id.as_str())
    }
}

fn method_names<S: Serializer>(methods: &[LoginMethod], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(methods.iter().map(|method| method.as_str()))
}

const MAX_TENANT_ID_CHARS: usize = 64;
const MAX_TENANT_NAME_CHARS: usize = 200;

/// Tenant ids are 1-64 lowercase letters, digits, `-` and `_`, starting with a letter or a
/// digit: they travel in the `x-tollgate-tenant-id` header and the `tid` claim.
pub fn validate_tenant_id(id: &str) -> Result<(), InvalidField> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_');
    let starts_well = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !starts_well || id.len() > MAX_TENANT_ID_CHARS || !id.chars().all(allowed) {
        return Err(InvalidField {
            field: "id",
            problem: "must be 1 to 64 lowercase letters, digits, - or _, starting with a letter \
                      or a digit",
        });
    }
    Ok(())
}

/// Tenant names are 1-200 characters without control characters.
pub fn validate_tenant_name(name: &str) -> Result<(), InvalidField> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_TENANT_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(InvalidField {
            field: "name",
            problem: "must be 1 to 200 printable characters",
        });
    }
    Ok(())
}

/// A tenant's default role is `user` or `auditor`: nothing it hands out reaches further.
pub fn validate_default_role(role: Role) -> Result<(), InvalidField> {
    if matches!(role, Role::User | Role::Auditor) {
        Ok(())
    } else {
        Err(InvalidField {
            field: "default_role",
            problem: "must be user or auditor",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_header_safe_slugs() {
        for good in ["acme", "t_3k9x", "acme-eu", "9lives"] {
            assert!(validate_tenant_id(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "-acme", "a b", "acme\n", "ä", &"a".repeat(65)] {
            assert!(validate_tenant_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_roles_reach_no_further_than_auditor() {
        assert!(validate_default_role(Role::User).is_ok());
        assert!(validate_default_role(Role::Auditor).is_ok());
        for role in [Role::Admin, Role::TenantAdmin, Role::Operator] {
            assert!(validate_default_role(role).is_err());
        }
    }

    #[test]
    fn an_empty_method_list_allows_every_method() {
        let mut tenant = Tenant {
            id: "acme".into(),
            name: "Acme".into(),
            default_role: Role::User,
            default_group_id: None,
            mfa_required: false,
            login_methods: Vec::new(),
            rate_limits: RateLimits::default(),
            quotas: Quotas::default(),
            created_at: crate::domain::now(),
            updated_at: crate::domain::now(),
        };
        assert!(tenant.allows_login_with(LoginMethod::Ldap));
        tenant.login_methods = vec![LoginMethod::Oidc];
        assert!(tenant.allows_login_with(LoginMethod::Oidc));
        assert!(!tenant.allows_login_with(LoginMethod::Local));
    }
}
