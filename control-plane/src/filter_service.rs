//! The gRPC service the Envoy filter calls: key and user lookups on cache misses, and
//! the change feed that keeps every Envoy's caches fresh.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::changes::ChangeSignal;
use crate::config::{FilterConfig, LimitsConfig};
use crate::counters::service::LimitService;
use crate::domain::api_key::{KeyDigest, KeyHasher, KeyStatus};
use crate::domain::change::{Change, Stale};
use crate::domain::group::Group;
use crate::domain::ids::UserId;
use crate::domain::quota::QuotaPolicy;
use crate::domain::user::{User, UserStatus};
use crate::filter_limits::{key_limits, limit_settings, user_limits};
use crate::identity::signing::{PublicJwk, SigningKeyRecord};
use crate::identity::tokens::SessionTokens;
use crate::proto::v1::filter_service_server::FilterService;
use crate::proto::v1::{
    self, invalidation, LookupKeyRequest, LookupKeyResponse, LookupUserRequest, LookupUserResponse,
    WatchChangesRequest, WatchChangesResponse,
};
use crate::quota_state::QuotaState;
use crate::refusal_log::RefusalLog;
use crate::store::{KeyOwner, Store, StoreError, UsageOutcome};
use crate::usage_reports::UsageTotals;

/// The longest a watch may be held open.
const MAX_WATCH: Duration = Duration::from_secs(30);
/// How often a held watch looks for changes other replicas wrote.
const STORE_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The most changes one answer carries; the watcher asks again for the rest.
const MAX_CHANGES_PER_ANSWER: u64 = 1000;
/// How long an applied usage batch id is remembered; retries come much sooner.
const USAGE_BATCH_RETENTION_SECS: i64 = 7 * 24 * 3600;
/// How often applied batch ids are pruned.
const USAGE_BATCH_PRUNE_INTERVAL_SECS: i64 = 3600;

/// Answers the filter from the store.
pub struct FilterApi {
    store: Arc<dyn Store>,
    hasher: KeyHasher,
    cache: FilterConfig,
    tokens: SessionTokens,
    changes: ChangeSignal,
    limit_counters: LimitService,
    limits: LimitsConfig,
    limit_settings: v1::LimitSettings,
    quotas: QuotaPolicy,
    /// Unix seconds of the last pruning of applied usage batch ids.
    batches_pruned_at: AtomicI64,
    refusals: RefusalLog,
}

/// What a principal takes from the user's groups, settings and usage.
struct UserContext {
    route_group: String,
    rate_limits: Vec<v1::RateLimit>,
    exhausted_quotas: Vec<v1::ExhaustedQuota>,
}

