//! The buckets the global counters hold, named by subject (`ip:…`, `user:…`, `key:…`,
//! `route:…`), and the limits of each. The limits come from the deployment's settings and
//! the store, exactly as the filter is told them, never from the Envoy that names a bucket:
//! a caller cannot choose a burst or a rate that locks a user out.

use std::collections::HashMap;
use std::iter;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::accounts::api_key::{ApiKey, KeyState};
use crate::accounts::user::{User, UserStatus};
use crate::config::LimitsConfig;
use crate::domain::ids::{ApiKeyId, UserId};
use crate::domain::live::Live;
use crate::limits::counters::Limit;
use crate::limits::inherited::Inherited;
use crate::limits::rate_limits::{self, LimitLevel, RateLimit, RateLimits};
use crate::store::{Store, StoreError};

/// How long the limits of a user or key are reused before the store is asked again: a
/// changed limit applies within this long, as it reaches the filter within about as long.
const RESOLVED_TTL: Duration = Duration::from_secs(1);
/// The most users and keys whose limits are held at once.
const MAX_RESOLVED: usize = 100_000;

/// What a bucket's subject names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A client address (or the bucket addresses share); every one has the deployment's
    /// address limits.
    Ip,
    User(UserId),
    Key(ApiKeyId),
    /// A route as configured in `limits.routes`.
    Route(String),
}

impl Subject {
    /// The subject `name` stands for, or `None` when it is not one the filter could name.
    pub fn parse(name: &str) -> Option<Self> {
        let (kind, rest) = name.split_once(':')?;
        match kind {
            "ip" if !rest.is_empty() => Some(Self::Ip),
            "user" => UserId::parse(rest).map(Self::User),
            "key" => ApiKeyId::parse(rest).map(Self::Key),
            "route" if !rest.is_empty() => Some(Self::Route(rest.to_string())),
            _ => None,
        }
    }
}

/// The limits of a user: their own settings, then their groups' in priority order, then their
/// tenant's, then the deployment's user defaults.
pub fn user_limits(config: &LimitsConfig, user: &User, inherited: &Inherited) -> Vec<RateLimit> {
    let layers: Vec<&RateLimits> = iter::once(&user.rate_limits)
        .chain(inherited.rate_limits())
        .chain(iter::once(&config.user))
        .collect();
    rate_limits::resolve(&layers, LimitLevel::User, config.mode)
}

/// The limits of a key: its own settings, then the deployment's key defaults.
pub fn key_limits(config: &LimitsConfig, key: &ApiKey) -> Vec<RateLimit> {
    rate_limits::resolve(
        &[&key.rate_limits, &config.key],
        LimitLevel::Key,
        config.mode,
    )
}

/// The limits of every client address.
pub fn ip_limits(config: &LimitsConfig) -> Vec<RateLimit> {
    rate_limits::resolve(&[&config.ip], LimitLevel::Ip, config.mode)
}

/// The limits of each configured route, by route.
pub fn route_limits(config: &LimitsConfig) -> impl Iterator<Item = (&str, Vec<RateLimit>)> {
    config.routes.iter().map(|route| {
        let limits = rate_limits::resolve(&[&route.limits()], LimitLevel::Route, config.mode);
        (route.route.as_str(), limits)
    })
}

/// Finds the limits of the buckets the filter names.
pub struct SubjectLimits {
    store: Arc<dyn Store>,
    config: Live<LimitsConfig>,
    /// Users' and keys' limits as last read, by subject; empty for an unknown subject.
    resolved: Mutex<HashMap<Subject, (Instant, Vec<RateLimit>)>>,
}

impl SubjectLimits {
    pub fn new(store: Arc<dyn Store>, config: Live<LimitsConfig>) -> Self {
        Self {
            store,
            config,
            resolved: Mutex::default(),
        }
    }

