//! [`BackendStore`] on SQL: the `backends` table with each backend's health, and the `pools`
//! table of health-check settings. Every change here concerns the routing.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::columns::{
    format_time, named, optional_time, required_time, small_number, touched, AnyQuery,
};
use super::{SqlStore, StoreError, Written};
use crate::changes::audit::AuditEntry;
use crate::changes::routing::Rerouted;
use crate::domain::ids::BackendId;
use crate::routing::backend::{Backend, BackendHealth, BackendUrl, HealthStatus, Weight};
use crate::routing::pool::{HealthCheckSettings, PoolName};
use crate::routing::upstream_tls::TrustedCa;

const BACKEND_COLUMNS: &str = "id, created_at, url, weight, health_check_path, pool, enabled, \
     tls_sni, tls_ca, tls_insecure, updated_at, health_status, consecutive_failures, consecutive_successes, \
     last_checked_at, last_latency_ms, last_error";

/// Upstream backends with their health, and each pool's health-check settings.
#[async_trait]
pub trait BackendStore: Send + Sync {
    async fn create_backend(&self, backend: &Backend, audit: &AuditEntry) -> Written;
    /// Changes a backend; given the default health (a new URL), its recorded health is reset.
    async fn update_backend(&self, backend: &Backend, audit: &AuditEntry) -> Written;
    async fn delete_backend(&self, id: &BackendId, audit: &AuditEntry) -> Written;
    async fn backend(&self, id: &BackendId) -> Result<Backend, StoreError>;
    /// Every backend, by pool then creation.
    async fn backends(&self) -> Result<Vec<Backend>, StoreError>;
    /// Records a health check's outcome; a status change comes with its audit entry.
    async fn record_health(
        &self,
        id: &BackendId,
        health: &BackendHealth,
        audit: Option<&AuditEntry>,
    ) -> Written;
    /// The pools with health-check settings of their own.
    async fn pool_settings(&self) -> Result<Vec<(String, HealthCheckSettings)>, StoreError>;
    async fn set_pool_settings(
        &self,
        pool: &str,
        settings: &HealthCheckSettings,
        audit: &AuditEntry,
    ) -> Written;
}

#[async_trait]
impl BackendStore for SqlStore {
    async fn create_backend(&self, backend: &Backend, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            let sql = format!(
                "INSERT INTO backends ({BACKEND_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17)"
            );
            let insert = sqlx::query(&sql)
                .bind(backend.id.as_str())
                .bind(format_time(backend.created_at));
            bind_health(bind_changeable(insert, backend), &backend.health)
                .execute(write.rows())
                .await?;
            write.reroutes(&Rerouted::Backend(backend.id.clone())).await
        })
        .await
    }

    async fn update_backend(&self, backend: &Backend, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            let update = sqlx::query(
                "UPDATE backends SET url = $2, weight = $3, health_check_path = $4, pool = $5, \
                 enabled = $6, tls_sni = $7, tls_ca = $8, tls_insecure = $9, updated_at = $10 \
                 WHERE id = $1",
            )
            .bind(backend.id.as_str());
            let updated = bind_changeable(update, backend)
                .execute(write.rows())
                .await?;
            touched(&updated)?;
            if backend.health == BackendHealth::default() {
                set_health(write.rows(), &backend.id, &backend.health).await?;
            }
            write.reroutes(&Rerouted::Backend(backend.id.clone())).await
        })
        .await
    }

    async fn delete_backend(&self, id: &BackendId, audit: &AuditEntry) -> Written {
        self.write(audit, async |write| {
            let deleted = sqlx::query("DELETE FROM backends WHERE id = $1")
                .bind(id.as_str())
                .execute(write.rows())
                .await?;
            touched(&deleted)?;
            write.reroutes(&Rerouted::Backend(id.clone())).await
        })
        .await
    }

    async fn backend(&self, id: &BackendId) -> Result<Backend, StoreError> {
        let sql = format!("SELECT {BACKEND_COLUMNS} FROM backends WHERE id = $1");
        backend_from_row(&self.select_one(&sql, id.as_str()).await?)
    }

    async fn backends(&self) -> Result<Vec<Backend>, StoreError> {
        let sql = format!("SELECT {BACKEND_COLUMNS} FROM backends ORDER BY pool, created_at, id");
        self.select_all(&sql, None, backend_from_row).await
    }

    async fn record_health(
        &self,
        id: &BackendId,
        health: &BackendHealth,
        audit: Option<&AuditEntry>,
    ) -> Written {
        self.write(audit, async |write| {
            set_health(write.rows(), id, health).await?;
            if audit.is_some() {
                write.reroutes(&Rerouted::Backend(id.clone())).await?;
            }
            Ok(())
        })
        .await
    }

    async fn pool_settings(&self) -> Result<Vec<(String, HealthCheckSettings)>, StoreError> {
        let sql = "SELECT name, check_interval_secs, check_timeout_secs, unhealthy_threshold, \
                   healthy_threshold FROM pools ORDER BY name";
        self.select_all(sql, None, |row| {
            Ok((
                row.try_get("name")?,
                HealthCheckSettings {
                    interval_secs: small_number(row, "check_interval_secs")?,
                    timeout_secs: small_number(row, "check_timeout_secs")?,
                    unhealthy_threshold: small_number(row, "unhealthy_threshold")?,
                    healthy_threshold: small_number(row, "healthy_threshold")?,
                },
            ))
        })
        .await
    }

    async fn set_pool_settings(
        &self,
        pool: &str,
        settings: &HealthCheckSettings,
        audit: &AuditEntry,
    ) -> Written {
        self.write(audit, async |write| {
            sqlx::query("DELETE FROM pools WHERE name = $1")
                .bind(pool)
                .execute(write.rows())
                .await?;
            sqlx::query(
                "INSERT INTO pools (name, check_interval_secs, check_timeout_secs, \
                 unhealthy_threshold, healthy_threshold, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(pool)
            .bind(i64::from(settings.interval_secs))
            .bind(i64::from(settings.timeout_secs))
            .bind(i64::from(settings.unhealthy_threshold))
            .bind(i64::from(settings.healthy_threshold))
            .bind(format_time(audit.at))
            .execute(write.rows())
            .await?;
            write.reroutes(&Rerouted::Pool(pool.to_string())).await
        })
        .await
    }
}

