//! `LookupKey` and `LookupUser`: the principal behind a key or user the filter has not cached.
use std::time::Instant;

use tonic::Status;

use super::limit_settings::{key_limits, user_limits};
use super::{unavailable, FilterApi};
use crate::accounts::api_key::{KeyDigest, KeyState};
use crate::accounts::group::Group;
use crate::accounts::user::{User, UserStatus};
use crate::domain::ids::UserId;
use crate::limits::inherited::Inherited;
use crate::limits::quota::QuotaName;
use crate::limits::quota_state::QuotaState;
use crate::proto::v1::{
    self, LookupKeyRequest, LookupKeyResponse, LookupUserRequest, LookupUserResponse,
};
use crate::store::{KeyOwner, StoreError};

/// What a principal takes from the user's groups, settings and usage.
struct UserContext {
    route_group: String,
    rate_limits: Vec<v1::RateLimit>,
    exhausted_quotas: Vec<v1::ExhaustedQuota>,
    metered_quotas: Vec<String>,
}

impl FilterApi {
    async fn user_context(&self, user: &User) -> Result<UserContext, StoreError> {
        let inherited = Inherited::load(self.store.as_ref(), user).await?;
        let quota = QuotaState::load(
            self.store.as_ref(),
            &self.quotas.get(),
            user,
            &inherited,
            crate::domain::now(),
        )
        .await?;
        Ok(UserContext {
            route_group: route_group(&inherited.groups),
            rate_limits: user_limits(&self.limits.get(), user, &inherited),
            exhausted_quotas: quota
                .exhausted()
                .into_iter()
                .map(|(quota, resets_at)| v1::ExhaustedQuota {
                    name: quota.as_str().to_string(),
                    resets_at: resets_at.map_or(0, |at| at.timestamp()),
                })
                .collect(),
            metered_quotas: QuotaName::METERED
                .into_iter()
                .filter(|&metered| quota.quotas.limit(metered).is_some())
                .map(|metered| metered.as_str().to_string())
                .collect(),
        })
    }

    fn ttl(&self, found: bool) -> u32 {
        if found {
            self.cache.positive_cache_ttl_secs
        } else {
            self.cache.negative_cache_ttl_secs
        }
    }

    pub(super) async fn lookup_key(
        &self,
        request: LookupKeyRequest,
    ) -> Result<LookupKeyResponse, Status> {
        let started = Instant::now();
        let digest = KeyDigest::from_slice(&request.key_digest)
            .ok_or_else(|| Status::invalid_argument("key_digest must be 32 bytes"))?;
        // Read the cursor first: a change recorded while we read applies after it.
        let cursor = self.store.latest_change().await.map_err(unavailable)?;
        let principal = match self.store.key_by_hash(&self.hasher.hash(&digest)).await {
            Ok(owner) => {
                let context = self.user_context(&owner.user).await.map_err(unavailable)?;
                let limits = key_limits(&self.limits.get(), &owner.key);
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
        tracing::debug!(result, "key looked up");
        metrics::counter!("tollgate_key_lookups_total", "result" => result).increment(1);
        metrics::histogram!("tollgate_key_lookup_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(LookupKeyResponse {
            cache_ttl_seconds: self.ttl(principal.is_some()),
            principal,
            cursor,
        })
    }

    pub(super) async fn lookup_user(
        &self,
        request: LookupUserRequest,
    ) -> Result<LookupUserResponse, Status> {
        let cursor = self.store.latest_change().await.map_err(unavailable)?;
        let id = UserId::from_string(request.user_id);
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
        Ok(LookupUserResponse {
            cache_ttl_seconds: self.ttl(principal.is_some()),
            principal,
            cursor,
        })
    }
}

/// Revoked keys and deleted users resolve to nothing, exactly like unknown keys;
/// suspension and expiry are reported so the filter can answer precisely (an expired key
/// answers that it expired, and a usable one stops at its expiry while cached).
fn key_principal(
    owner: KeyOwner,
    context: UserContext,
    key_limits: Vec<v1::RateLimit>,
) -> Option<v1::Principal> {
    if owner.key.state_at(crate::domain::now()) == KeyState::Revoked {
        return None;
    }
    let mut principal = user_principal(owner.user, context)?;
    principal.rate_limits.extend(key_limits);
    principal.key_id = owner.key.id.to_string();
    principal.key_expires_at = owner.key.expires_at_secs();
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
        ip_allowlist: user.ip_allowlist.into_entries(),
        scopes: Vec::new(),
        route_group: context.route_group,
        rate_limits: context.rate_limits,
        exhausted_quotas: context.exhausted_quotas,
        metered_quotas: context.metered_quotas,
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
