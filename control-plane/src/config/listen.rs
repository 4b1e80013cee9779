//! `http.*` and `grpc.*`: where the control plane accepts connections, and what Envoys present
//! on the gRPC port.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The admin API, login, health and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
        }
    }
}

impl HttpConfig {
    /// The address to listen on.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        parse_listen("http.listen", &self.listen)
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
