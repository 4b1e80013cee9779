//! How far a caller reaches among the objects that belong to tenants (users, their keys,
//! groups, tenants): an admin everywhere; a tenant admin, and an operator or auditor who
//! belongs to a tenant, only inside that tenant. An object out of reach answers 404, exactly
//! as one that does not exist, so a tenant's staff cannot even learn that it does.

use crate::accounts::group::Group;
use crate::accounts::user::{Role, User};

/// The objects a caller's role may touch at all; the permission decides what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Everything,
    Tenant(String),
    /// A tenant admin without a tenant: they administer nobody.
    Nothing,
}

impl Reach {
    pub fn of(caller: &User) -> Self {
        let tenant = caller.tenant_id.clone().map(Self::Tenant);
        match caller.role {
            Role::Admin => Self::Everything,
            Role::Operator | Role::Auditor => tenant.unwrap_or(Self::Everything),
            Role::TenantAdmin | Role::User => tenant.unwrap_or(Self::Nothing),
        }
    }

    /// The one tenant a listing must stay in, if the caller is confined to one. `Nothing`
    /// names a tenant no object can belong to.
    pub fn only_tenant(&self) -> Option<&str> {
        match self {
            Self::Everything => None,
            Self::Tenant(tenant) => Some(tenant),
            Self::Nothing => Some(""),
        }
    }

    /// Whether objects of `tenant` (`None`: of no tenant) are within reach.
    pub fn covers_tenant(&self, tenant: Option<&str>) -> bool {
        match self {
            Self::Everything => true,
            Self::Tenant(own) => tenant == Some(own.as_str()),
            Self::Nothing => false,
        }
    }

    /// Whether `user` is within reach: in the caller's tenant, with a role confined to it.
    pub fn covers_user(&self, user: &User) -> bool {
        match self {
            Self::Everything => true,
            Self::Tenant(_) => {
                self.covers_tenant(user.tenant_id.as_deref()) && user.role.confined_to_tenant()
            }
            Self::Nothing => false,
        }
    }

    pub fn covers_group(&self, group: &Group) -> bool {
        self.covers_tenant(group.tenant_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::UserId;

    fn user(role: Role, tenant: Option<&str>) -> User {
        let mut user = User::new(
            UserId::generate(),
            "someone".into(),
            role,
            crate::domain::now(),
        );
        user.tenant_id = tenant.map(str::to_string);
        user
    }

    #[test]
    fn a_tenant_admin_reaches_their_tenants_people_below_them() {
        let reach = Reach::of(&user(Role::TenantAdmin, Some("acme")));
        assert!(reach.covers_user(&user(Role::User, Some("acme"))));
        assert!(reach.covers_user(&user(Role::TenantAdmin, Some("acme"))));
        assert!(!reach.covers_user(&user(Role::User, Some("globex"))));
        assert!(!reach.covers_user(&user(Role::User, None)));
        assert!(!reach.covers_user(&user(Role::Admin, Some("acme"))));
        assert!(!reach.covers_user(&user(Role::Operator, Some("acme"))));
    }

    #[test]
    fn staff_without_a_tenant_reach_everything_but_a_tenant_admin_nothing() {
        assert_eq!(
            Reach::of(&user(Role::Admin, Some("acme"))),
            Reach::Everything
        );
        assert_eq!(Reach::of(&user(Role::Auditor, None)), Reach::Everything);
        assert_eq!(Reach::of(&user(Role::Operator, None)), Reach::Everything);
        let lost = Reach::of(&user(Role::TenantAdmin, None));
        assert!(!lost.covers_user(&user(Role::User, None)));
        assert_eq!(lost.only_tenant(), Some(""));
    }
}
