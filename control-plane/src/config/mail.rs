//! `mail.*`: the SMTP server that carries the links people are mailed (email verification,
//! password reset). No host: no mail, and the features that need it cannot be enabled.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::mail::{MailSecurity, MailSettings};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The SMTP server; empty: none.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls` (default: upgrade before anything is sent, or fail), `tls` (TLS from the
    /// first byte, usually port 465) or `none` (plain text: a relay on this host only).
    pub security: String,
    /// The account on the SMTP server, when it asks for one.
    pub username: String,
    pub password: String,
    /// `From` of every message, e.g. `Tollgate <no-reply@example.com>`.
    pub from: String,
    /// A PEM file of the CAs the server's certificate must chain to (default: the public
    /// roots).
    pub ca_file: Option<PathBuf>,
    /// How long one delivery may take.
    pub timeout_secs: u32,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_host: String::new(),
            smtp_port: 587,
            security: "starttls".into(),
            username: String::new(),
            password: String::new(),
            from: String::new(),
            ca_file: None,
            timeout_secs: 10,
        }
    }
}

impl MailConfig {
    /// The server to deliver through, or `None` when there is none.
    pub fn validate(&self) -> Result<Option<MailSettings>, ConfigError> {
        if self.smtp_host.is_empty() {
            return Ok(None);
        }
        let security = match self.security.as_str() {
            "starttls" => MailSecurity::StartTls,
            "tls" => MailSecurity::Tls,
            "none" => MailSecurity::None,
            _ => {
                return Err(ConfigError::invalid(
                    "mail.security",
                    "must be starttls, tls or none",
                ))
            }
        };
        if security == MailSecurity::None && !is_loopback(&self.smtp_host) {
            return Err(ConfigError::invalid(
                "mail.security",
                "may be none only for a server on this host (localhost, 127.0.0.1, ::1)",
            ));
        }
        let from: Mailbox = self.from.parse().map_err(|_| {
            ConfigError::invalid(
                "mail.from",
                "must be an address such as `Tollgate <no-reply@example.com>`",
            )
        })?;
        if self.username.is_empty() != self.password.is_empty() {
            return Err(ConfigError::invalid(
                "mail.password",
                "must be set exactly when mail.username is",
            ));
        }
        let ca_pem = match &self.ca_file {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|error| {
                ConfigError::invalid("mail.ca_file", format!("cannot be read: {error}"))
            })?),
        };
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(ConfigError::invalid(
                "mail.timeout_secs",
                "must be 1 to 300",
            ));
        }
        Ok(Some(MailSettings {
            host: self.smtp_host.clone(),
            port: self.smtp_port,
            security,
            credentials: (!self.username.is_empty())
                .then(|| (self.username.clone(), self.password.clone())),
            from,
            ca_pem,
            timeout: Duration::from_secs(self.timeout_secs.into()),
        }))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}
