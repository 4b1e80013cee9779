//! The budget of failed authentications per client address: logins refused and admin-API
//! credentials refused. It lives in the rate-limit counters, so replicas that share Redis share
//! it. An address over budget is refused before any password or key is looked at.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::live::Live;
use crate::limits::counters::{Counters, Draw, Limit};

const HOUR_SECS: u32 = 3600;
/// IPv6 addresses count by their /64: one client commonly holds a whole one.
const IPV6_CLIENT_PREFIX_SEGMENTS: usize = 4;

/// Failed authentications per client address: a token bucket of `burst` that refills at
/// `per_hour`.
#[derive(Clone)]
pub struct AddressFailures {
    counters: Arc<dyn Counters>,
    limit: Live<Limit>,
}

impl AddressFailures {
    pub fn new(counters: Arc<dyn Counters>, per_hour: u32, burst: u32) -> Self {
        Self {
            counters,
            limit: Live::new(budget(per_hour, burst)),
        }
    }

    /// Replaces the budget of this and every clone (a configuration reload).
    pub fn set_budget(&self, per_hour: u32, burst: u32) {
        self.limit.set(budget(per_hour, burst));
    }

    /// How long `address` must wait before its next attempt, when it has used its budget.
    /// When the counters cannot answer, the address is let through (the account lockout and
    /// the bound on password checks still hold).
    pub async fn wait(&self, address: IpAddr) -> Option<Duration> {
        // Taking nothing reads the bucket without changing it.
        match self.counters.check(&[self.draw(address, 0)]).await {
            Ok(checked) => self.wait_after(checked.backlog_ms.first().copied().unwrap_or(0)),
            Err(error) => {
                tracing::warn!(%error, "cannot read the failed authentications of an address");
                None
            }
        }
    }

    /// Counts one failed authentication from `address`.
    pub async fn record(&self, address: IpAddr) {
        // A refusal means the budget is already used up, which the next `wait` reports.
        if let Err(error) = self.counters.check(&[self.draw(address, 1)]).await {
            tracing::warn!(%error, "cannot count a failed authentication of an address");
        }
    }

    fn draw(&self, address: IpAddr, count: u32) -> Draw {
        Draw {
            subject: address_subject("auth-failures", address),
            limit: *self.limit.get(),
            count,
        }
    }

    /// The wait until a bucket `backlog_ms` ahead of now has room for one more failure:
    /// none while the backlog is at most `burst - 1` emission intervals.
    fn wait_after(&self, backlog_ms: u64) -> Option<Duration> {
        let limit = self.limit.get();
        let window_ms = u128::from(limit.window_seconds) * 1000;
        let room_ms =
            u128::from(limit.burst.saturating_sub(1)) * window_ms / u128::from(limit.requests);
        let wait_ms = u128::from(backlog_ms).saturating_sub(room_ms);
        (wait_ms > 0).then(|| Duration::from_millis(u64::try_from(wait_ms).unwrap_or(u64::MAX)))
    }
}

/// A bucket of `burst` failures that refills at `per_hour`.
fn budget(per_hour: u32, burst: u32) -> Limit {
    Limit {
        window_seconds: HOUR_SECS,
        requests: per_hour.into(),
        burst: burst.into(),
    }
}

/// The bucket of `kind` (e.g. failures) of an address.
pub fn address_subject(kind: &str, address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => format!("{kind}:{v4}"),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let prefix: Vec<String> = segments[..IPV6_CLIENT_PREFIX_SEGMENTS]
                .iter()
                .map(|segment| format!("{segment:x}"))
                .collect();
            format!("{kind}:{}::/64", prefix.join(":"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::counters::LocalCounters;

    fn budget(per_hour: u32, burst: u32) -> AddressFailures {
        AddressFailures::new(Arc::new(LocalCounters::new()), per_hour, burst)
    }

    #[tokio::test]
    async fn an_address_waits_once_its_burst_is_used_and_reading_takes_nothing() {
        let failures = budget(60, 3);
        let address: IpAddr = [192, 0, 2, 7].into();
        for _ in 0..3 {
            assert_eq!(failures.wait(address).await, None);
            assert_eq!(failures.wait(address).await, None);
            failures.record(address).await;
        }
        let wait = failures.wait(address).await.expect("over budget");
        assert!(
            wait > Duration::from_secs(59) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(failures.wait([192, 0, 2, 8].into()).await, None);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("address");
        let other: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("address");
        let subject = |address| address_subject("auth-failures", address);
        assert_eq!(subject(one), "auth-failures:2001:db8:1:2::/64");
        assert_eq!(subject(one), subject(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("address");
        assert_eq!(subject(mapped), "auth-failures:192.0.2.7");
    }
}
