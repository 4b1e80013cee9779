//! `http.*` and `grpc.*`: where the control plane accepts connections, and what Envoys present
//! on the gRPC port.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::domain::web_origin::WebOrigin;

/// The admin API, login, health and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
    /// How many proxies in front of the control plane append the address they saw to
    /// `X-Forwarded-For`; 0 (the default) takes the peer as the client, as the filter's
    /// `trusted_hops` does. Allowlists are checked against that address.
    pub trusted_hops: u8,
    /// Origins (`https://admin.example.com`) besides the control plane's own whose pages may
    /// send changes authenticated by the session cookie.
    pub allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
            trusted_hops: 0,
            allowed_origins: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The address to listen on.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        for (index, origin) in self.allowed_origins.iter().enumerate() {
            if WebOrigin::parse(origin).is_none_or(|parsed| parsed.as_str() != origin) {
                return Err(ConfigError::invalid(
                    format!("http.allowed_origins[{index}]"),
                    format!(
                        "must be an origin like https://admin.example.com (scheme, lower-case \
                         host and a port other than the default, nothing else), not {origin:?}"
                    ),
                ));
            }
        }
        parse_listen("http.listen", &self.listen)
    }

    /// The allowed origins, parsed.
    pub fn allowed_origins(&self) -> Vec<WebOrigin> {
        self.allowed_origins
            .iter()
            .filter_map(|origin| WebOrigin::parse(origin))
            .collect()
    }
}

/// ADS and the service Envoy's filter calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub listen: String,
    /// What every Envoy presents on this port. Every replica must share it. When unset, one is
    /// generated into `data_dir` on first start.
    pub credential: Option<String>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:18000".into(),
            credential: None,
        }
    }
}

impl GrpcConfig {
    /// The address to listen on.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        let weak = |credential: &String| {
            credential.len() < MIN_CREDENTIAL_CHARS
                || !credential.chars().all(|c| c.is_ascii_graphic())
        };
        if self.credential.as_ref().is_some_and(weak) {
            return Err(ConfigError::invalid(
                "grpc.credential",
                format!("must be at least {MIN_CREDENTIAL_CHARS} visible ASCII characters"),
            ));
        }
        parse_listen("grpc.listen", &self.listen)
    }
}

/// The shortest gRPC credential accepted.
const MIN_CREDENTIAL_CHARS: usize = 32;

fn parse_listen(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("must be an address like 127.0.0.1:8090, not {value:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_listen_address_names_its_key() {
        let grpc = GrpcConfig {
            listen: "localhost".into(),
            credential: None,
        };
        let error = grpc.validate().expect_err("must fail").to_string();
        assert!(error.contains("grpc.listen"), "{error}");
    }

    #[test]
    fn allowed_origins_are_bare_origins_in_their_serialised_form() {
        for bad in [
            "admin.example.com",
            "https://admin.example.com/",
            "https://admin.example.com/ui",
            "https://Admin.example.com",
            "https://admin.example.com:443",
            "null",
        ] {
            let http = HttpConfig {
                allowed_origins: vec!["http://127.0.0.1:8090".into(), bad.into()],
                ..HttpConfig::default()
            };
            let error = http.validate().expect_err(bad).to_string();
            assert!(error.contains("http.allowed_origins[1]"), "{error}");
        }
        let http = HttpConfig {
            allowed_origins: vec!["https://admin.example.com".into()],
            ..HttpConfig::default()
        };
        assert!(http.validate().is_ok());
    }

    #[test]
    fn a_short_or_unprintable_credential_is_refused() {
        for credential in ["short", &format!("{}\n", "x".repeat(40))] {
            let grpc = GrpcConfig {
                credential: Some(credential.to_string()),
                ..GrpcConfig::default()
            };
            let error = grpc.validate().expect_err("must fail").to_string();
            assert!(error.contains("grpc.credential"), "{error}");
        }
        let grpc = GrpcConfig {
            credential: Some("x".repeat(32)),
            ..GrpcConfig::default()
        };
        assert!(grpc.validate().is_ok());
    }
}
