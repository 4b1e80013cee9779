//! `ReportUsage`: the filter's usage batches, applied once each against the users' quotas.
use tonic::Status;

use super::{unavailable, FilterApi};
use crate::limits::usage_reports::UsageTotals;
use crate::proto::v1;
use crate::store::{StoreError, UsageOutcome};

/// How long an applied usage batch id is remembered; retries come much sooner.
const USAGE_BATCH_RETENTION_SECS: i64 = 7 * 24 * 3600;
/// How often applied batch ids and expired allowances are pruned.
pub(super) const USAGE_BATCH_PRUNE_INTERVAL_SECS: i64 = 3600;
/// How long an expired allowance is kept, for inspection; it holds nothing meanwhile.
const EXPIRED_ALLOWANCE_RETENTION_SECS: i64 = 24 * 3600;

impl FilterApi {
    pub(super) async fn report_usage(
        &self,
        request: v1::ReportUsageRequest,
    ) -> Result<v1::ReportUsageResponse, Status> {
        let count = |result: &'static str| {
            metrics::counter!("tollgate_usage_reports_total", "result" => result).increment(1);
        };
        let totals = UsageTotals::from_request(request).map_err(|error| {
            count("invalid");
            Status::invalid_argument(error.to_string())
        })?;
        let now = crate::domain::now();
        let (entries, applied) = async {
            let entries = totals
                .entries(self.store.as_ref(), &self.quotas.get(), now)
                .await?;
            let applied = self
                .store
                .apply_usage(&totals.batch_id, &entries, &totals.settled_allowances, now)
                .await?;
            Ok::<_, StoreError>((entries, applied))
        }
        .await
        .map_err(|error| {
            count("error");
            unavailable(error)
        })?;
        match applied {
            UsageOutcome::AlreadyApplied => count("duplicate"),
            UsageOutcome::Applied(reached) => {
                count("applied");
                let unknown = totals.users.len() - entries.len();
                metrics::counter!("tollgate_usage_unknown_users_total")
                    .increment(u64::try_from(unknown).unwrap_or(u64::MAX));
                for entry in &entries {
                    let user_id = entry.user.as_str();
                    let user = self.user_labels.label(user_id);
                    metrics::counter!("tollgate_user_quota_usage_requests_total", "user" => user.clone())
                        .increment(entry.requests);
                    metrics::counter!("tollgate_user_quota_usage_bytes_total", "user" => user.clone())
                        .increment(entry.bytes);
                    if let Some(refused) = totals.refusals.get(user_id) {
                        metrics::counter!("tollgate_user_rate_limit_violations_total", "user" => user)
                            .increment(refused.rate_limited.values().sum());
                        self.refusals
                            .record(self.store.as_ref(), user_id, refused)
                            .await;
                    }
                }
                for (_, quota) in &reached {
                    metrics::counter!("tollgate_quota_exhausted_total", "quota" => quota.as_str())
                        .increment(1);
                }
            }
        }
        self.prune_usage_records().await;
        Ok(v1::ReportUsageResponse {})
    }

    /// Forgets old applied batch ids and long expired allowances, at most once per
    /// interval; a failure waits for the next turn.
    async fn prune_usage_records(&self) {
        let now = crate::domain::now();
        if !self.batch_pruning.take_turn(now) {
            return;
        }
        let before = now - chrono::Duration::seconds(USAGE_BATCH_RETENTION_SECS);
        if let Err(error) = self.store.prune_usage_batches(before).await {
            tracing::warn!(%error, "cannot prune applied usage batches");
        }
        let before = now - chrono::Duration::seconds(EXPIRED_ALLOWANCE_RETENTION_SECS);
        if let Err(error) = self.store.prune_allowances(before).await {
            tracing::warn!(%error, "cannot prune expired allowances");
        }
    }
}
