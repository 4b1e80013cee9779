//! [`TenantStore`] on SQL: the `tenants` table. A tenant's settings concern the cached state of
//! each of its users (they inherit its limits and quotas); a deleted tenant stays as a row
//! marked deleted, so that what names it keeps naming something.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::columns::{
    conflict_or, format_time, from_json, named, required_time, to_i64, to_json, to_u64, touched,
    AnyQuery,
};
use super::groups::remove_group;
use super::keys::revoke_keys_of;
use super::sessions::end_sessions_of;
use super::sql::Write;
use super::{Page, SqlStore, StoreError, UsageStore, Written};
use crate::accounts::tenant::Tenant;
use crate::accounts::user::{Role, UserStatus};
use crate::changes::audit::AuditEntry;
use crate::changes::feed::Stale;
use crate::domain::ids::{GroupId, UserId};
use crate::domain::Timestamp;
use crate::identity::session::LoginMethod;

const TENANT_COLUMNS: &str = "id, name, default_role, default_group_id, mfa_required, \
     login_methods, rate_limits, quotas, created_at, updated_at";

/// What a tenant holds and used, for its statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TenantStatistics {
    /// Users not deleted.
    pub users: u64,
    pub active_users: u64,
    /// Keys of those users that are not revoked.
    pub keys: u64,
    /// Requests and bytes of periods that started in the reported one.
    pub requests: u64,
    pub bytes: u64,
}

/// Tenants, and what their deletion takes with it.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// `Conflict("tenant id")` when a tenant, deleted or not, has its id.
    async fn create_tenant(&self, tenant: &Tenant, audit: &AuditEntry) -> Written;
    /// Changes a tenant's settings; the cached state of each of its users becomes stale.
    async fn update_tenant(&self, tenant: &Tenant, audit: &AuditEntry) -> Written;
    /// Marks the tenant deleted and removes its groups. `Conflict("tenant users")` when users
    /// of it are not deleted, unless `cascade`: then they are deleted too, as a user's
    /// deletion does (keys revoked, sessions ended, `tokens_expire_at` as for
    /// [`end_sessions_of`]).
    async fn delete_tenant(
        &self,
        id: &str,
        cascade: bool,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written;
    /// A tenant not deleted.
    async fn tenant(&self, id: &str) -> Result<Tenant, StoreError>;
    /// Tenants not deleted, by id; only `only` when given.
    async fn tenants(
        &self,
        only: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Tenant>, StoreError>;
    /// What the tenant holds now, and what its users used in the tenant's period that
    /// starts at `period_start`.
    async fn tenant_statistics(
        &self,
        id: &str,
        period_start: Timestamp,
    ) -> Result<TenantStatistics, StoreError>;
}

#[async_trait]
impl TenantStore for SqlStore {
    async fn create_tenant(&self, tenant: &Tenant, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            let insert = sqlx::query(
                "INSERT INTO tenants (id, created_at, name, default_role, default_group_id, \
                 mfa_required, login_methods, rate_limits, quotas, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&tenant.id)
            .bind(format_time(tenant.created_at));
            bind_changeable(insert, tenant)?
                .execute(write.rows())
                .await
                .map_err(|e| conflict_or(e, "tenant id"))?;
            Ok(())
        })
        .await
    }

    async fn update_tenant(&self, tenant: &Tenant, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            let update = sqlx::query(
                "UPDATE tenants SET name = $2, default_role = $3, default_group_id = $4, \
                 mfa_required = $5, login_methods = $6, rate_limits = $7, quotas = $8, \
                 updated_at = $9 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(&tenant.id);
            touched(
                &bind_changeable(update, tenant)?
                    .execute(write.rows())
                    .await?,
            )?;
            for user in user_ids(write, &tenant.id, "").await? {
                write.stale(&Stale::User(user), tenant.updated_at).await?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_tenant(
        &self,
        id: &str,
        cascade: bool,
        tokens_expire_at: i64,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            let at = audit.at;
            let marked = sqlx::query(
                "UPDATE tenants SET deleted_at = $2, updated_at = $2 \
                 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(id)
            .bind(format_time(at))
            .execute(write.rows())
            .await?;
            touched(&marked)?;
            let remaining = user_ids(write, id, "AND status <> 'deleted'").await?;
            if !remaining.is_empty() && !cascade {
                return Err(StoreError::Conflict("tenant users"));
            }
            for user in remaining {
                sqlx::query("UPDATE users SET status = $2, updated_at = $3 WHERE id = $1")
                    .bind(user.as_str())
                    .bind(UserStatus::Deleted.as_str())
                    .bind(format_time(at))
                    .execute(write.rows())
                    .await?;
                write.stale(&Stale::User(user.clone()), at).await?;
                end_sessions_of(write, &user, None, at, tokens_expire_at).await?;
                revoke_keys_of(write, &user, at).await?;
            }
            let groups: Vec<String> =
                sqlx::query_scalar("SELECT id FROM groups WHERE tenant_id = $1")
                    .bind(id)
                    .fetch_all(write.rows())
                    .await?;
            for group in groups {
                remove_group(write, &GroupId::from_string(group), at).await?;
            }
            Ok(())
        })
        .await
    }

    async fn tenant(&self, id: &str) -> Result<Tenant, StoreError> {
        let sql =
            format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1 AND deleted_at IS NULL");
        tenant_from_row(&self.select_one(&sql, id).await?)
    }

    async fn tenants(
        &self,
        only: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Page<Tenant>, StoreError> {
        let filter = "deleted_at IS NULL AND ($1 IS NULL OR id = $1)";
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM tenants WHERE {filter}"))
                .bind(only)
                .fetch_one(&self.reads)
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE {filter} ORDER BY id LIMIT $2 OFFSET $3"
        ))
        .bind(only)
        .bind(to_i64(limit))
        .bind(to_i64(offset))
        .fetch_all(&self.reads)
        .await?;
        Ok(Page {
            items: rows.iter().map(tenant_from_row).collect::<Result<_, _>>()?,
            total: to_u64(total),
        })
    }

    async fn tenant_statistics(
        &self,
        id: &str,
        period_start: Timestamp,
    ) -> Result<TenantStatistics, StoreError> {
        let people = sqlx::query(
            "SELECT COUNT(*) AS users, CAST(COALESCE(SUM(CASE WHEN status = 'active' \
             THEN 1 ELSE 0 END), 0) AS BIGINT) AS active_users \
             FROM users WHERE tenant_id = $1 AND status <> 'deleted'",
        )
        .bind(id)
        .fetch_one(&self.reads)
        .await?;
        let keys = self
            .count(
                "SELECT COUNT(*) FROM api_keys k JOIN users u ON u.id = k.user_id \
                 WHERE u.tenant_id = $1 AND u.status <> 'deleted' AND k.status <> 'revoked'",
                &[id],
            )
            .await?;
        let used = self.pool_usage(id, period_start).await?;
        Ok(TenantStatistics {
            users: to_u64(people.try_get("users")?),
            active_users: to_u64(people.try_get("active_users")?),
            keys,
            requests: used.requests,
            bytes: used.bytes,
        })
    }
}

/// The ids of the tenant's users matching `condition` (SQL after the tenant's own).
pub(super) async fn user_ids(
    write: &mut Write,
    tenant: &str,
    condition: &str,
) -> Result<Vec<UserId>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT id FROM users WHERE tenant_id = $1 {condition} ORDER BY id"
    ))
    .bind(tenant)
    .fetch_all(write.rows())
    .await?;
    Ok(ids.into_iter().map(UserId::from_string).collect())
}

