//! Configuration: built-in defaults, then an optional YAML file, then `TOLLGATE_*`
//! environment variables (`TOLLGATE_DATABASE__URL` sets `database.url`).
//!
//! Each section lives in its own file and checks its own keys; [`Config::validate`] runs
//! them in turn and keeps what they resolve.

mod audit;
mod auth;
mod bootstrap;
mod database;
mod filter;
mod keys;
mod ldap;
mod limits;
mod listen;
mod log;
mod login;
mod mail;
mod metrics;
mod mfa;
mod oidc;
mod passwords;
mod pools;
mod quotas;
mod redis;
mod self_service;
mod sessions;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use audit::AuditConfig;
pub use auth::{AuthConfig, LocalMethodConfig};
pub use bootstrap::BootstrapConfig;
pub use database::DatabaseConfig;
pub use filter::FilterConfig;
pub use keys::{KeysConfig, SecurityConfig, MAX_ROTATION_GRACE_SECS};
pub use ldap::{LdapAttributesConfig, LdapGroupsConfig, LdapMethodConfig, OnUnavailableConfig};
pub use limits::{IpCounts, LimitsConfig, RouteLimitConfig};
pub use listen::{GrpcConfig, HttpConfig};
pub use log::{LogConfig, LogFormat};
pub use login::LoginConfig;
pub use mail::MailConfig;
pub use metrics::{MetricsConfig, MAX_LABELLED_USERS};
pub use mfa::MfaConfig;
pub use oidc::{CreateUsersConfig, OidcConfig, OidcProviderConfig};
pub use passwords::{Argon2Config, PasswordsConfig};
pub use pools::{PoolsConfig, RoutingConfig};
pub use quotas::{QuotaDefaults, QuotasConfig};
pub use redis::RedisConfig;
pub use self_service::SelfServiceConfig;
pub use sessions::SessionsConfig;

use crate::identity::methods::LoginMethods;
use crate::identity::mfa::MfaPolicy;
use crate::identity::password::Argon2Settings;
use crate::identity::password_policy::PasswordPolicy;
use crate::identity::self_service::SelfService;
use crate::identity::signing::SigningAlgorithm;
use crate::limits::quota::QuotaPolicy;
use crate::mail::MailSettings;

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

impl ConfigError {
    /// The value of `key` breaks a rule: `problem` says which.
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
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
    pub login: LoginConfig,
    pub auth: AuthConfig,
    pub self_service: SelfServiceConfig,
    pub mail: MailConfig,
    pub mfa: MfaConfig,
    pub passwords: PasswordsConfig,
    pub pools: PoolsConfig,
    pub routing: RoutingConfig,
    pub limits: LimitsConfig,
    pub quotas: QuotasConfig,
    pub bootstrap: BootstrapConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
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
            login: LoginConfig::default(),
            auth: AuthConfig::default(),
            self_service: SelfServiceConfig::default(),
            mail: MailConfig::default(),
            mfa: MfaConfig::default(),
            passwords: PasswordsConfig::default(),
            pools: PoolsConfig::default(),
            routing: RoutingConfig::default(),
            limits: LimitsConfig::default(),
            quotas: QuotasConfig::default(),
            bootstrap: BootstrapConfig::default(),
            audit: AuditConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
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
    pub login_methods: LoginMethods,
    pub mfa_policy: MfaPolicy,
    pub password_policy: PasswordPolicy,
    pub argon2: Argon2Settings,
    pub mail: Option<MailSettings>,
    pub self_service: SelfService,
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

    /// Checks every section and resolves derived values.
    pub fn validate(self) -> Result<ValidConfig, ConfigError> {
        let http_listen = self.http.validate()?;
        let grpc_listen = self.grpc.validate()?;
        let database_url = self.database.validate(&self.data_dir)?;
        self.redis.validate()?;
        self.keys.validate()?;
        self.filter.validate()?;
        self.security.validate()?;
        let session_algorithm = self.sessions.validate()?;
        self.login.validate()?;
        let login_methods = self.auth.validate()?;
        let mail = self.mail.validate()?;
        let self_service = self.self_service.validate(mail.as_ref())?;
        let mfa_policy = self.mfa.validate()?;
        let (password_policy, argon2) = self.passwords.validate()?;
        self.pools.validate()?;
        self.routing.validate()?;
        self.bootstrap.validate()?;
        self.audit.validate()?;
        self.log.validate()?;
        self.metrics.validate()?;
        self.limits.validate()?;
        let quota_policy = self.quotas.validate()?;
        Ok(ValidConfig {
            raw: self,
            session_algorithm,
            http_listen,
            grpc_listen,
            database_url,
            quota_policy,
            login_methods,
            mfa_policy,
            password_policy,
            argon2,
            mail,
            self_service,
        })
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
    use crate::limits::rate_limits::LimitMode;

    #[test]
    fn defaults_are_valid_and_use_sqlite_in_the_data_dir() {
        let config = Config::default().validate().expect("defaults validate");
        assert_eq!(config.http_listen.to_string(), "127.0.0.1:8090");
        assert_eq!(config.grpc_listen.to_string(), "127.0.0.1:18000");
        assert_eq!(config.database_url, "sqlite://tollgate-data/tollgate.db");
    }

    #[test]
    fn bad_limits_and_quotas_name_their_key() {
        type Adjustment = fn(&mut Config);
        let cases: [(Adjustment, &str); 11] = [
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
            (|c| c.limits.max_envoys = 0, "limits.max_envoys"),
            (
                |c| c.limits.refusal_audits_per_minute = 100_001,
                "limits.refusal_audits_per_minute",
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
            (
                |c| c.quotas.allowance_divisor = 0,
                "quotas.allowance_divisor",
            ),
            (
                |c| c.quotas.max_allowance_bandwidth_mb = 0,
                "quotas.max_allowance_bandwidth_mb",
            ),
            (
                |c| c.quotas.allowance_admit_secs = 151,
                "quotas.allowance_admit_secs",
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
        assert_eq!(config.mfa_policy.challenge_ttl.num_seconds(), 300);
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
}
