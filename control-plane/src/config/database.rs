//! `database.*`: where users, keys, backends and usage are stored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ConfigError;

const SUPPORTED_SCHEMES: [&str; 3] = ["sqlite:", "postgres://", "postgresql://"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`; empty means the SQLite file in `data_dir`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 10,
        }
    }
}

impl DatabaseConfig {
    /// The URL of the database to open: `url`, or the SQLite file in `data_dir`.
    pub fn validate(&self, data_dir: &Path) -> Result<String, ConfigError> {
        let url = if self.url.is_empty() {
            format!("sqlite://{}", data_dir.join("tollgate.db").display())
        } else {
            self.url.clone()
        };
        if !SUPPORTED_SCHEMES
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(ConfigError::invalid(
                "database.url",
                "must start with sqlite:// or postgres://",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_database_names_its_key() {
        let database = DatabaseConfig {
            url: "mysql://x".into(),
            ..DatabaseConfig::default()
        };
        let error = database
            .validate(Path::new("data"))
            .expect_err("must fail")
            .to_string();
        assert!(error.contains("database.url"), "{error}");
    }
}
