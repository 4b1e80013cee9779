//! The gRPC service the Envoy filter calls when its caches cannot answer.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::config::FilterConfig;
use crate::domain::api_key::{KeyDigest, KeyHasher, KeyStatus};
use crate::domain::user::UserStatus;
use crate::proto::v1::filter_service_server::FilterService;
use crate::proto::v1::{self, LookupKeyRequest, LookupKeyResponse};
use crate::store::{KeyOwner, Store, StoreError};

/// Answers key lookups from the store.
pub struct FilterApi {
    store: Arc<dyn Store>,
    hasher: KeyHasher,
    cache: FilterConfig,
}

impl FilterApi {
    pub fn new(store: Arc<dyn Store>, hasher: KeyHasher, cache: FilterConfig) -> Self {
        Self {
            store,
            hasher,
            cache,
        }
    }
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
        let principal = match self.store.key_by_hash(&self.hasher.hash(&digest)).await {
            Ok(owner) => usable_principal(owner),
            Err(StoreError::NotFound) => None,
            Err(error) => {
                tracing::error!(%error, "key lookup failed");
                metrics::counter!("tollgate_key_lookups_total", "result" => "error").increment(1);
                return Err(Status::unavailable("the database is unavailable"));
            }
        };
        let (result, ttl) = match principal {
            Some(_) => ("found", self.cache.positive_cache_ttl_secs),
            None => ("not_found", self.cache.negative_cache_ttl_secs),
        };
        metrics::counter!("tollgate_key_lookups_total", "result" => result).increment(1);
        metrics::histogram!("tollgate_key_lookup_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(Response::new(LookupKeyResponse {
            principal,
            cache_ttl_seconds: ttl,
        }))
    }
}

/// Revoked keys and deleted users resolve to nothing, exactly like unknown keys;
/// suspension and expiry are reported so the filter can answer precisely.
fn usable_principal(owner: KeyOwner) -> Option<v1::Principal> {
    let user_status = match owner.user.status {
        UserStatus::Active => v1::UserStatus::Active,
        UserStatus::Suspended => v1::UserStatus::Suspended,
        UserStatus::Deleted => return None,
    };
    if owner.key.status != KeyStatus::Active {
        return None;
    }
    Some(v1::Principal {
        user_id: owner.user.id.to_string(),
        key_id: owner.key.id.to_string(),
        tenant_id: owner.user.tenant_id.unwrap_or_default(),
        group_ids: owner.user.groups,
        user_status: user_status.into(),
        key_expires_at: owner.key.expires_at.map_or(0, |at| at.timestamp()),
    })
}
