//! The plugin configuration: the JSON Envoy passes as the filter's `configuration`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::access::Scopes;
use crate::control_plane_cluster::ControlPlaneCluster;

/// How the filter reaches the control plane and what it accepts from clients.
///
/// Every field is optional in the JSON; unknown fields are refused so that a typo does not
/// silently fall back to a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// Envoy cluster of the control plane's gRPC server.
    pub control_plane_cluster: ControlPlaneCluster,
    /// What the filter presents on the control plane's gRPC port: its `grpc.credential`.
    pub control_plane_credential: ControlPlaneCredential,
    /// An environment variable of the VM that holds the credential instead, so that it stays
    /// out of this configuration (an Istio `WasmPlugin` passes the gateway's variable from a
    /// Secret with `vmConfig.env`); see [`PluginConfig::with_credential_from_env`].
    pub control_plane_credential_env: String,
    /// How long a request waits for the control plane before it is refused with 503.
    pub callout_timeout_ms: u64,
    /// Longest API key accepted; a longer one is refused without a lookup.
    pub max_credential_bytes: usize,
    /// Proxies in front of Envoy whose `X-Forwarded-For` entries are believed; 0 ignores the
    /// header and uses the peer address.
    pub trusted_hops: u8,
    /// How long past its TTL a cached principal still serves while the control plane is
    /// unreachable.
    pub max_stale_secs: u32,
    /// Routes (`[METHOD ]PATH_PREFIX`, as key scopes) that let a request through
    /// unauthenticated when its credential is not cached and the control plane is
    /// unreachable; every other route refuses it with 503.
    pub fail_open_routes: Vec<String>,
    /// How long the change-feed watch may be held by the control plane.
    pub watch_wait_ms: u32,
    /// Which answers carry `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub rate_limit_headers: RateLimitHeaders,
    /// What a request reserves of a bandwidth quota's allowance when it is admitted, unless
    /// it declares more (headers plus `content-length`); it is settled with the bytes that
    /// passed when it ends.
    pub bandwidth_reserve_bytes: u64,
    /// How long a quota allowance nothing draws on is kept before it goes back to the quota
    /// (for other workers and Envoys); longer means fewer callouts for a user whose requests
    /// come in bursts, and more of the quota held aside near its end.
    pub allowance_idle_ms: u32,
}

/// The control plane's gRPC credential, kept as the `authorization` metadata every call sends.
/// `Debug` does not show it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct ControlPlaneCredential {
    /// `Bearer <credential>`; empty when none is configured.
    authorization: String,
}

impl ControlPlaneCredential {
    /// The `authorization` metadata for a call; `None` when no credential is configured.
    pub fn authorization(&self) -> Option<&[u8]> {
        (!self.authorization.is_empty()).then_some(self.authorization.as_bytes())
    }
}

impl From<String> for ControlPlaneCredential {
    fn from(credential: String) -> Self {
        let authorization = if credential.is_empty() {
            credential
        } else {
            format!("Bearer {credential}")
        };
        Self { authorization }
    }
}

impl fmt::Debug for ControlPlaneCredential {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = if self.authorization.is_empty() {
            "none"
        } else {
            "set"
        };
        write!(formatter, "ControlPlaneCredential({shown})")
    }
}

/// Which answers carry the `X-RateLimit-*` headers. Adding the three to an upstream's answer
/// costs Envoy about 10,000 instructions, an eighth of what the filter adds to a request, so a
/// deployment whose clients do not read them may keep them to refusals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitHeaders {
    /// Every answer to a request that drew on a rate limit.
    #[default]
    EveryAnswer,
    /// Only the filter's own refusals: 429 (with `Retry-After`), and a 401 counted against an
    /// address limit. Upstream answers keep whatever `X-RateLimit-*` the upstream sent.
    Refusals,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            control_plane_cluster: ControlPlaneCluster::default(),
            control_plane_credential: ControlPlaneCredential::default(),
            control_plane_credential_env: String::new(),
            callout_timeout_ms: 1000,
            max_credential_bytes: 8192,
            trusted_hops: 0,
            max_stale_secs: 300,
            fail_open_routes: Vec::new(),
            watch_wait_ms: 20_000,
            rate_limit_headers: RateLimitHeaders::EveryAnswer,
            bandwidth_reserve_bytes: 65_536,
            allowance_idle_ms: 2000,
        }
    }
}

impl PluginConfig {
    /// Parses and validates the configuration; empty input means every default.
    pub fn from_json(json: &[u8]) -> Result<Self, ConfigError> {
        if json.trim_ascii().is_empty() {
            return Ok(Self::default());
        }
        let document: serde_json::Value =
            serde_json::from_slice(json).map_err(|error| ConfigError {
                field: None,
                reason: format!("not valid JSON: {error}"),
            })?;
        // Checked here because serde would also build the struct from a JSON array.
        if !document.is_object() {
            return Err(ConfigError {
                field: None,
                reason: "must be a JSON object".to_owned(),
            });
        }
        let config: Self = serde_path_to_error::deserialize(document)
            .map_err(|error| ConfigError::from_serde(&error))?;
        config.validate()?;
        Ok(config)
    }

