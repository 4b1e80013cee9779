//! What each role may do through the admin API.
//!
//! Every permission is a type, named in the signature of the handlers that need it
//! (`Caller<ManageBackends>`, `SelfOr<ReadUsers>`), so a handler cannot run for a caller
//! without it. Below is the whole table of which roles hold what: a new role is a new
//! [`Role`] added to the permissions it holds, and a new kind of action is a new permission.

use crate::accounts::user::Role;

/// Something the admin API allows some roles to do.
pub trait Permission {
    /// Whether a caller with `role` holds it.
    fn held_by(role: Role) -> bool;
}

/// Declares a permission and the roles that hold it.
macro_rules! permission {
    ($(#[$doc:meta])* $name:ident: $($role:ident)|+) => {
        $(#[$doc])*
        pub struct $name;

        impl Permission for $name {
            fn held_by(role: Role) -> bool {
                matches!(role, $(Role::$role)|+)
            }
        }
    };
}

permission! {
    /// Be authenticated at all: read one's own profile.
    Authenticated: Admin | User
}

permission! {
    /// Read any user, their keys and their quota.
    ReadUsers: Admin
}

permission! {
    /// Create, change and delete users; issue, revoke and rotate anyone's keys.
    ManageUsers: Admin
}

permission! {
    /// Set a key's own rate limits, which may be the operator's cap on it.
    ManageKeyLimits: Admin
}

permission! {
    /// Read groups and their members.
    ReadGroups: Admin
}

permission! {
    /// Create, change and delete groups and their memberships.
    ManageGroups: Admin
}

permission! {
    /// Read backends, pools and what every Envoy accepted over xDS.
    ReadBackends: Admin
}

permission! {
    /// Add, change and remove backends and pools.
    ManageBackends: Admin
}

permission! {
    /// Read the audit log.
    ReadAudit: Admin
}

permission! {
    /// Rotate the keys that sign session tokens.
    ManageSigningKeys: Admin
}

permission! {
    /// See in the health answer why a dependency is down.
    ReadDependencyErrors: Admin
}

permission! {
    /// Read the metrics summary.
    ReadMetrics: Admin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_is_authenticated_and_only_admins_hold_the_rest() {
        for role in [Role::Admin, Role::User] {
            assert!(Authenticated::held_by(role));
        }
        let admin_only = [
            ReadUsers::held_by,
            ManageUsers::held_by,
            ManageKeyLimits::held_by,
            ReadGroups::held_by,
            ManageGroups::held_by,
            ReadBackends::held_by,
            ManageBackends::held_by,
            ReadAudit::held_by,
            ManageSigningKeys::held_by,
            ReadDependencyErrors::held_by,
            ReadMetrics::held_by,
        ];
        for held_by in admin_only {
            assert!(held_by(Role::Admin));
            assert!(!held_by(Role::User));
        }
    }
}