/// The deployment's settings the filter service answers with.
pub struct DataPlanePolicy {
    pub cache: FilterConfig,
    pub limits: LimitsConfig,
    pub quotas: QuotaPolicy,
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
            limit_settings: limit_settings(&policy.limits),
            limits: policy.limits,
            quotas: policy.quotas,
            batches_pruned_at: AtomicI64::new(0),
            refusals: RefusalLog::default(),
        }
    }

    async fn user_context(&self, user: &User) -> Result<UserContext, StoreError> {
        let groups = self.store.groups_of(&user.id).await?;
        let quota = QuotaState::load(
            self.store.as_ref(),
            &self.quotas,
            user,
            &groups,
            crate::domain::now(),
        )
        .await?;
        Ok(UserContext {
            route_group: route_group(&groups),
            rate_limits: user_limits(&self.limits, user, &groups),
            exhausted_quotas: quota
                .exhausted()
                .into_iter()
                .map(|(quota, resets_at)| v1::ExhaustedQuota {
                    name: quota.as_str().to_string(),
                    resets_at: resets_at.map_or(0, |at| at.timestamp()),
                })
                .collect(),
        })
    }

    /// Forgets old applied batch ids, at most once per interval; a failure waits for the
    /// next report.
    async fn prune_usage_batches(&self) {
        let now = crate::domain::now();
        let last = self.batches_pruned_at.load(Ordering::Relaxed);
        if now.timestamp() - last < USAGE_BATCH_PRUNE_INTERVAL_SECS
            || self
                .batches_pruned_at
                .compare_exchange(last, now.timestamp(), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let before = now - chrono::Duration::seconds(USAGE_BATCH_RETENTION_SECS);
        if let Err(error) = self.store.prune_usage_batches(before).await {
            tracing::warn!(%error, "cannot prune applied usage batches");
        }
    }

    fn ttl(&self, found: bool) -> u32 {
        if found {
            self.cache.positive_cache_ttl_secs
        } else {
            self.cache.negative_cache_ttl_secs
        }
    }

    /// The answer for everything after the request's cursor, or `None` when nothing changed.
    async fn changes_after(
        &self,
        request: &WatchChangesRequest,
    ) -> Result<Option<WatchChangesResponse>, StoreError> {
        let since = request.since;
        let latest = self.store.latest_change().await?;
        let (published, version) = self.signing_keys();
        let history_lost = latest < since;
        let fresh_start = request.initial || history_lost;
        if !fresh_start && latest == since && version == request.signing_keys_version {
            return Ok(None);
        }
        let invalidations = if fresh_start {
            // Nothing of the watcher's cache can be trusted against this feed; revoked
            // sessions must still be refused wherever their tokens turn up.
            let now = crate::domain::now().timestamp();
            self.store.live_session_revocations(now).await?
        } else {
            self.store
                .changes_since(since, MAX_CHANGES_PER_ANSWER)
                .await?
        };
        let cursor = if fresh_start {
            latest
        } else {
            invalidations.last().map_or(since, |change| change.cursor)
        };
        Ok(Some(WatchChangesResponse {
            cursor,
            reset: history_lost,
            invalidations: invalidations.iter().map(invalidation).collect(),
            signing_keys: published.iter().filter_map(signing_key).collect(),
            session_issuer: self.tokens.policy().issuer.clone(),
            session_audience: self.tokens.policy().audience.clone(),
            signing_keys_version: version,
            limits: Some(self.limit_settings.clone()),
        }))
    }

    fn signing_keys(&self) -> (Vec<SigningKeyRecord>, String) {
        let published = self.tokens.published();
        let mut hash = Sha256::new();
        for key in &published {
            hash.update(key.kid.as_bytes());
            hash.update([0]);
        }
        (published, hex::encode(&hash.finalize()[..8]))
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
        let started = Instant::now();
        let digest = KeyDigest::from_slice(&request.get_ref().key_digest)
            .ok_or_else(|| Status::invalid_argument("key_digest must be 32 bytes"))?;
        // Read the cursor first: a change recorded while we read applies after it.
        let cursor = self.store.latest_change().await.map_err(unavailable)?;
        let principal = match self.store.key_by_hash(&self.hasher.hash(&digest)).await {
            Ok(owner) => {
                let context = self.user_context(&owner.user).await.map_err(unavailable)?;
                let limits = key_limits(&self.limits, &owner.key);
                key_principal(owner, context, limits)
            }
            Err(StoreError::NotFound) => None,
            Err(error) => {
                metrics::counter!("tollgate_key_lookups_total", "result" => "error").increment(1);
                return Err(unavailable(error));
            }
        };
        let result = if principal.is_some() {
            "found"
        } else {
            "not_found"
        };
        metrics::counter!("tollgate_key_lookups_total", "result" => result).increment(1);
        metrics::histogram!("tollgate_key_lookup_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(Response::new(LookupKeyResponse {
            cache_ttl_seconds: self.ttl(principal.is_some()),
            principal,
            cursor,
        }))
    }

    async fn lookup_user(
        &self,
        request: Request<LookupUserRequest>,
    ) -> Result<Response<LookupUserResponse>, Status> {
        let cursor = self.store.latest_change().await.map_err(unavailable)?;
        let id = UserId::from_string(request.into_inner().user_id);
        let principal = match self.store.user(&id).await {
            Ok(user) => {
                let context = self.user_context(&user).await.map_err(unavailable)?;
                user_principal(user, context)
            }
            Err(StoreError::NotFound) => None,
            Err(error) => return Err(unavailable(error)),
        };
        let result = if principal.is_some() {
            "found"
        } else {
            "not_found"
        };
        metrics::counter!("tollgate_user_lookups_total", "result" => result).increment(1);
        Ok(Response::new(LookupUserResponse {
            cache_ttl_seconds: self.ttl(principal.is_some()),
            principal,
            cursor,
        }))
    }

    async fn watch_changes(
        &self,
        request: Request<WatchChangesRequest>,
    ) -> Result<Response<WatchChangesResponse>, Status> {
        let request = request.into_inner();
        let wait = Duration::from_millis(request.wait_ms.into()).min(MAX_WATCH);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register before looking, so an announcement in between is not missed.
            let announced = self.changes.announced();
            if let Some(answer) = self.changes_after(&request).await.map_err(unavailable)? {
                metrics::counter!("tollgate_change_feed_answers_total", "kind" => "changes")
                    .increment(1);
                return Ok(Response::new(answer));
            }
            let next_poll = tokio::time::Instant::now() + STORE_POLL_INTERVAL;
            if next_poll >= deadline {
                tokio::time::sleep_until(deadline).await;
                break;
            }
            tokio::select! {
                () = announced => {}
                () = tokio::time::sleep_until(next_poll) => {}
            }
        }
        metrics::counter!("tollgate_change_feed_answers_total", "kind" => "idle").increment(1);
        let (published, version) = self.signing_keys();
        Ok(Response::new(WatchChangesResponse {
            cursor: request.since,
            reset: false,
            invalidations: Vec::new(),
            signing_keys: published.iter().filter_map(signing_key).collect(),
            session_issuer: self.tokens.policy().issuer.clone(),
            session_audience: self.tokens.policy().audience.clone(),
            signing_keys_version: version,
            limits: Some(self.limit_settings.clone()),
        }))
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
        let count = |result: &'static str| {
            metrics::counter!("tollgate_usage_reports_total", "result" => result).increment(1);
        };
        let totals = UsageTotals::from_request(request.into_inner()).map_err(|error| {
            count("invalid");
            Status::invalid_argument(error.to_string())
        })?;
        let now = crate::domain::now();
        let applied = async {
            let entries = totals
                .entries(self.store.as_ref(), &self.quotas, now)
                .await?;
            self.store
                .apply_usage(&totals.batch_id, &entries, now)
                .await
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
                for (user_id, refused) in &totals.refusals {
                    self.refusals
                        .record(self.store.as_ref(), user_id, refused)
                        .await;
                }
                for (_, quota) in &reached {
                    metrics::counter!("tollgate_quota_exhausted_total", "quota" => quota.as_str())
                        .increment(1);
                }
                if !reached.is_empty() {
                    self.changes.announce();
                }
            }
        }
        self.prune_usage_batches().await;
        Ok(Response::new(v1::ReportUsageResponse {}))
    }
}

