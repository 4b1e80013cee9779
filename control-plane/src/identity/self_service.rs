//! What people may do for themselves by email (`self_service.*`, validated), and the budget of
//! messages that keeps those routes from being used to flood an inbox or the SMTP server.

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::address_failures::address_subject;
use crate::limits::counters::{Counters, Draw, Limit};

const HOUR_SECS: u32 = 3600;

/// Self-service settings.
#[derive(Debug, Clone, Default)]
pub struct SelfService {
    pub registration: bool,
    pub require_email_verification: bool,
    pub password_reset: bool,
    /// Without a trailing `/`.
    pub links_base_url: String,
    pub verify_link_ttl_secs: i64,
    pub reset_link_ttl_secs: i64,
    pub mails_per_address_per_hour: u32,
    pub mails_per_recipient_per_hour: u32,
}

impl SelfService {
    /// The page a mailed link leads to, with its token.
    pub fn link(&self, page: &str, token: &str) -> String {
        format!("{}/{page}?token={token}", self.links_base_url)
    }
}

/// Messages per client address and per recipient, in the shared rate-limit counters (so
/// replicas that share Redis share them).
#[derive(Clone)]
pub struct MailBudget {
    counters: Arc<dyn Counters>,
    per_address: Limit,
    per_recipient: Limit,
}

impl MailBudget {
    pub fn new(counters: Arc<dyn Counters>, settings: &SelfService) -> Self {
        let hourly = |count: u32| Limit {
            window_seconds: HOUR_SECS,
            requests: count.into(),
            burst: count.into(),
        };
        Self {
            counters,
            per_address: hourly(settings.mails_per_address_per_hour),
            per_recipient: hourly(settings.mails_per_recipient_per_hour),
        }
    }

    /// Takes one message from `address`'s budget; false when it is spent. When the counters
    /// cannot answer, the message is let through (the recipient's budget is then the bound).
    pub async fn take_for_address(&self, address: IpAddr) -> bool {
        self.take(address_subject("mail-senders", address), self.per_address)
            .await
            .unwrap_or(true)
    }

    /// Takes one message from `recipient`'s budget; false when it is spent, or when the
    /// counters cannot answer (nobody's inbox is flooded while they are down).
    pub async fn take_for_recipient(&self, recipient: &str) -> bool {
        let digest = hex::encode(Sha256::digest(recipient.to_lowercase().as_bytes()));
        self.take(format!("mail-recipients:{digest}"), self.per_recipient)
            .await
            .unwrap_or(false)
    }

    async fn take(&self, subject: String, limit: Limit) -> Option<bool> {
        let draw = Draw {
            subject,
            limit,
            count: 1,
        };
        match self.counters.check(&[draw]).await {
            Ok(checked) => Some(checked.admitted),
            Err(error) => {
                tracing::warn!(%error, "cannot count a message against its budget");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::counters::LocalCounters;

    #[tokio::test]
    async fn each_address_and_each_recipient_has_its_own_budget() {
        let settings = SelfService {
            mails_per_address_per_hour: 2,
            mails_per_recipient_per_hour: 1,
            ..SelfService::default()
        };
        let budget = MailBudget::new(Arc::new(LocalCounters::new()), &settings);
        let one: IpAddr = [192, 0, 2, 1].into();
        assert!(budget.take_for_address(one).await);
        assert!(budget.take_for_address(one).await);
        assert!(!budget.take_for_address(one).await);
        assert!(budget.take_for_address([192, 0, 2, 2].into()).await);
        assert!(budget.take_for_recipient("Ann@example.com").await);
        assert!(!budget.take_for_recipient("ann@EXAMPLE.com").await);
        assert!(budget.take_for_recipient("bob@example.com").await);
    }
}