async fn set_health(tx: &mut AnyConnection, id: &BackendId, health: &BackendHealth) -> Written {
    let update = sqlx::query(
        "UPDATE backends SET health_status = $2, consecutive_failures = $3, \
         consecutive_successes = $4, last_checked_at = $5, last_latency_ms = $6, \
         last_error = $7 WHERE id = $1",
    )
    .bind(id.as_str());
    bind_health(update, health).execute(tx).await?;
    Ok(())
}

/// Binds what a change may set of a backend (url to updated_at, in that order).
fn bind_changeable<'q>(query: AnyQuery<'q>, backend: &'q Backend) -> AnyQuery<'q> {
    query
        .bind(backend.url.to_string())
        .bind(i64::from(backend.weight.get()))
        .bind(&backend.health_check_path)
        .bind(backend.pool.as_str())
        .bind(i64::from(backend.enabled))
        .bind(backend.tls_sni.as_deref())
        .bind(backend.tls_ca.as_ref().map(TrustedCa::as_str))
        .bind(i64::from(backend.tls_insecure))
        .bind(format_time(backend.updated_at))
}

/// Binds a backend's health (status to last error, in that order).
fn bind_health<'q>(query: AnyQuery<'q>, health: &'q BackendHealth) -> AnyQuery<'q> {
    query
        .bind(health.status.as_str())
        .bind(i64::from(health.consecutive_failures))
        .bind(i64::from(health.consecutive_successes))
        .bind(health.last_checked_at.map(format_time))
        .bind(
            health
                .last_latency_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        )
        .bind(health.last_error.as_deref())
}

fn backend_from_row(row: &AnyRow) -> Result<Backend, StoreError> {
    let url: String = row.try_get("url")?;
    Ok(Backend {
        id: BackendId::from_string(row.try_get("id")?),
        url: BackendUrl::parse(&url).map_err(|e| StoreError::Corrupt(format!("backend {e}")))?,
        weight: Weight::try_from(small_number::<u32>(row, "weight")?)
            .map_err(|e| StoreError::Corrupt(format!("backend {e}")))?,
        health_check_path: row.try_get("health_check_path")?,
        pool: PoolName::try_from(row.try_get::<String, _>("pool")?)
            .map_err(|e| StoreError::Corrupt(format!("backend {e}")))?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        tls_sni: row.try_get("tls_sni")?,
        tls_ca: row
            .try_get::<Option<String>, _>("tls_ca")?
            .map(TrustedCa::from_stored),
        tls_insecure: row.try_get::<i64, _>("tls_insecure")? != 0,
        health: BackendHealth {
            status: named(row, "health_status", HealthStatus::parse)?,
            consecutive_failures: small_number(row, "consecutive_failures")?,
            consecutive_successes: small_number(row, "consecutive_successes")?,
            last_checked_at: optional_time(row, "last_checked_at")?,
            last_latency_ms: row
                .try_get::<Option<i64>, _>("last_latency_ms")?
                .map(|ms| u64::try_from(ms).unwrap_or(0)),
            last_error: row.try_get("last_error")?,
        },
        created_at: required_time(row, "created_at")?,
        updated_at: required_time(row, "updated_at")?,
    })
}
