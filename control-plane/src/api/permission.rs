//! What each role may do through the admin API.
//!
//! Every permission is a type, named in the signature of the handlers that need it
//! (`Caller<ManageBackends>`, `SelfOr<ReadUsers>`), so a handler cannot run for a caller
//! without it. Below is the whole table of which roles hold what: a new role is a new
//! [`Role`] added to the permissions it holds, and a new kind of action is a new permission.

use crate::accounts::user::Role;

/// Something the admin API allows some roles to do.
pub trait Permission {
    /// Over objects of the whole deployment (backends, the audit log), which no tenant owns:
    /// held only by callers who belong to no tenant, or admins.
    const DEPLOYMENT_WIDE: bool = false;

    /// Whether a caller with `role` holds it.
    fn held_by(role: Role) -> bool;
}

/// Declares a permission and the roles that hold it; `deployment` marks one over objects of
/// the whole deployment ([`Permission::DEPLOYMENT_WIDE`]).
macro_rules! permission {
    ($(#[$doc:meta])* $name:ident: $($role:ident)|+) => {
        permission!($(#[$doc])* $name [false]: $($role)|+);
    };
    ($(#[$doc:meta])* deployment $name:ident: $($role:ident)|+) => {
        permission!($(#[$doc])* $name [true]: $($role)|+);
    };
    ($(#[$doc:meta])* $name:ident [$wide:literal]: $($role:ident)|+) => {
        $(#[$doc])*
        pub struct $name;

        impl Permission for $name {
            const DEPLOYMENT_WIDE: bool = $wide;

            fn held_by(role: Role) -> bool {
                matches!(role, $(Role::$role)|+)
            }
        }
    };
}

permission! {
    /// Be authenticated at all: read one's own profile, keys, sessions and quota.
    Authenticated: Admin | TenantAdmin | Operator | Auditor | User
}

permission! {
    /// Read users, their keys and their quota (within the caller's reach, see [`super::reach`]).
    ReadUsers: Admin | TenantAdmin | Operator | Auditor
}

permission! {
    /// Create, change, delete and restore users; issue, revoke and rotate their keys (within
    /// the caller's reach, and only users whose role the caller may grant).
    ManageUsers: Admin | TenantAdmin
}

permission! {
    /// Set the rate limits and quotas of users, keys and groups, which may be the operator's
    /// cap on them.
    ManageLimits: Admin | Operator
}

permission! {
    /// Read groups and their members.
    ReadGroups: Admin | TenantAdmin | Operator | Auditor
}

permission! {
    /// Create, rename and delete groups and change their memberships.
    ManageGroups: Admin | TenantAdmin
}

permission! {
    /// Read backends, pools and what every Envoy accepted over xDS.
    deployment ReadBackends: Admin | Operator | Auditor
}

permission! {
    /// Add, change and remove backends and pools, and route groups to pools.
    deployment ManageBackends: Admin | Operator
}

permission! {
    /// Read tenants, their settings and statistics (a tenant's staff: their own only).
    ReadTenants: Admin | TenantAdmin | Operator | Auditor
}

permission! {
    /// Create, change and delete tenants.
    deployment ManageTenants: Admin
}

permission! {
    /// Read the audit log (a tenant's staff: the entries of their tenant's objects only).
    ReadAudit: Admin | TenantAdmin | Auditor
}

permission! {
    /// Rotate the keys that sign session tokens.
    deployment ManageSigningKeys: Admin
}

permission! {
    /// See in the health answer why a dependency is down.
    deployment ReadDependencyErrors: Admin | Operator | Auditor
}

permission! {
    /// Read the metrics summary.
    deployment ReadMetrics: Admin | Operator | Auditor
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A permission's name, whether a role holds it, and the roles that must.
    type Holders = (&'static str, fn(Role) -> bool, &'static [Role]);

    /// The table above, read across: which roles hold each permission.
    #[test]
    fn each_role_holds_what_the_table_says() {
        use Role::{Admin, Auditor, Operator, TenantAdmin};
        let table: [Holders; 14] = [
            ("Authenticated", Authenticated::held_by, &Role::ALL),
            (
                "ReadUsers",
                ReadUsers::held_by,
                &[Admin, TenantAdmin, Operator, Auditor],
            ),
            ("ManageUsers", ManageUsers::held_by, &[Admin, TenantAdmin]),
            ("ManageLimits", ManageLimits::held_by, &[Admin, Operator]),
            (
                "ReadGroups",
                ReadGroups::held_by,
                &[Admin, TenantAdmin, Operator, Auditor],
            ),
            ("ManageGroups", ManageGroups::held_by, &[Admin, TenantAdmin]),
            (
                "ReadBackends",
                ReadBackends::held_by,
                &[Admin, Operator, Auditor],
            ),
            (
                "ManageBackends",
                ManageBackends::held_by,
                &[Admin, Operator],
            ),
            (
                "ReadTenants",
                ReadTenants::held_by,
                &[Admin, TenantAdmin, Operator, Auditor],
            ),
            ("ManageTenants", ManageTenants::held_by, &[Admin]),
            (
                "ReadAudit",
                ReadAudit::held_by,
                &[Admin, TenantAdmin, Auditor],
            ),
            ("ManageSigningKeys", ManageSigningKeys::held_by, &[Admin]),
            (
                "ReadDependencyErrors",
                ReadDependencyErrors::held_by,
                &[Admin, Operator, Auditor],
            ),
            (
                "ReadMetrics",
                ReadMetrics::held_by,
                &[Admin, Operator, Auditor],
            ),
        ];
        for (name, held_by, holders) in table {
            for role in Role::ALL {
                assert_eq!(
                    held_by(role),
                    holders.contains(&role),
                    "{name} for {role:?}"
                );
            }
        }
    }
}
