//! Groups: users share limits and are routed to the group's upstream pools.

use serde::Serialize;

use crate::domain::ids::GroupId;
use crate::domain::validation::InvalidField;
use crate::domain::Timestamp;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;
use crate::routing::pool::PoolName;

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    /// The tenant the group belongs to; `None` for a group of the whole deployment.
    pub tenant_id: Option<String>,
    /// When a user is in several groups, the highest priority routes them.
    pub priority: i32,
    /// Pools this group's requests go to, in precedence order (first healthy wins).
    pub pools: Vec<PoolName>,
    pub rate_limits: RateLimits,
    pub quotas: Quotas,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub updated_at: Timestamp,
}

const MAX_POOLS_PER_GROUP: usize = 10;

/// Group names are 1-64 letters, digits, `.`, `_`, `-`.
pub fn validate_group_name(name: &str) -> Result<(), InvalidField> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(InvalidField {
            field: "name",
            problem: "must be 1 to 64 letters, digits, . _ or -",
        });
    }
    Ok(())
}

/// At most 10 distinct pool names.
pub fn validate_group_pools(pools: &[PoolName]) -> Result<(), InvalidField> {
    let distinct = pools
        .iter()
        .enumerate()
        .all(|(index, pool)| !pools[..index].contains(pool));
    if pools.len() > MAX_POOLS_PER_GROUP || !distinct {
        return Err(InvalidField {
            field: "pools",
            problem: "must be at most 10 distinct pool names",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pools_are_checked() {
        assert!(validate_group_name("premium-tier").is_ok());
        assert!(validate_group_name("").is_err());
        assert!(validate_group_name("with space").is_err());
        let pools = |names: &[&str]| -> Vec<PoolName> {
            names
                .iter()
                .map(|name| PoolName::parse(name).expect("a valid pool name"))
                .collect()
        };
        assert!(validate_group_pools(&pools(&["a", "b"])).is_ok());
        assert!(validate_group_pools(&pools(&["a", "a"])).is_err());
    }
}
