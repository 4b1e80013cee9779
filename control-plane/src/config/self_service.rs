//! `self_service.*`: what people may do for themselves by email: register, verify their
//! address, reset a forgotten password. All off by default; each needs `mail.*`.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::identity::self_service::SelfService;
use crate::mail::MailSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfServiceConfig {
    /// `POST /api/v1/auth/register`.
    pub registration: bool,
    /// A registered account logs in only once its email is verified.
    pub require_email_verification: bool,
    /// `POST /api/v1/auth/password-reset`: a link to set a new password, by email.
    pub password_reset: bool,
    /// Where the mailed links lead, the token appended: `{links_base_url}/verify-email?token=`
    /// and `{links_base_url}/reset-password?token=` (a page that posts the token back).
    pub links_base_url: String,
    pub verify_link_ttl_secs: u32,
    pub reset_link_ttl_secs: u32,
    /// Registrations and messages one client address may cause, per hour.
    pub mails_per_address_per_hour: u32,
    /// Messages one recipient may be sent, per hour, whoever asks.
    pub mails_per_recipient_per_hour: u32,
}

impl Default for SelfServiceConfig {
    fn default() -> Self {
        Self {
            registration: false,
            require_email_verification: true,
            password_reset: false,
            links_base_url: String::new(),
            verify_link_ttl_secs: 24 * 3600,
            reset_link_ttl_secs: 3600,
            mails_per_address_per_hour: 20,
            mails_per_recipient_per_hour: 5,
        }
    }
}

impl SelfServiceConfig {
    pub fn validate(&self, mail: Option<&MailSettings>) -> Result<SelfService, ConfigError> {
        let mails = self.registration || self.password_reset;
        if mails && mail.is_none() {
            let key = if self.registration {
                "self_service.registration"
            } else {
                "self_service.password_reset"
            };
            return Err(ConfigError::invalid(key, "needs mail.smtp_host"));
        }
        let base = self.links_base_url.trim_end_matches('/');
        if mails {
            let parsed = url::Url::parse(base).map_err(|_| {
                ConfigError::invalid(
                    "self_service.links_base_url",
                    "must be an absolute http(s) URL",
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
                return Err(ConfigError::invalid(
                    "self_service.links_base_url",
                    "must be an absolute http(s) URL without a query",
                ));
            }
        }
        let in_range = |key: &str, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    format!("self_service.{key}"),
                    format!("must be {min} to {max}"),
                ))
            }
        };
        in_range(
            "verify_link_ttl_secs",
            self.verify_link_ttl_secs,
            300,
            7 * 24 * 3600,
        )?;
        in_range(
            "reset_link_ttl_secs",
            self.reset_link_ttl_secs,
            300,
            24 * 3600,
        )?;
        in_range(
            "mails_per_address_per_hour",
            self.mails_per_address_per_hour,
            1,
            10_000,
        )?;
        in_range(
            "mails_per_recipient_per_hour",
            self.mails_per_recipient_per_hour,
            1,
            100,
        )?;
        Ok(SelfService {
            registration: self.registration,
            require_email_verification: self.require_email_verification,
            password_reset: self.password_reset,
            links_base_url: base.to_string(),
            verify_link_ttl_secs: self.verify_link_ttl_secs.into(),
            reset_link_ttl_secs: self.reset_link_ttl_secs.into(),
            mails_per_address_per_hour: self.mails_per_address_per_hour,
            mails_per_recipient_per_hour: self.mails_per_recipient_per_hour,
        })
    }
}