/// Binds what a change may set of a tenant (name to updated_at, in the order of the update).
fn bind_changeable<'q>(
    query: AnyQuery<'q>,
    tenant: &'q Tenant,
) -> Result<AnyQuery<'q>, StoreError> {
    let methods: Vec<&str> = tenant.login_methods.iter().map(|m| m.as_str()).collect();
    Ok(query
        .bind(&tenant.name)
        .bind(tenant.default_role.as_str())
        .bind(tenant.default_group_id.as_ref().map(GroupId::as_str))
        .bind(i64::from(tenant.mfa_required))
        .bind(to_json(&methods)?)
        .bind(to_json(&tenant.rate_limits)?)
        .bind(to_json(&tenant.quotas)?)
        .bind(format_time(tenant.updated_at)))
}

fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    let methods: Vec<String> = from_json(row, "login_methods")?;
    let login_methods = methods
        .iter()
        .map(|name| {
            LoginMethod::parse(name)
                .ok_or_else(|| StoreError::Corrupt(format!("login_methods {name:?}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        default_role: named(row, "default_role", Role::parse)?,
        default_group_id: row
            .try_get::<Option<String>, _>("default_group_id")?
            .map(GroupId::from_string),
        mfa_required: row.try_get::<i64, _>("mfa_required")? != 0,
        login_methods,
        rate_limits: from_json(row, "rate_limits")?,
        quotas: from_json(row, "quotas")?,
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}
