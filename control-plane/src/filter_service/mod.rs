//! The gRPC service the Envoy filter calls, one file per family of calls: principals on cache
//! misses, the change feed that keeps every Envoy's caches fresh, global rate limits, quota
//! allowances, and usage.
//!
//! Calls `accounts`, `identity`, `limits`, `changes` and `store`; tonic is only the transport.

mod allowances;
mod change_feed;
pub mod limit_requests;
pub mod limit_settings;
pub mod limits;
mod open_watches;
mod principals;
mod usage;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::accounts::api_key::KeyHasher;
use crate::changes::signal::ChangeSignal;
use crate::config::{FilterConfig, LimitsConfig};
use crate::domain::at_most_every::AtMostEvery;
use crate::domain::live::Live;
use crate::filter_service::limits::LimitService;
use crate::filter_service::open_watches::OpenWatches;
use crate::identity::tokens::SessionTokens;
use crate::limits::quota::QuotaPolicy;
use crate::limits::refusal_log::RefusalLog;
use crate::limits::user_labels::UserLabels;
use crate::proto::v1::filter_service_server::FilterService;
use crate::proto::v1::{
    self, LookupKeyRequest, LookupKeyResponse, LookupUserRequest, LookupUserResponse,
    WatchChangesRequest, WatchChangesResponse,
};
use crate::store::{Store, StoreError};

/// Answers the filter from the store.
pub struct FilterApi {
    store: Arc<dyn Store>,
    hasher: KeyHasher,
    cache: FilterConfig,
    tokens: SessionTokens,
    changes: ChangeSignal,
    limit_counters: LimitService,
    limits: Live<LimitsConfig>,
    quotas: Live<QuotaPolicy>,
    /// Turns at pruning applied usage batch ids and expired allowances.
    batch_pruning: AtMostEvery,
    refusals: RefusalLog,
    open_watches: OpenWatches,
    user_labels: UserLabels,
}

/// The deployment's settings the filter service answers with.
pub struct DataPlanePolicy {
    pub cache: FilterConfig,
    /// Replaced by a configuration reload, as is `quotas`.
    pub limits: Live<LimitsConfig>,
    pub quotas: Live<QuotaPolicy>,
    /// The `user` label of per-user metrics.
    pub user_labels: UserLabels,
}

impl FilterApi {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: KeyHasher,
        tokens: SessionTokens,
        changes: ChangeSignal,
        limit_counters: LimitService,
        policy: DataPlanePolicy,
    ) -> Self {
        Self {
            store,
            hasher,
            cache: policy.cache,
            tokens,
            changes,
            limit_counters,
            refusals: RefusalLog::new(policy.limits.get().refusal_audits_per_minute),
            limits: policy.limits,
            quotas: policy.quotas,
            batch_pruning: AtMostEvery::new(usage::USAGE_BATCH_PRUNE_INTERVAL_SECS),
            open_watches: OpenWatches::default(),
            user_labels: policy.user_labels,
        }
    }
}

fn unavailable(error: StoreError) -> Status {
    tracing::error!(%error, "filter service storage failed");
    Status::unavailable("the database is unavailable")
}

#[tonic::async_trait]
impl FilterService for FilterApi {
    async fn lookup_key(
        &self,
        request: Request<LookupKeyRequest>,
    ) -> Result<Response<LookupKeyResponse>, Status> {
        self.lookup_key(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn lookup_user(
        &self,
        request: Request<LookupUserRequest>,
    ) -> Result<Response<LookupUserResponse>, Status> {
        self.lookup_user(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn watch_changes(
        &self,
        request: Request<WatchChangesRequest>,
    ) -> Result<Response<WatchChangesResponse>, Status> {
        self.watch_changes(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn check_limits(
        &self,
        request: Request<v1::CheckLimitsRequest>,
    ) -> Result<Response<v1::CheckLimitsResponse>, Status> {
        self.limit_counters
            .check(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn sync_limits(
        &self,
        request: Request<v1::SyncLimitsRequest>,
    ) -> Result<Response<v1::SyncLimitsResponse>, Status> {
        self.limit_counters
            .sync(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn report_usage(
        &self,
        request: Request<v1::ReportUsageRequest>,
    ) -> Result<Response<v1::ReportUsageResponse>, Status> {
        self.report_usage(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn acquire_allowances(
        &self,
        request: Request<v1::AcquireAllowancesRequest>,
    ) -> Result<Response<v1::AcquireAllowancesResponse>, Status> {
        self.acquire_allowances(request.into_inner())
            .await
            .map(Response::new)
    }
}
