//! `CheckLimits` and `SyncLimits`: the filter's global limits, answered from the counters.
//! Each bucket's limit is the control plane's own (see [`SubjectLimits`]); a bucket it knows
//! no limit for is left alone and answered as full.

use std::sync::Arc;

use tonic::Status;

use super::limit_requests::{self as validate, Asked};
use crate::limits::counters::{CounterError, Counters, Draw};
use crate::limits::subjects::SubjectLimits;
use crate::proto::v1::{
    BucketState, CheckLimitsRequest, CheckLimitsResponse, SyncLimitsRequest, SyncLimitsResponse,
};

/// Answers the filter's limit calls.
#[derive(Clone)]
pub struct LimitService {
    counters: Arc<dyn Counters>,
    subjects: Arc<SubjectLimits>,
    /// The most Envoys that share a `fast` limit (see `limits.max_envoys`).
    max_envoys: u32,
}

/// The buckets of one call the control plane knows, and where each stands in the call.
struct Known {
    draws: Vec<Draw>,
    /// Per bucket of the call: its index in `draws`, or `None` when it is not counted.
    positions: Vec<Option<usize>>,
}

impl Known {
    /// Each bucket's backlog in the order of the call; 0 (full) for the ones not counted.
    fn states(&self, backlog_ms: &[u64]) -> Vec<BucketState> {
        self.positions
            .iter()
            .map(|position| BucketState {
                backlog_ms: position
                    .and_then(|at| backlog_ms.get(at))
                    .map_or(0, |ms| i64::try_from(*ms).unwrap_or(i64::MAX)),
            })
            .collect()
    }
}

impl LimitService {
    pub fn new(counters: Arc<dyn Counters>, subjects: Arc<SubjectLimits>, max_envoys: u32) -> Self {
        Self {
            counters,
            subjects,
            max_envoys,
        }
    }

    pub async fn check(&self, request: CheckLimitsRequest) -> Result<CheckLimitsResponse, Status> {
        let asked = validate::buckets(&request.buckets).inspect_err(|_| count_check("invalid"))?;
        let known = self
            .known(asked)
            .await
            .inspect_err(|_| count_check("error"))?;
        let checked = self
            .counters
            .check(&known.draws)
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
            buckets: known.states(&checked.backlog_ms),
        })
    }

    pub async fn sync(&self, request: SyncLimitsRequest) -> Result<SyncLimitsResponse, Status> {
        let asked = validate::node_id(&request.node_id)
            .and_then(|()| validate::batch_id(&request.batch_id))
            .and_then(|()| validate::buckets(&request.buckets))
            .inspect_err(|_| count_sync("invalid"))?;
        let known = self
            .known(asked)
            .await
            .inspect_err(|_| count_sync("error"))?;
        let charged = self
            .counters
            .charge(
                &request.node_id,
                &request.batch_id,
                self.max_envoys,
                &known.draws,
            )
            .await
            .map_err(|error| unavailable("sync", error))
            .inspect_err(|_| count_sync("error"))?;
        count_sync(if charged.repeated { "repeated" } else { "ok" });
        if !charged.counted {
            metrics::counter!("tollgate_limit_syncs_uncounted_envoy_total").increment(1);
        }
        Ok(SyncLimitsResponse {
            buckets: known.states(&charged.backlog_ms),
            envoys: charged.envoys.max(1),
        })
    }

    /// The draws of the buckets whose limit the control plane knows, with its limits.
    async fn known(&self, asked: Vec<Asked>) -> Result<Known, Status> {
        let mut known = Known {
            draws: Vec::with_capacity(asked.len()),
            positions: Vec::with_capacity(asked.len()),
        };
        for bucket in asked {
            let limit = self
                .subjects
                .limit(&bucket.subject, bucket.window_seconds)
                .await
                .map_err(super::unavailable)?;
            let Some(limit) = limit else {
                metrics::counter!("tollgate_limit_buckets_unknown_total").increment(1);
                known.positions.push(None);
                continue;
            };
            known.positions.push(Some(known.draws.len()));
            known.draws.push(Draw {
                subject: bucket.name,
                limit,
                count: bucket.count,
            });
        }
        Ok(known)
    }
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
