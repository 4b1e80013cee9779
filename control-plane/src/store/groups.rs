//! [`GroupStore`] on SQL: the `groups` and `group_members` tables. A group's settings and
//! routes concern its members' cached state and the routing; its membership, the member's.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::columns::{
    conflict_or, format_time, from_json, required_time, small_number, to_json, touched, AnyQuery,
};
use super::sql::Write;
use super::{SqlStore, StoreError, Written};
use crate::accounts::group::Group;
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Stale;
use crate::changes::routing::Rerouted;
use crate::domain::ids::{GroupId, UserId};
use crate::domain::Timestamp;

const GROUP_COLUMNS: &str =
    "g.id, g.name, g.tenant_id, g.priority, g.pools, g.rate_limits, g.quotas, g.created_at, \
     g.updated_at";

/// Groups and their members.
#[async_trait]
pub trait GroupStore: Send + Sync {
    async fn create_group(&self, group: &Group, audit: &AuditEntry) -> Written;
    /// Changes a group; its members' cached state becomes stale.
    async fn update_group(&self, group: &Group, audit: &AuditEntry) -> Written;
    /// Deletes a group and its memberships, and stops it being a tenant's default group; its
    /// members' cached state becomes stale.
    async fn delete_group(&self, id: &GroupId, audit: &AuditEntry) -> Written;
    async fn group(&self, id: &GroupId) -> Result<Group, StoreError>;
    /// Every group, highest priority first.
    async fn groups(&self) -> Result<Vec<Group>, StoreError>;
    async fn add_member(&self, group: &GroupId, user: &UserId, audit: &AuditEntry) -> Written;
    async fn remove_member(&self, group: &GroupId, user: &UserId, audit: &AuditEntry) -> Written;
    async fn members(&self, group: &GroupId) -> Result<Vec<UserId>, StoreError>;
    /// The user's groups, highest priority first.
    async fn groups_of(&self, user: &UserId) -> Result<Vec<Group>, StoreError>;
}

#[async_trait]
impl GroupStore for SqlStore {
    async fn create_group(&self, group: &Group, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            let insert = sqlx::query(
                "INSERT INTO groups (id, created_at, tenant_id, name, priority, pools, \
                 updated_at, rate_limits, quotas) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(group.id.as_str())
            .bind(format_time(group.created_at))
            .bind(group.tenant_id.as_deref());
            bind_changeable(insert, group)?
                .execute(write.rows())
                .await
                .map_err(|e| conflict_or(e, "group name"))?;
            write
                .reroutes(&Rerouted::Group(group.id.clone()), audit.at)
                .await
        })
        .await
    }

    async fn update_group(&self, group: &Group, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            let update = sqlx::query(
                "UPDATE groups SET name = $2, priority = $3, pools = $4, updated_at = $5, \
                 rate_limits = $6, quotas = $7 WHERE id = $1",
            )
            .bind(group.id.as_str());
            let updated = bind_changeable(update, group)?
                .execute(write.rows())
                .await
                .map_err(|e| conflict_or(e, "group name"))?;
            touched(&updated)?;
            stale_members(write, &group.id, group.updated_at).await
        })
        .await
    }

    async fn delete_group(&self, id: &GroupId, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| remove_group(write, id, audit.at).await)
            .await
    }

    async fn group(&self, id: &GroupId) -> Result<Group, StoreError> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM groups g WHERE g.id = $1");
        group_from_row(&self.select_one(&sql, id.as_str()).await?)
    }

    async fn groups(&self) -> Result<Vec<Group>, StoreError> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM groups g ORDER BY g.priority DESC, g.id");
        self.select_all(&sql, None, group_from_row).await
    }

    async fn add_member(&self, group: &GroupId, user: &UserId, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            sqlx::query(
                "INSERT INTO group_members (group_id, user_id, added_at) VALUES ($1, $2, $3)",
            )
            .bind(group.as_str())
            .bind(user.as_str())
            .bind(format_time(audit.at))
            .execute(write.rows())
            .await
            .map_err(|e| conflict_or(e, "membership"))?;
            write.stale(&Stale::User(user.clone()), audit.at).await
        })
        .await
    }

    async fn remove_member(&self, group: &GroupId, user: &UserId, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            let deleted =
                sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
                    .bind(group.as_str())
                    .bind(user.as_str())
                    .execute(write.rows())
                    .await?;
            touched(&deleted)?;
            write.stale(&Stale::User(user.clone()), audit.at).await
        })
        .await
    }

    async fn members(&self, group: &GroupId) -> Result<Vec<UserId>, StoreError> {
        Ok(member_ids(&self.reads, group, "ORDER BY added_at, user_id")
            .await?
            .into_iter()
            .map(UserId::from_string)
            .collect())
    }

    async fn groups_of(&self, user: &UserId) -> Result<Vec<Group>, StoreError> {
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM groups g JOIN group_members m ON m.group_id = g.id \
             WHERE m.user_id = $1 ORDER BY g.priority DESC, g.id"
        );
        self.select_all(&sql, Some(user.as_str()), group_from_row)
            .await
    }
}

/// Deletes a group and its memberships within `write`, and stops it being a tenant's default
/// group; its members' cached state becomes stale. `NotFound` when there is no such group.
pub(super) async fn remove_group(write: &mut Write, id: &GroupId, at: Timestamp) -> Written {
    stale_members(write, id, at).await?;
    sqlx::query("UPDATE tenants SET default_group_id = NULL WHERE default_group_id = $1")
        .bind(id.as_str())
        .execute(write.rows())
        .await?;
    sqlx::query("DELETE FROM group_members WHERE group_id = $1")
        .bind(id.as_str())
        .execute(write.rows())
        .await?;
    let deleted = sqlx::query("DELETE FROM groups WHERE id = $1")
        .bind(id.as_str())
        .execute(write.rows())
        .await?;
    touched(&deleted)
}

/// The group's routes change, and every member's cached state becomes stale.
async fn stale_members(write: &mut Write, group: &GroupId, at: Timestamp) -> Written {
    write.reroutes(&Rerouted::Group(group.clone()), at).await?;
    for member in member_ids(write.rows(), group, "").await? {
        write
            .stale(&Stale::User(UserId::from_string(member)), at)
            .await?;
    }
    Ok(())
}

async fn member_ids<'c>(
    connection: impl sqlx::Executor<'c, Database = sqlx::Any>,
    group: &GroupId,
    order: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(&format!(
        "SELECT user_id FROM group_members WHERE group_id = $1 {order}"
    ))
    .bind(group.as_str())
    .fetch_all(connection)
    .await?)
}

/// Binds what a change may set of a group (name to quotas, in that order).
fn bind_changeable<'q>(query: AnyQuery<'q>, group: &'q Group) -> Result<AnyQuery<'q>, StoreError> {
    Ok(query
        .bind(&group.name)
        .bind(i64::from(group.priority))
        .bind(to_json(&group.pools)?)
        .bind(format_time(group.updated_at))
        .bind(to_json(&group.rate_limits)?)
        .bind(to_json(&group.quotas)?))
}

fn group_from_row(row: &AnyRow) -> Result<Group, StoreError> {
    Ok(Group {
        id: GroupId::from_string(row.try_get("id")?),
        name: row.try_get("name")?,
        tenant_id: row.try_get("tenant_id")?,
        priority: small_number(row, "priority")?,
        pools: from_json(row, "pools")?,
        rate_limits: from_json(row, "rate_limits")?,
        quotas: from_json(row, "quotas")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}