    /// Takes the credential from the variable `control_plane_credential_env` names, as
    /// `environment` reads the VM's environment; unchanged when it names none. Surrounding
    /// whitespace (a Secret's trailing newline) is not part of the credential.
    pub fn with_credential_from_env(
        mut self,
        environment: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let variable = &self.control_plane_credential_env;
        if variable.is_empty() {
            return Ok(self);
        }
        if self.control_plane_credential.authorization().is_some() {
            return Err(ConfigError::invalid_field(
                "control_plane_credential_env",
                "must not be set together with control_plane_credential",
            ));
        }
        let Some(value) = environment(variable).filter(|value| !value.trim().is_empty()) else {
            return Err(ConfigError::invalid_field(
                "control_plane_credential_env",
                &format!("names {variable}, which the VM's environment does not set"),
            ));
        };
        self.control_plane_credential = ControlPlaneCredential::from(value.trim().to_owned());
        self.validate()?;
        Ok(self)
    }

    /// [`Self::callout_timeout_ms`] as a duration.
    pub fn callout_timeout(&self) -> Duration {
        Duration::from_millis(self.callout_timeout_ms)
    }

    /// The routes that fail open; `None` when there are none.
    pub fn fail_open_scopes(&self) -> Option<Scopes> {
        if self.fail_open_routes.is_empty() {
            return None;
        }
        Scopes::parse(&self.fail_open_routes).ok()
    }

