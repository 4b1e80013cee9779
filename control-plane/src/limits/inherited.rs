//! What a user inherits below their own limits and quotas: their groups' settings in priority
//! order, then their tenant's, then (applied by the callers) the deployment's defaults.

use crate::accounts::group::Group;
use crate::accounts::tenant::Tenant;
use crate::accounts::user::User;
use crate::limits::quota::Quotas;
use crate::limits::rate_limits::RateLimits;
use crate::store::{Store, StoreError};

/// The settings layers between a user's own and the defaults.
#[derive(Debug, Clone, Default)]
pub struct Inherited {
    /// The user's groups, highest priority first.
    pub groups: Vec<Group>,
    /// The user's tenant; `None` for a user of no tenant or of a deleted one.
    pub tenant: Option<Tenant>,
}

impl Inherited {
    pub async fn load(store: &dyn Store, user: &User) -> Result<Self, StoreError> {
        let groups = store.groups_of(&user.id).await?;
        let tenant = match user.tenant_id.as_deref() {
            Some(id) => match store.tenant(id).await {
                Ok(tenant) => Some(tenant),
                Err(StoreError::NotFound) => None,
                Err(other) => return Err(other),
            },
            None => None,
        };
        Ok(Self { groups, tenant })
    }

    /// The rate limits of each layer, most specific first.
    pub fn rate_limits(&self) -> impl Iterator<Item = &RateLimits> {
        let groups = self.groups.iter().map(|group| &group.rate_limits);
        groups.chain(self.tenant.iter().map(|tenant| &tenant.rate_limits))
    }

    /// The quotas of each layer, most specific first.
    pub fn quotas(&self) -> impl Iterator<Item = &Quotas> {
        let groups = self.groups.iter().map(|group| &group.quotas);
        groups.chain(self.tenant.iter().map(|tenant| &tenant.quotas))
    }
}