/// Revoked keys and deleted users resolve to nothing, exactly like unknown keys;
/// suspension and expiry are reported so the filter can answer precisely.
fn key_principal(
    owner: KeyOwner,
    context: UserContext,
    key_limits: Vec<v1::RateLimit>,
) -> Option<v1::Principal> {
    if owner.key.status != KeyStatus::Active {
        return None;
    }
    let mut principal = user_principal(owner.user, context)?;
    principal.rate_limits.extend(key_limits);
    principal.key_id = owner.key.id.to_string();
    principal.key_expires_at = owner.key.expires_at.map_or(0, |at| at.timestamp());
    principal.scopes = owner.key.scopes;
    Some(principal)
}

fn user_principal(user: User, context: UserContext) -> Option<v1::Principal> {
    let user_status = match user.status {
        UserStatus::Active => v1::UserStatus::Active,
        UserStatus::Suspended => v1::UserStatus::Suspended,
        UserStatus::Deleted => return None,
    };
    Some(v1::Principal {
        user_id: user.id.to_string(),
        key_id: String::new(),
        tenant_id: user.tenant_id.unwrap_or_default(),
        group_ids: user.groups,
        user_status: user_status.into(),
        key_expires_at: 0,
        ip_allowlist: user.ip_allowlist,
        scopes: Vec::new(),
        route_group: context.route_group,
        rate_limits: context.rate_limits,
        exhausted_quotas: context.exhausted_quotas,
    })
}

/// The highest-priority group of the user that has pools; empty for the default pool.
fn route_group(groups: &[Group]) -> String {
    groups
        .iter()
        .find(|group| !group.pools.is_empty())
        .map(|group| group.id.to_string())
        .unwrap_or_default()
}

fn invalidation(change: &Change) -> v1::Invalidation {
    let (subject, session_expires_at) = match &change.stale {
        Stale::User(id) => (invalidation::Subject::UserId(id.to_string()), 0),
        Stale::Key(id) => (invalidation::Subject::KeyId(id.to_string()), 0),
        Stale::Session {
            id,
            tokens_expire_at,
        } => (
            invalidation::Subject::SessionId(id.to_string()),
            *tokens_expire_at,
        ),
    };
    v1::Invalidation {
        cursor: change.cursor,
        subject: Some(subject),
        session_expires_at,
    }
}

fn signing_key(record: &SigningKeyRecord) -> Option<v1::SigningKey> {
    let (first, second) = record.public.decoded()?;
    let mut key = v1::SigningKey {
        kid: record.kid.clone(),
        alg: record.alg.as_str().to_string(),
        ..v1::SigningKey::default()
    };
    match record.public {
        PublicJwk::Okp { .. } => key.ed25519_public_key = first,
        PublicJwk::Rsa { .. } => {
            key.rsa_modulus = first;
            key.rsa_exponent = second;
        }
    }
    Some(key)
}