    /// How long a change-feed call may take before it counts as failed.
    pub fn watch_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.watch_wait_ms)) + self.callout_timeout()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Err(error) = Scopes::parse(&self.fail_open_routes) {
            return Err(ConfigError::invalid_field(
                "fail_open_routes",
                &error.to_string(),
            ));
        }
        if !(1_000..=60_000).contains(&self.watch_wait_ms) {
            return Err(ConfigError::invalid_field(
                "watch_wait_ms",
                "must be 1000 to 60000",
            ));
        }
        if !(100..=600_000).contains(&self.allowance_idle_ms) {
            return Err(ConfigError::invalid_field(
                "allowance_idle_ms",
                "must be 100 to 600000",
            ));
        }
        if !self
            .control_plane_credential
            .authorization
            .bytes()
            .all(|byte| byte.is_ascii_graphic() || byte == b' ')
        {
            return Err(ConfigError::invalid_field(
                "control_plane_credential",
                "must be visible ASCII characters",
            ));
        }
        if self.callout_timeout_ms == 0 {
            return Err(ConfigError::invalid_field(
                "callout_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.max_credential_bytes == 0 {
            return Err(ConfigError::invalid_field(
                "max_credential_bytes",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Why a plugin configuration was refused, naming the field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: Option<String>,
    reason: String,
}

impl ConfigError {
    /// The field at fault, if the error is about one field.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    fn invalid_field(field: &str, reason: &str) -> Self {
        Self {
            field: Some(field.to_owned()),
            reason: reason.to_owned(),
        }
    }

    fn from_serde(error: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = error.path().to_string();
        Self {
            // "." is the path of errors about the document as a whole.
            field: (path != ".").then_some(path),
            reason: error.inner().to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(
                formatter,
                "invalid plugin configuration: `{field}`: {}",
                self.reason
            ),
            None => write!(formatter, "invalid plugin configuration: {}", self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PluginConfig, ConfigError> {
        PluginConfig::from_json(json.as_bytes())
    }

    #[test]
    fn empty_configuration_means_every_default() {
        for json in ["", "  \n", "{}"] {
            assert_eq!(parse(json), Ok(PluginConfig::default()), "for {json:?}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = PluginConfig::default();

        assert_eq!(config.control_plane_cluster, "tollgate_control_plane");
        assert_eq!(config.callout_timeout(), Duration::from_secs(1));
        assert_eq!(config.max_credential_bytes, 8192);
    }

    #[test]
    fn reads_every_field() {
        let config = parse(
            r#"{"control_plane_cluster": "cp", "control_plane_credential": "c", "callout_timeout_ms": 250,
                "max_credential_bytes": 512, "trusted_hops": 2, "max_stale_secs": 60,
                "fail_open_routes": ["GET /status"], "watch_wait_ms": 5000,
                "rate_limit_headers": "refusals", "bandwidth_reserve_bytes": 4096,
                "allowance_idle_ms": 5000}"#,
        )
        .expect("valid configuration");

        assert_eq!(
            config,
            PluginConfig {
                control_plane_cluster: ControlPlaneCluster::try_from("cp".to_owned())
                    .expect("a cluster name"),
                control_plane_credential: ControlPlaneCredential::from("c".to_owned()),
                control_plane_credential_env: String::new(),
                callout_timeout_ms: 250,
                max_credential_bytes: 512,
                trusted_hops: 2,
                max_stale_secs: 60,
                fail_open_routes: vec!["GET /status".to_owned()],
                watch_wait_ms: 5000,
                rate_limit_headers: RateLimitHeaders::Refusals,
                bandwidth_reserve_bytes: 4096,
                allowance_idle_ms: 5000,
            }
        );
        assert!(config
            .fail_open_scopes()
            .is_some_and(|routes| routes.permits("GET", "/status")));
    }

    #[test]
    fn omitted_fields_keep_their_defaults() {
        let config = parse(r#"{"callout_timeout_ms": 250}"#).expect("valid configuration");

        assert_eq!(config.control_plane_cluster, "tollgate_control_plane");
        assert_eq!(config.callout_timeout_ms, 250);
        assert_eq!(config.max_credential_bytes, 8192);
    }

    #[test]
    fn unknown_field_is_refused_by_name() {
        let error = parse(r#"{"callout_timeout": 250}"#).expect_err("unknown field");

        assert_eq!(error.field(), Some("callout_timeout"));
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let error = parse(r#"{"callout_timeout_ms": "fast"}"#).expect_err("wrong type");

        assert_eq!(error.field(), Some("callout_timeout_ms"));
        assert!(
            error.to_string().contains("`callout_timeout_ms`"),
            "{error}"
        );
    }

    #[test]
    fn negative_size_names_the_field() {
        let error = parse(r#"{"max_credential_bytes": -1}"#).expect_err("negative");

        assert_eq!(error.field(), Some("max_credential_bytes"));
    }

    #[test]
    fn zero_timeout_is_refused() {
        let error = parse(r#"{"callout_timeout_ms": 0}"#).expect_err("zero timeout");

        assert_eq!(error.field(), Some("callout_timeout_ms"));
    }

    #[test]
    fn zero_credential_size_is_refused() {
        let error = parse(r#"{"max_credential_bytes": 0}"#).expect_err("zero size");

        assert_eq!(error.field(), Some("max_credential_bytes"));
    }

    #[test]
    fn blank_cluster_is_refused() {
        let error = parse(r#"{"control_plane_cluster": " "}"#).expect_err("blank cluster");

        assert_eq!(error.field(), Some("control_plane_cluster"));
    }

    #[test]
    fn a_bad_fail_open_route_names_the_field() {
        let error = parse(r#"{"fail_open_routes": ["status"]}"#).expect_err("must fail");
        assert_eq!(error.field(), Some("fail_open_routes"));
    }

    #[test]
    fn an_unknown_rate_limit_headers_choice_names_the_field() {
        let error = parse(r#"{"rate_limit_headers": "never"}"#).expect_err("must fail");
        assert_eq!(error.field(), Some("rate_limit_headers"));
    }

    #[test]
    fn malformed_json_is_refused() {
        for json in [
            "{",
            "null",
            "[]",
            r#"["cp", 1, 1]"#,
            r#"{"callout_timeout_ms": 1} x"#,
        ] {
            let error = parse(json).expect_err("not a configuration object");
            assert_eq!(error.field(), None, "for {json:?}");
        }
    }

    #[test]
    fn the_control_plane_credential_is_sent_as_a_bearer_and_never_shown() {
        let config = parse(r#"{"control_plane_credential": "s3cret-credential"}"#).expect("valid");
        assert_eq!(
            config.control_plane_credential.authorization(),
            Some(b"Bearer s3cret-credential".as_slice())
        );
        assert!(!format!("{config:?}").contains("s3cret"));
        assert_eq!(
            PluginConfig::default()
                .control_plane_credential
                .authorization(),
            None
        );
        let refused = parse("{\"control_plane_credential\": \"new\\nline\"}").expect_err("refused");
        assert_eq!(refused.field.as_deref(), Some("control_plane_credential"));
    }

    #[test]
    fn the_credential_may_come_from_the_vm_environment() {
        let config =
            parse(r#"{"control_plane_credential_env": "TOLLGATE_CREDENTIAL"}"#).expect("valid");
        let environment =
            |name: &str| (name == "TOLLGATE_CREDENTIAL").then(|| "from-a-secret\n".to_owned());
        let resolved = config
            .clone()
            .with_credential_from_env(environment)
            .expect("resolved");
        assert_eq!(
            resolved.control_plane_credential.authorization(),
            Some(&b"Bearer from-a-secret"[..])
        );

        let unset = config
            .with_credential_from_env(|_| None)
            .expect_err("unset");
        assert_eq!(unset.field(), Some("control_plane_credential_env"));
        assert!(!unset.to_string().contains("from-a-secret"));
        let both =
            parse(r#"{"control_plane_credential": "c", "control_plane_credential_env": "V"}"#)
                .expect("parsed")
                .with_credential_from_env(environment)
                .expect_err("both");
        assert_eq!(both.field(), Some("control_plane_credential_env"));
        let unprintable = parse(r#"{"control_plane_credential_env": "V"}"#)
            .expect("parsed")
            .with_credential_from_env(|_| Some("a\u{7}b".to_owned()))
            .expect_err("refused");
        assert_eq!(unprintable.field(), Some("control_plane_credential"));
    }
}
