//! `http.listen` and `grpc.listen`: where the control plane accepts connections.

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

/// The service Envoy's filter calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub listen: String,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:18000".into(),
        }
    }
}

impl GrpcConfig {
    /// The address to listen on.
    pub fn validate(&self) -> Result<SocketAddr, ConfigError> {
        parse_listen("grpc.listen", &self.listen)
    }
}

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
        };
        let error = grpc.validate().expect_err("must fail").to_string();
        assert!(error.contains("grpc.listen"), "{error}");
    }
}
