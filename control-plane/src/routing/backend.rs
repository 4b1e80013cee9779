//! Upstream backends: where requests go, and how healthy each one is.

use std::ops::RangeInclusive;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::ids::BackendId;
use crate::domain::validation::{deserialize_checked, InvalidField};
use crate::domain::Timestamp;
use crate::routing::pool::PoolName;
use crate::routing::upstream_tls::TrustedCa;

/// A backend's address, validated: `http` or `https`, a host, a port; nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BackendUrl {
    /// Parses `http://host[:port]` or `https://host[:port]`, refusing credentials, paths,
    /// queries and fragments.
    pub fn parse(text: &str) -> Result<Self, InvalidField> {
        let invalid = |problem| InvalidField {
            field: "url",
            problem,
        };
        let url = url::Url::parse(text).map_err(|_| invalid("must be an absolute http(s) URL"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(invalid("must use http or https")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not contain credentials"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a path, query or fragment"));
        }
        let host = match url.host() {
            // A DNS name also becomes the TLS server name, which Envoy caps at 255 bytes.
            Some(url::Host::Domain(domain))
                if domain.len() > 253 || domain.split('.').any(|label| label.len() > 63) =>
            {
                return Err(invalid("must name a host of at most 253 characters"))
            }
            Some(url::Host::Domain(domain)) => domain.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(invalid("must name a host")),
        };
        let port = url
            .port_or_known_default()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("must have a port from 1 to 65535"))?;
        Ok(Self { tls, host, port })
    }
}

impl std::fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for BackendUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The result of the last health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "healthy" => Some(Self::Healthy),
            "unhealthy" => Some(Self::Unhealthy),
            "unknown" => Some(Self::Unknown),
            _ => None,
        }
    }
}

/// A backend's live health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BackendHealth {
    pub status: HealthStatus,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub last_checked_at: Option<Timestamp>,
    pub last_latency_ms: Option<u64>,
    pub last_error: Option<String>,
}

impl Default for BackendHealth {
    fn default() -> Self {
        Self {
            status: HealthStatus::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_checked_at: None,
            last_latency_ms: None,
            last_error: None,
        }
    }
}

impl BackendHealth {
    /// The health after one more check: `Ok(latency)` or `Err(reason)`, with the thresholds
    /// that flip the status.
    pub fn after_check(
        &self,
        result: Result<u64, String>,
        at: Timestamp,
        unhealthy_threshold: u32,
        healthy_threshold: u32,
    ) -> Self {
        match result {
            Ok(latency_ms) => {
                let successes = self.consecutive_successes.saturating_add(1);
                let status =
                    if self.status != HealthStatus::Healthy && successes >= healthy_threshold {
                        HealthStatus::Healthy
                    } else if self.status == HealthStatus::Unknown {
                        HealthStatus::Unknown
                    } else {
                        self.status
                    };
                Self {
                    status,
                    consecutive_failures: 0,
                    consecutive_successes: successes,
                    last_checked_at: Some(at),
                    last_latency_ms: Some(latency_ms),
                    last_error: None,
                }
            }
            Err(reason) => {
                let failures = self.consecutive_failures.saturating_add(1);
                let status = if failures >= unhealthy_threshold {
                    HealthStatus::Unhealthy
                } else {
                    self.status
                };
                Self {
                    status,
                    consecutive_failures: failures,
                    consecutive_successes: 0,
                    last_checked_at: Some(at),
                    last_latency_ms: None,
                    last_error: Some(reason),
                }
            }
        }
    }
}

/// A backend's health as checked against its settings of `settings_updated_at`: it is stored
/// only while the backend still has those settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedHealth {
    pub id: BackendId,
    pub settings_updated_at: Timestamp,
    pub health: BackendHealth,
}

/// A backend as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Backend {
    pub id: BackendId,
    #[schema(value_type = String, example = "http://10.0.0.5:8080")]
    pub url: BackendUrl,
    /// Share of its pool's traffic, relative to the other backends' weights.
    pub weight: Weight,
    pub health_check_path: String,
    pub pool: PoolName,
    pub enabled: bool,
    /// SNI for TLS to an `https` backend, and the name its certificate must carry; the
    /// URL's host when unset.
    pub tls_sni: Option<String>,
    /// CA certificates an `https` backend's certificate must chain to, instead of the
    /// deployment's bundle.
    pub tls_ca: Option<TrustedCa>,
    /// An `https` backend whose certificate is not checked at all.
    pub tls_insecure: bool,
    pub health: BackendHealth,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub updated_at: Timestamp,
}

/// A backend's share of its pool's traffic: 1 to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Weight(u32);

impl Weight {
    /// The weights a backend may have; Envoy refuses 0.
    pub const RANGE: RangeInclusive<u32> = 1..=100;
    /// The weight of a backend created without one.
    pub const DEFAULT: Self = Self(100);

    /// The weight as a number, e.g. for storage or Envoy.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Weight {
    type Error = InvalidField;

    fn try_from(weight: u32) -> Result<Self, Self::Error> {
        if Self::RANGE.contains(&weight) {
            Ok(Self(weight))
        } else {
            Err(InvalidField {
                field: "weight",
                problem: "must be 1 to 100",
            })
        }
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked::<D, u32, Self>(deserializer)
    }
}

/// A health-check path is an absolute path of visible ASCII, at most 200 characters.
pub fn validate_health_check_path(path: &str) -> Result<(), InvalidField> {
    if path.starts_with('/') && path.len() <= 200 && path.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(InvalidField {
            field: "health_check_path",
            problem: "must be an absolute path like /healthz",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_strictly() {
        let url = BackendUrl::parse("http://127.0.0.1:48080").expect("valid");
        assert_eq!(
            (url.tls, url.host.as_str(), url.port),
            (false, "127.0.0.1", 48080)
        );
        assert_eq!(
            BackendUrl::parse("https://api.example.com")
                .expect("valid")
                .port,
            443
        );
        assert_eq!(
            BackendUrl::parse("http://[::1]:9000")
                .expect("valid")
                .to_string(),
            "http://[::1]:9000"
        );
        for bad in [
            "ftp://example.com",
            "http://user:pw@example.com",
            "http://example.com/path",
            "http://example.com/?q=1",
            "example.com:80",
            "http://",
            "unix:///tmp/socket",
            "http://127.0.0.1:0",
            &format!("https://{}.example.com", "a".repeat(64)),
            &format!("https://{}example.com", "abcdefghi.".repeat(26)),
        ] {
            assert!(BackendUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn health_flips_after_the_thresholds() {
        let at = crate::domain::now();
        let mut health = BackendHealth::default();
        health = health.after_check(Ok(3), at, 3, 2);
        assert_eq!(health.status, HealthStatus::Unknown);
        health = health.after_check(Ok(3), at, 3, 2);
        assert_eq!(health.status, HealthStatus::Healthy);
        for expected in [
            HealthStatus::Healthy,
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
        ] {
            health = health.after_check(Err("refused".into()), at, 3, 2);
            assert_eq!(health.status, expected);
        }
        assert_eq!(health.consecutive_failures, 3);
        health = health.after_check(Ok(1), at, 3, 2);
        assert_eq!(health.status, HealthStatus::Unhealthy);
        health = health.after_check(Ok(1), at, 3, 2);
        assert_eq!(health.status, HealthStatus::Healthy);
        assert_eq!(health.last_latency_ms, Some(1));
    }
}
