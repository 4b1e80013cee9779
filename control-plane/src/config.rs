//! Configuration: built-in defaults, then an optional YAML file, then `TOLLGATE_*`
//! environment variables (`TOLLGATE_DATABASE__URL` sets `database.url`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::identity::signing::SigningAlgorithm;
use crate::limits::quota::{EffectiveQuotas, QuotaPolicy, Quotas};
use crate::limits::rate_limits::{LimitMode, RateLimits};
use crate::routing::pool::HealthCheckSettings;

/// Why a configuration could not be used. Every message names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid { key: String, problem: String },
}

/// The whole configuration of one control-plane process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where generated state lives (the SQLite file, the key-hash secret).
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub grpc: GrpcConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub security: SecurityConfig,
    pub keys: KeysConfig,
    pub filter: FilterConfig,
    pub sessions: SessionsConfig,
    pub pools: PoolsConfig,
    pub routing: RoutingConfig,
    pub limits: LimitsConfig,
    pub quotas: QuotasConfig,
    pub bootstrap: BootstrapConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Admin API, login, health and metrics.
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// The service Envoy's filter calls.
    pub listen: String,
    /// What every Envoy presents on this port. Every replica must share it. When unset, one is
    /// generated into `data_dir` on first start.
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`; empty means the SQLite file in `data_dir`.
    pub url: String,
    pub max_connections: u32,
}

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

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Secret for the keyed hash of API keys. Every replica must share it. When
    /// unset, one is generated into `data_dir` on first start.
    pub key_hash_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// First part of every generated key: `<prefix>_<user_id>_<random>`.
    pub prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// How long Envoy may reuse a key it resolved.
    pub positive_cache_ttl_secs: u32,
    /// How long Envoy may remember that a key is unknown.
    pub negative_cache_ttl_secs: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// `iss` of every access token.
    pub issuer: String,
    /// `aud` of every access token.
    pub audience: String,
    /// `EdDSA` (default) or `RS256`, for newly generated signing keys.
    pub algorithm: String,
    pub access_token_ttl_secs: u32,
    pub refresh_token_ttl_secs: u32,
    /// How long a new signing key is published before it signs.
    pub key_publish_delay_secs: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            issuer: "tollgate".into(),
            audience: "tollgate".into(),
            algorithm: "EdDSA".into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            key_publish_delay_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolsConfig {
    /// Pools with fewer enabled backends are reported as below minimum.
    pub min_backends: usize,
    /// Adding a backend to a pool this full is refused.
    pub max_backends: usize,
    /// Health checks of pools without settings of their own.
    pub health_check: HealthCheckSettings,
}

impl Default for PoolsConfig {
    fn default() -> Self {
        Self {
            min_backends: 2,
            max_backends: 10,
            health_check: HealthCheckSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// When none of a group's pools has a healthy backend, send its users to the default
    /// pool instead of answering 503 `no_upstream_available`.
    pub fallback_to_default_pool: bool,
}

/// Rate limits of the whole deployment, and the defaults of users and keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The mode of limits that do not name one.
    pub mode: LimitMode,
    /// Per client address.
    pub ip: RateLimits,
    pub ip_counts: IpCounts,
    /// Users (and their groups) that set no limit of their own.
    pub user: RateLimits,
    /// Keys that set no limit of their own.
    pub key: RateLimits,
    /// Per route, for all users together.
    pub routes: Vec<RouteLimitConfig>,
    /// When the control plane cannot be reached, `exact` limits admit (true) or refuse.
    pub exact_fails_open: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            mode: LimitMode::Fast,
            ip: RateLimits {
                requests_per_minute: Some(100),
                burst: Some(20),
                ..RateLimits::default()
            },
            ip_counts: IpCounts::FailedAuthentications,
            user: RateLimits {
                requests_per_minute: Some(1000),
                requests_per_hour: Some(10_000),
                ..RateLimits::default()
            },
            key: RateLimits::default(),
            routes: Vec::new(),
            exact_fails_open: false,
        }
    }
}

/// Which requests count against the per-address limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpCounts {
    /// Only those that fail authentication: throttles key guessing, not busy NATs.
    FailedAuthentications,
    EveryRequest,
}

/// A limit on one route: `[METHOD ]PATH_PREFIX`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitConfig {
    pub route: String,
    pub requests_per_second: Option<u64>,
    pub requests_per_minute: Option<u64>,
    pub requests_per_hour: Option<u64>,
    pub burst: Option<u64>,
    pub mode: Option<LimitMode>,
}

impl RouteLimitConfig {
    pub fn limits(&self) -> RateLimits {
        RateLimits {
            requests_per_second: self.requests_per_second,
            requests_per_minute: self.requests_per_minute,
            requests_per_hour: self.requests_per_hour,
            burst: self.burst,
            mode: self.mode,
        }
    }
}

/// Quota periods and the quotas of users whose groups set none.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotasConfig {
    /// Day of the month (1-28) periods start on.
    pub reset_day: u8,
    /// IANA name of the zone whose midnight starts a period.
    pub time_zone: String,
    pub defaults: QuotaDefaults,
}

impl Default for QuotasConfig {
    fn default() -> Self {
        Self {
            reset_day: 1,
            time_zone: "UTC".into(),
            defaults: QuotaDefaults::default(),
        }
    }
}

/// `None` is unlimited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaDefaults {
    pub monthly_requests: Option<u64>,
    pub monthly_bandwidth_mb: Option<u64>,
    pub storage_quota_mb: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Imported as the `admin` user's key (any format) when not yet known.
    pub admin_api_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("tollgate-data"),
            http: HttpConfig::default(),
            grpc: GrpcConfig::default(),
            database: DatabaseConfig::default(),
            redis: RedisConfig::default(),
            security: SecurityConfig::default(),
            keys: KeysConfig::default(),
            filter: FilterConfig::default(),
            sessions: SessionsConfig::default(),
            pools: PoolsConfig::default(),
            routing: RoutingConfig::default(),
            limits: LimitsConfig::default(),
            quotas: QuotasConfig::default(),
            bootstrap: BootstrapConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:18000".into(),
            credential: None,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 10,
        }
    }
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

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            prefix: "tg".into(),
        }
    }
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            positive_cache_ttl_secs: 30,
            negative_cache_ttl_secs: 5,
        }
    }
}

/// A configuration that passed validation, with derived values resolved.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub raw: Config,
    pub session_algorithm: SigningAlgorithm,
    pub http_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    pub database_url: String,
    pub quota_policy: QuotaPolicy,
}

impl Config {
    /// Loads defaults, the optional file and the environment, then validates.
    pub fn load(file: Option<&Path>) -> Result<ValidConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_path_buf()));
            }
            figment = figment.merge(Yaml::file_exact(path));
        }
        // TOLLGATE_CONFIG and TOLLGATE_LOG belong to the command line, not to the file's keys.
        figment = figment.merge(
            Env::prefixed("TOLLGATE_")
                .ignore(&["config", "log"])
                .split("__"),
        );
        let config: Config = figment
            .extract()
            .map_err(|error| ConfigError::Parse(describe_figment_error(error)))?;
        config.validate()
    }

    /// Checks every key and resolves derived values.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let http_listen = parse_listen("http.listen", &self.http.listen)?;
        let grpc_listen = parse_listen("grpc.listen", &self.grpc.listen)?;
        let database_url = if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("tollgate.db").display())
        } else {
            self.database.url.clone()
        };
        let supported = ["sqlite:", "postgres://", "postgresql://"];
        if !supported
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            return Err(invalid(
                "database.url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        let redis = &self.redis;
        if !redis.url.is_empty() {
            let parsed = url::Url::parse(&redis.url).ok();
            let scheme = parsed.as_ref().map(url::Url::scheme);
            if !matches!(scheme, Some("redis" | "rediss"))
                || parsed.as_ref().and_then(url::Url::host_str).is_none()
            {
                return Err(invalid(
                    "redis.url",
                    "must be empty or a URL like redis://HOST:6379 or rediss://HOST:6380",
                ));
            }
        }
        if !(1..=60_000).contains(&redis.command_timeout_ms) {
            return Err(invalid(
                "redis.command_timeout_ms",
                "must be 1 to 60000 milliseconds",
            ));
        }
        let prefix = &self.keys.prefix;
        if prefix.is_empty()
            || prefix.len() > 16
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(invalid(
                "keys.prefix",
                "must be 1 to 16 lowercase letters or digits",
            ));
        }
        if self.filter.positive_cache_ttl_secs == 0 {
            return Err(invalid(
                "filter.positive_cache_ttl_secs",
                "must be at least 1",
            ));
        }
        if self.filter.negative_cache_ttl_secs == 0 {
            return Err(invalid(
                "filter.negative_cache_ttl_secs",
                "must be at least 1",
            ));
        }
        if let Some(secret) = &self.security.key_hash_secret {
            if secret.len() < 32 {
                return Err(invalid(
                    "security.key_hash_secret",
                    "must be at least 32 characters",
                ));
            }
        }
        if self
            .grpc
            .credential
            .as_ref()
            .is_some_and(|credential| credential.len() < 32 || !credential.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(invalid(
                "grpc.credential",
                "must be at least 32 visible ASCII characters",
            ));
        }
        if SigningAlgorithm::parse(&self.sessions.algorithm).is_none() {
            return Err(invalid("sessions.algorithm", "must be EdDSA or RS256"));
        }
        if self.sessions.issuer.is_empty() {
            return Err(invalid("sessions.issuer", "must not be empty"));
        }
        if self.sessions.audience.is_empty() {
            return Err(invalid("sessions.audience", "must not be empty"));
        }
        if !(60..=86_400).contains(&self.sessions.access_token_ttl_secs) {
            return Err(invalid(
                "sessions.access_token_ttl_secs",
                "must be 60 to 86400 seconds",
            ));
        }
        if self.sessions.refresh_token_ttl_secs < self.sessions.access_token_ttl_secs {
            return Err(invalid(
                "sessions.refresh_token_ttl_secs",
                "must be at least sessions.access_token_ttl_secs",
            ));
        }
        if self.pools.min_backends > self.pools.max_backends || self.pools.max_backends == 0 {
            return Err(invalid(
                "pools.max_backends",
                "must be at least 1 and at least pools.min_backends",
            ));
        }
        if let Err(error) = self.pools.health_check.validate() {
            return Err(invalid("pools.health_check", error.problem));
        }
        if matches!(&self.bootstrap.admin_api_key, Some(key) if key.trim().is_empty()) {
            return Err(invalid("bootstrap.admin_api_key", "must not be empty"));
        }
        validate_limits(&self.limits)?;
        let quota_policy = quota_policy(&self.quotas)?;
        let session_algorithm =
            SigningAlgorithm::parse(&self.sessions.algorithm).unwrap_or(SigningAlgorithm::EdDSA);
        Ok(ValidConfig {
            session_algorithm,
            quota_policy,
            raw: self,
            http_listen,
            grpc_listen,
            database_url,
        })
    }
}

fn validate_limits(limits: &LimitsConfig) -> Result<(), ConfigError> {
    let sections = [
        ("limits.ip", &limits.ip),
        ("limits.user", &limits.user),
        ("limits.key", &limits.key),
    ];
    for (section, settings) in sections {
        settings
            .validate()
            .map_err(|e| invalid(format!("{section}.{}", e.field), e.problem))?;
    }
    for (index, route) in limits.routes.iter().enumerate() {
        let section = format!("limits.routes[{index}]");
        if !valid_route(&route.route) {
            return Err(invalid(
                format!("{section}.route"),
                "must be a path prefix like /api/, optionally after a method: GET /api/",
            ));
        }
        let settings = route.limits();
        settings
            .validate()
            .map_err(|e| invalid(format!("{section}.{}", e.field), e.problem))?;
        if [
            settings.requests_per_second,
            settings.requests_per_minute,
            settings.requests_per_hour,
        ]
        .iter()
        .all(Option::is_none)
        {
            return Err(invalid(
                section,
                "must set requests_per_second, requests_per_minute or requests_per_hour",
            ));
        }
    }
    Ok(())
}

/// `[METHOD ]PATH_PREFIX`, as in key scopes.
fn valid_route(route: &str) -> bool {
    let path = match route.split_once(' ') {
        Some((method, path)) => {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return false;
            }
            path
        }
        None => route,
    };
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic())
}

fn quota_policy(quotas: &QuotasConfig) -> Result<QuotaPolicy, ConfigError> {
    let defaults = quotas.defaults;
    Quotas {
        monthly_requests: defaults.monthly_requests,
        monthly_bandwidth_mb: defaults.monthly_bandwidth_mb,
        storage_quota_mb: defaults.storage_quota_mb,
        reset_day: Some(quotas.reset_day),
    }
    .validate()
    .map_err(|e| match e.field {
        "reset_day" => invalid("quotas.reset_day", e.problem),
        field => invalid(format!("quotas.defaults.{field}"), e.problem),
    })?;
    let time_zone = quotas.time_zone.parse::<Tz>().map_err(|_| {
        invalid(
            "quotas.time_zone",
            &format!(
                "must be an IANA time zone like UTC or Europe/Berlin, not {:?}",
                quotas.time_zone
            ),
        )
    })?;
    Ok(QuotaPolicy {
        defaults: EffectiveQuotas {
            monthly_requests: defaults.monthly_requests,
            monthly_bandwidth_mb: defaults.monthly_bandwidth_mb,
            storage_quota_mb: defaults.storage_quota_mb,
            reset_day: quotas.reset_day,
        },
        time_zone,
    })
}

fn parse_listen(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            &format!("must be an address like 127.0.0.1:8090, not {value:?}"),
        )
    })
}

fn invalid(key: impl Into<String>, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.to_string(),
    }
}

/// One line per problem, each naming the key path as written in the YAML.
fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{origin}", e.kind)
            } else {
                format!("`{key}`: {}{origin}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_use_sqlite_in_the_data_dir() {
        let config = Config::default().validate().expect("defaults validate");
        assert_eq!(config.http_listen.to_string(), "127.0.0.1:8090");
        assert_eq!(config.grpc_listen.to_string(), "127.0.0.1:18000");
        assert_eq!(config.database_url, "sqlite://tollgate-data/tollgate.db");
    }

    #[test]
    fn a_bad_listen_address_names_its_key() {
        let mut config = Config::default();
        config.grpc.listen = "localhost".into();
        let error = config.validate().expect_err("must fail").to_string();
        assert!(error.contains("grpc.listen"), "{error}");
    }

    #[test]
    fn an_unsupported_database_names_its_key() {
        let mut config = Config::default();
        config.database.url = "mysql://x".into();
        let error = config.validate().expect_err("must fail").to_string();
        assert!(error.contains("database.url"), "{error}");
    }

    #[test]
    fn a_redis_url_without_a_redis_scheme_names_its_key() {
        let mut config = Config::default();
        config.redis.url = "http://127.0.0.1:6379".into();
        let error = config.validate().expect_err("must fail").to_string();
        assert!(error.contains("redis.url"), "{error}");
        let mut config = Config::default();
        config.redis.url = "rediss://cache.internal:6380/0".into();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bad_limits_and_quotas_name_their_key() {
        type Adjustment = fn(&mut Config);
        let cases: [(Adjustment, &str); 6] = [
            (
                |c| c.limits.user.requests_per_hour = Some(0),
                "limits.user.requests_per_hour",
            ),
            (
                |c| c.limits.ip.burst = Some(2_000_000_000),
                "limits.ip.burst",
            ),
            (
                |c| {
                    c.limits.routes.push(RouteLimitConfig {
                        route: "api".into(),
                        requests_per_second: Some(1),
                        requests_per_minute: None,
                        requests_per_hour: None,
                        burst: None,
                        mode: None,
                    });
                },
                "limits.routes[0].route",
            ),
            (|c| c.quotas.reset_day = 29, "quotas.reset_day"),
            (
                |c| c.quotas.time_zone = "Mars/Olympus".into(),
                "quotas.time_zone",
            ),
            (
                |c| c.quotas.defaults.storage_quota_mb = Some(u64::MAX),
                "quotas.defaults.storage_quota_mb",
            ),
        ];
        for (adjust, key) in cases {
            let mut config = Config::default();
            adjust(&mut config);
            let error = config.validate().expect_err(key).to_string();
            assert!(error.contains(key), "{error}");
        }
    }

    #[test]
    fn a_yaml_null_removes_a_default_limit() {
        let dir = tempfile::tempdir().expect("folder");
        let file = dir.path().join("tollgate.yaml");
        std::fs::write(&file, "limits:\n  user: {requests_per_hour: null}\n").expect("write");
        let config = Config::load(Some(&file)).expect("valid");
        assert_eq!(config.raw.limits.user.requests_per_hour, None);
        assert_eq!(config.raw.limits.user.requests_per_minute, Some(1000));
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tollgate.example.yaml");
        let config = Config::load(Some(&example)).expect("the example loads");
        assert_eq!(config.raw.limits.routes[0].route, "/api/");
        assert_eq!(config.raw.limits.routes[0].requests_per_minute, Some(5000));
    }

    #[test]
    fn limits_and_quotas_load_from_yaml() {
        let dir = tempfile::tempdir().expect("folder");
        let file = dir.path().join("tollgate.yaml");
        std::fs::write(
            &file,
            "limits:\n  mode: exact\n  ip_counts: every_request\n  key: {requests_per_second: 5}\n  \
             routes: [{route: \"POST /api/\", requests_per_minute: 5000}]\n\
             quotas:\n  reset_day: 15\n  time_zone: Europe/Berlin\n  \
             defaults: {monthly_requests: 100000, monthly_bandwidth_mb: null}\n",
        )
        .expect("write");
        let config = Config::load(Some(&file)).expect("valid");
        assert_eq!(config.raw.limits.mode, LimitMode::Exact);
        assert_eq!(config.raw.limits.ip_counts, IpCounts::EveryRequest);
        assert_eq!(config.raw.limits.key.requests_per_second, Some(5));
        assert_eq!(config.raw.limits.user.requests_per_minute, Some(1000));
        assert_eq!(config.raw.limits.routes[0].route, "POST /api/");
        assert_eq!(config.quota_policy.defaults.monthly_requests, Some(100_000));
        assert_eq!(config.quota_policy.defaults.reset_day, 15);
        assert_eq!(config.quota_policy.time_zone, chrono_tz::Tz::Europe__Berlin);

        std::fs::write(&file, "limits:\n  mode: slow\n").expect("write");
        let error = Config::load(Some(&file)).expect_err("bad mode").to_string();
        assert!(error.contains("limits.mode"), "{error}");
    }

    #[test]
    fn an_uppercase_key_prefix_is_refused() {
        let mut config = Config::default();
        config.keys.prefix = "TG".into();
        let error = config.validate().expect_err("must fail").to_string();
        assert!(error.contains("keys.prefix"), "{error}");
    }
}
