//! `redis.*`: where the rate-limit counters are shared between control planes.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://` or `rediss://`; empty keeps the rate-limit counters in this process,
    /// which is right only for a single control plane.
    pub url: String,
    /// Put before every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// A command not answered within this long fails, and the filter degrades.
    pub command_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            key_prefix: "tollgate:".into(),
            command_timeout_ms: 250,
        }
    }
}

impl RedisConfig {
    /// Checks the URL's scheme and host and the timeout's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.url.is_empty() {
            let parsed = url::Url::parse(&self.url).ok();
            let scheme = parsed.as_ref().map(url::Url::scheme);
            if !matches!(scheme, Some("redis" | "rediss"))
                || parsed.as_ref().and_then(url::Url::host_str).is_none()
            {
                return Err(ConfigError::invalid(
                    "redis.url",
                    "must be empty or a URL like redis://HOST:6379 or rediss://HOST:6380",
                ));
            }
        }
        if !(1..=60_000).contains(&self.command_timeout_ms) {
            return Err(ConfigError::invalid(
                "redis.command_timeout_ms",
                "must be 1 to 60000 milliseconds",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_without_a_redis_scheme_names_its_key() {
        let redis = |url: &str| RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        };
        let error = redis("http://127.0.0.1:6379")
            .validate()
            .expect_err("must fail")
            .to_string();
        assert!(error.contains("redis.url"), "{error}");
        assert!(redis("rediss://cache.internal:6380/0").validate().is_ok());
    }
}
