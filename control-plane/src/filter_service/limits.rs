//! `CheckLimits` and `SyncLimits`: the filter's global limits, answered from the counters.

use std::sync::Arc;

use tonic::Status;

use super::limit_requests as validate;
use crate::limits::counters::{CounterError, Counters};
use crate::proto::v1::{
    BucketState, CheckLimitsRequest, CheckLimitsResponse, SyncLimitsRequest, SyncLimitsResponse,
};

/// Answers the filter's limit calls.
#[derive(Clone)]
pub struct LimitService {
    counters: Arc<dyn Counters>,
}

impl LimitService {
    pub fn new(counters: Arc<dyn Counters>) -> Self {
        Self { counters }
    }

    pub async fn check(&self, request: CheckLimitsRequest) -> Result<CheckLimitsResponse, Status> {
        let draws = validate::draws(&request.buckets).inspect_err(|_| count_check("invalid"))?;
        let checked = self
            .counters
            .check(&draws)
            .await
            .map_err(|error| unavailable("check", error))
            .inspect_err(|_| count_check("error"))?;
        count_check(if checked.admitted {
            "admitted"
        } else {
            "limited"
        });
        Ok(CheckLimitsResponse {
            admitted: checked.admitted,
            buckets: states(checked.backlog_ms),
        })
    }

    pub async fn sync(&self, request: SyncLimitsRequest) -> Result<SyncLimitsResponse, Status> {
        let draws = validate::node_id(&request.node_id)
            .and_then(|()| validate::draws(&request.buckets))
            .inspect_err(|_| count_sync("invalid"))?;
        let charged = self
            .counters
            .charge(&request.node_id, &draws)
            .await
            .map_err(|error| unavailable("sync", error))
            .inspect_err(|_| count_sync("error"))?;
        count_sync("ok");
        Ok(SyncLimitsResponse {
            buckets: states(charged.backlog_ms),
            envoys: charged.envoys.max(1),
        })
    }
}

fn states(backlog_ms: Vec<u64>) -> Vec<BucketState> {
    backlog_ms
        .into_iter()
        .map(|ms| BucketState {
            backlog_ms: i64::try_from(ms).unwrap_or(i64::MAX),
        })
        .collect()
}

fn unavailable(call: &'static str, error: CounterError) -> Status {
    tracing::warn!(%error, call, "rate-limit counters failed");
    Status::unavailable("the rate-limit counters are unavailable")
}

fn count_check(result: &'static str) {
    metrics::counter!("tollgate_limit_checks_total", "result" => result).increment(1);
}

fn count_sync(result: &'static str) {
    metrics::counter!("tollgate_limit_syncs_total", "result" => result).increment(1);
}
