//! The gRPC service the Envoy filter calls: key and user lookups on cache misses, and
//! the change feed that keeps every Envoy's caches fresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::changes::ChangeSignal;
use crate::config::FilterConfig;
use crate::counters::service::LimitService;
use crate::domain::api_key::{KeyDigest, KeyHasher, KeyStatus};
use crate::domain::change::{Change, Stale};
use crate::domain::ids::UserId;
use crate::domain::user::{User, UserStatus};
use crate::identity::signing::{PublicJwk, SigningKeyRecord};
use crate::identity::tokens::SessionTokens;
use crate::proto::v1::filter_service_server::FilterService;
use crate::proto::v1::{
    self, invalidation, LookupKeyRequest, LookupKeyResponse, LookupUserRequest, LookupUserResponse,
    WatchChangesRequest, WatchChangesResponse,
};
use crate::store::{KeyOwner, Store, StoreError};

/// The longest a watch may be held open.
const MAX_WATCH: Duration = Duration::from_secs(30);
/// How often a held watch looks for changes other replicas wrote.
const STORE_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The most changes one answer carries; the watcher asks again for the rest.
const MAX_CHANGES_PER_ANSWER: u64 = 1000;

/// Answers the filter from the store.
pub struct FilterApi {
    store: Arc<dyn Store>,
    hasher: KeyHasher,
    cache: FilterConfig,
    tokens: SessionTokens,
    changes: ChangeSignal,
    limits: LimitService,
}

impl FilterApi {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: KeyHasher,
        cache: FilterConfig,
        tokens: SessionTokens,
        changes: ChangeSignal,
        limits: LimitService,
    ) -> Self {
        Self {
            store,
            hasher,
            cache,
            tokens,
            changes,
            limits,
        }
    }

    /// The highest-priority group of the user that has pools; empty for the default pool.
    async fn route_group(&self, user: &UserId) -> Result<String, StoreError> {
        Ok(self
            .store
            .groups_of(user)
            .await?
            .into_iter()
            .find(|group| !group.pools.is_empty())
            .map(|group| group.id.to_string())
            .unwrap_or_default())
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
            limits: None,
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
                let route_group = self
                    .route_group(&owner.user.id)
                    .await
                    .map_err(unavailable)?;
                key_principal(owner, route_group)
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
                let route_group = self.route_group(&user.id).await.map_err(unavailable)?;
                user_principal(user, route_group)
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
            limits: None,
        }))
    }

    async fn check_limits(
        &self,
        request: Request<v1::CheckLimitsRequest>,
    ) -> Result<Response<v1::CheckLimitsResponse>, Status> {
        self.limits
            .check(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn sync_limits(
        &self,
        request: Request<v1::SyncLimitsRequest>,
    ) -> Result<Response<v1::SyncLimitsResponse>, Status> {
        self.limits
            .sync(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn report_usage(
        &self,
        _request: Request<v1::ReportUsageRequest>,
    ) -> Result<Response<v1::ReportUsageResponse>, Status> {
        Err(Status::unimplemented("report_usage"))
    }
}

/// Revoked keys and deleted users resolve to nothing, exactly like unknown keys;
/// suspension and expiry are reported so the filter can answer precisely.
fn key_principal(owner: KeyOwner, route_group: String) -> Option<v1::Principal> {
    if owner.key.status != KeyStatus::Active {
        return None;
    }
    let mut principal = user_principal(owner.user, route_group)?;
    principal.key_id = owner.key.id.to_string();
    principal.key_expires_at = owner.key.expires_at.map_or(0, |at| at.timestamp());
    principal.scopes = owner.key.scopes;
    Some(principal)
}

fn user_principal(user: User, route_group: String) -> Option<v1::Principal> {
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
        route_group,
        rate_limits: Vec::new(),
        exhausted_quotas: Vec::new(),
    })
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