    /// The limit of `subject`'s bucket with this window; `None` when the control plane has
    /// no such limit (an unknown, deleted or revoked subject, or a window it does not set).
    pub async fn limit(
        &self,
        subject: &Subject,
        window_seconds: u32,
    ) -> Result<Option<Limit>, StoreError> {
        let limits = self.limits_of(subject).await?;
        Ok(limits
            .iter()
            .find(|limit| limit.window_seconds == window_seconds)
            .map(|limit| Limit {
                window_seconds: limit.window_seconds,
                requests: limit.requests,
                burst: limit.burst,
            }))
    }

    async fn limits_of(&self, subject: &Subject) -> Result<Vec<RateLimit>, StoreError> {
        match subject {
            Subject::Ip => return Ok(ip_limits(&self.config.get())),
            Subject::Route(route) => {
                return Ok(route_limits(&self.config.get())
                    .find(|(configured, _)| configured == route)
                    .map(|(_, limits)| limits)
                    .unwrap_or_default());
            }
            Subject::User(_) | Subject::Key(_) => {}
        }
        if let Some(limits) = self.cached(subject) {
            return Ok(limits);
        }
        let limits = match subject {
            Subject::User(id) => self.stored_user_limits(id).await?,
            Subject::Key(id) => self.stored_key_limits(id).await?,
            Subject::Ip | Subject::Route(_) => Vec::new(),
        };
        self.remember(subject, &limits);
        Ok(limits)
    }

    async fn stored_user_limits(&self, id: &UserId) -> Result<Vec<RateLimit>, StoreError> {
        let user = match self.store.user(id).await {
            Ok(user) if user.status != UserStatus::Deleted => user,
            Ok(_) | Err(StoreError::NotFound) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let inherited = Inherited::load(self.store.as_ref(), &user).await?;
        Ok(user_limits(&self.config.get(), &user, &inherited))
    }

    async fn stored_key_limits(&self, id: &ApiKeyId) -> Result<Vec<RateLimit>, StoreError> {
        match self.store.key(id).await {
            Ok(key) if key.state_at(crate::domain::now()) != KeyState::Revoked => {
                Ok(key_limits(&self.config.get(), &key))
            }
            Ok(_) | Err(StoreError::NotFound) => Ok(Vec::new()),
            Err(error) => Err(error),
        }
    }

    fn cached(&self, subject: &Subject) -> Option<Vec<RateLimit>> {
        let resolved = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
        resolved
            .get(subject)
            .filter(|(at, _)| at.elapsed() < RESOLVED_TTL)
            .map(|(_, limits)| limits.clone())
    }

    fn remember(&self, subject: &Subject, limits: &[RateLimit]) {
        let mut resolved = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
        if resolved.len() >= MAX_RESOLVED {
            resolved.retain(|_, (at, _)| at.elapsed() < RESOLVED_TTL);
            if resolved.len() >= MAX_RESOLVED {
                resolved.clear();
            }
        }
        resolved.insert(subject.clone(), (Instant::now(), limits.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_the_ones_the_filter_names() {
        assert_eq!(Subject::parse("ip:192.0.2.7"), Some(Subject::Ip));
        assert_eq!(Subject::parse("ip:2001:db8::/64"), Some(Subject::Ip));
        assert_eq!(Subject::parse("ip:overflow"), Some(Subject::Ip));
        assert_eq!(
            Subject::parse("user:u_abc"),
            UserId::parse("u_abc").map(Subject::User)
        );
        assert_eq!(
            Subject::parse("key:k_abc"),
            ApiKeyId::parse("k_abc").map(Subject::Key)
        );
        assert_eq!(
            Subject::parse("route:GET /api/"),
            Some(Subject::Route("GET /api/".into()))
        );
        for malformed in [
            "",
            "ip:",
            "user:",
            "user:k_abc",
            "key:u_abc",
            "route:",
            "planet:x",
        ] {
            assert_eq!(Subject::parse(malformed), None, "{malformed}");
        }
    }
}
