//! The addresses whose failed authentications an Envoy counted lately. When address limits
//! count only failures, these are the only addresses whose buckets can be refusing, so every
//! other request skips its bucket; and when the set is empty (the usual case), no request
//! reads its client address before authentication. A failure counted in the bucket that addresses share once
//! an Envoy holds its most address buckets may make that bucket refuse any address, so after
//! one every request reads the bucket it counts in.
//!
//! Envoy's workers share one set in shared data; each keeps a copy, refreshed on its tick.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use prost::Message;

/// Addresses the set holds before it gives up naming them: past this, every address counts as
/// failing until the flood's failures are older than the horizon.
pub const CAPACITY: usize = 256;

/// A failure is written to shared data at most this often per address, so other workers may
/// see its time up to this much late, plus one tick.
pub const SHARE_EVERY_US: i64 = 1_000_000;

/// How much older than the last failure the time other workers see may be: shared at most once
/// a second, read every 100 ms.
const STALENESS_US: i64 = SHARE_EVERY_US + 100_000;

/// The bucket an address's failures count in, as an address: itself for IPv4, its /64 for IPv6.
pub fn bucket_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// How long after its last failure an address bucket that counts only failed authentications
/// can still be refusing. A refused request takes nothing, so a bucket stops refusing within
/// one emission interval (at most one window) of its last failure. A `fast` share refills at
/// 1/`envoys` of the rate, so the horizon grows with `envoys`.
pub fn failure_horizon_us(longest_window_secs: u32, envoys: u32) -> i64 {
    i64::from(longest_window_secs) * 1_000_000 * i64::from(envoys.max(1)) + STALENESS_US
}

/// The bucket a failed authentication was counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureBucket {
    /// The address's own (its /64's for IPv6).
    Own(IpAddr),
    /// The one every address without a bucket of its own shares.
    Overflow,
}

/// Failing addresses (bucket addresses, see [`bucket_address`]) and when each last failed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FailingAddresses {
    last_failure_us: HashMap<IpAddr, i64>,
    /// When a failure that names no single address last came: one that found the set full,
    /// or one counted in the shared overflow bucket. Every address may be refusing until then
    /// plus the horizon.
    overflowed_at_us: Option<i64>,
    /// The latest of all the times above, so that a quiet set is known at a glance.
    latest_us: Option<i64>,
}

fn within(at: i64, now_us: i64, span_us: i64) -> bool {
    now_us.saturating_sub(at) <= span_us
}

impl FailingAddresses {
    /// Whether `address`'s bucket may be refusing at `now_us`.
    pub fn may_refuse(&self, address: IpAddr, now_us: i64, horizon_us: i64) -> bool {
        self.failed_when(address, |at| within(at, now_us, horizon_us))
    }

    /// Whether `address` failed in its own bucket within the horizon: that bucket is the one
    /// that may be refusing it, with no need to ask which bucket it counts in.
    pub fn failed_in_own_bucket(&self, address: IpAddr, now_us: i64, horizon_us: i64) -> bool {
        self.last_failure_us
            .get(&bucket_address(address))
            .is_some_and(|&at| within(at, now_us, horizon_us))
    }

    /// Whether no address may be refusing at `now_us`, so a request need not know its own.
    pub fn is_quiet(&self, now_us: i64, horizon_us: i64) -> bool {
        !self
            .latest_us
            .is_some_and(|at| within(at, now_us, horizon_us))
    }

    /// Whether the set shows a failure in `bucket` less than [`SHARE_EVERY_US`] before
    /// `now_us`.
    pub fn knows_recent(&self, bucket: FailureBucket, now_us: i64) -> bool {
        let recent = |at: i64| now_us.saturating_sub(at) < SHARE_EVERY_US;
        match bucket {
            FailureBucket::Own(address) => self.failed_when(address, recent),
            FailureBucket::Overflow => self.overflowed_at_us.is_some_and(recent),
        }
    }

    /// Whether the overflow, or `address`'s own last failure, happened at a time `when` accepts.
    fn failed_when(&self, address: IpAddr, when: impl Fn(i64) -> bool) -> bool {
        self.overflowed_at_us.is_some_and(&when)
            || self
                .last_failure_us
                .get(&bucket_address(address))
                .is_some_and(|&at| when(at))
    }

    /// Records a failure counted in `bucket` at `now_us`, first forgetting failures past the
    /// horizon.
    pub fn record(&mut self, bucket: FailureBucket, now_us: i64, horizon_us: i64) {
        self.forget_before(now_us, horizon_us);
        match bucket {
            FailureBucket::Own(address) => self.record_at(bucket_address(address), now_us),
            FailureBucket::Overflow => self.overflowed(now_us),
        }
    }

    /// Takes in every failure `other` knows of, first forgetting failures past the horizon.
    pub fn merge(&mut self, other: &Self, now_us: i64, horizon_us: i64) {
        self.forget_before(now_us, horizon_us);
        for (&address, &at) in &other.last_failure_us {
            if within(at, now_us, horizon_us) {
                self.record_at(address, at);
            }
        }
        if let Some(at) = other.overflowed_at_us {
            self.overflowed(at);
        }
    }

    fn forget_before(&mut self, now_us: i64, horizon_us: i64) {
        self.last_failure_us
            .retain(|_, at| within(*at, now_us, horizon_us));
    }

    fn record_at(&mut self, address: IpAddr, at_us: i64) {
        if self.last_failure_us.len() >= CAPACITY && !self.last_failure_us.contains_key(&address) {
            self.overflowed(at_us);
            return;
        }
        let at = self.last_failure_us.entry(address).or_insert(at_us);
        *at = (*at).max(at_us);
        self.latest_us = self.latest_us.max(Some(at_us));
    }

    fn overflowed(&mut self, at_us: i64) {
        self.overflowed_at_us = self.overflowed_at_us.max(Some(at_us));
        self.latest_us = self.latest_us.max(Some(at_us));
    }

    /// The encoding kept in shared data.
    pub fn to_bytes(&self) -> Vec<u8> {
        SharedFailures {
            addresses: self
                .last_failure_us
                .iter()
                .map(|(address, at)| SharedFailure {
                    address: match address {
                        IpAddr::V4(v4) => v4.octets().to_vec(),
                        IpAddr::V6(v6) => v6.octets().to_vec(),
                    },
                    last_failure_us: *at,
                })
                .collect(),
            overflowed_at_us: self.overflowed_at_us,
        }
        .encode_to_vec()
    }

    /// Reads the shared encoding; bytes that do not decode are `None`, entries that are not an
    /// address are skipped.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let shared = SharedFailures::decode(bytes).ok()?;
        let mut set = Self::default();
        for failure in shared.addresses.iter().take(CAPACITY) {
            let address = match failure.address.len() {
                4 => <[u8; 4]>::try_from(failure.address.as_slice()).map(IpAddr::from),
                16 => <[u8; 16]>::try_from(failure.address.as_slice()).map(IpAddr::from),
                _ => continue,
            };
            if let Ok(address) = address {
                set.record_at(bucket_address(address), failure.last_failure_us);
            }
        }
        if let Some(at) = shared.overflowed_at_us {
            set.overflowed(at);
        }
        Some(set)
    }
}

/// One worker's view of the failing addresses: its own failures at once, the other workers'
/// from shared data on its tick.
#[derive(Debug, Default)]
pub struct WorkerFailures {
    known: FailingAddresses,
    /// The set as last read from or written to shared data: what the other workers know.
    shared: FailingAddresses,
}

impl WorkerFailures {
    pub fn known(&self) -> &FailingAddresses {
        &self.known
    }

    /// Records a failure counted here in `bucket`; `true` when shared data must hear of it,
    /// because what it holds of the bucket is a second or more old.
    pub fn counted(&mut self, bucket: FailureBucket, now_us: i64, horizon_us: i64) -> bool {
        self.known.record(bucket, now_us, horizon_us);
        !self.shared.knows_recent(bucket, now_us)
    }

    /// Takes in the set just read from or written to shared data.
    pub fn saw_shared(&mut self, shared: FailingAddresses, now_us: i64, horizon_us: i64) {
        self.known.merge(&shared, now_us, horizon_us);
        self.shared = shared;
    }
}

#[derive(Clone, PartialEq, Message)]
struct SharedFailures {
    #[prost(message, repeated, tag = "1")]
    addresses: Vec<SharedFailure>,
    #[prost(int64, optional, tag = "2")]
    overflowed_at_us: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct SharedFailure {
    /// 4 or 16 bytes, network order.
    #[prost(bytes = "vec", tag = "1")]
    address: Vec<u8>,
    #[prost(int64, tag = "2")]
    last_failure_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HORIZON: i64 = 60_000_000;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn own(text: &str) -> FailureBucket {
        FailureBucket::Own(ip(text))
    }

    #[test]
    fn an_empty_set_is_quiet_and_refuses_nobody() {
        let set = FailingAddresses::default();

        assert!(set.is_quiet(0, HORIZON));
        assert!(!set.may_refuse(ip("192.0.2.1"), 0, HORIZON));
    }

    #[test]
    fn only_the_failing_address_may_be_refused_until_the_horizon() {
        let mut set = FailingAddresses::default();
        set.record(own("192.0.2.1"), 1_000, HORIZON);

        assert!(!set.is_quiet(1_000 + HORIZON, HORIZON));
        assert!(set.may_refuse(ip("192.0.2.1"), 1_000 + HORIZON, HORIZON));
        assert!(!set.may_refuse(ip("192.0.2.2"), 1_000, HORIZON));
        assert!(!set.may_refuse(ip("192.0.2.1"), 1_001 + HORIZON, HORIZON));
        assert!(set.is_quiet(1_001 + HORIZON, HORIZON));
    }

    #[test]
    fn ipv6_addresses_fail_per_64() {
        let mut set = FailingAddresses::default();
        set.record(own("2001:db8:1:2::7"), 0, HORIZON);

        assert!(set.may_refuse(ip("2001:db8:1:2:ffff::1"), 0, HORIZON));
        assert!(!set.may_refuse(ip("2001:db8:1:3::7"), 0, HORIZON));
    }

    #[test]
    fn a_failure_is_shared_again_only_after_a_second() {
        let mut set = FailingAddresses::default();
        set.record(own("192.0.2.1"), 0, HORIZON);

        assert!(set.knows_recent(own("192.0.2.1"), SHARE_EVERY_US - 1));
        assert!(!set.knows_recent(own("192.0.2.1"), SHARE_EVERY_US));
        assert!(!set.knows_recent(own("192.0.2.2"), 0));
    }

    #[test]
    fn a_full_set_forgets_old_failures_then_counts_everyone_as_failing() {
        let mut set = FailingAddresses::default();
        for n in 0..CAPACITY {
            let address = IpAddr::from([10, 0, (n / 256) as u8, (n % 256) as u8]);
            set.record(FailureBucket::Own(address), 0, HORIZON);
        }
        set.record(own("192.0.2.1"), HORIZON + 1, HORIZON);
        assert!(!set.may_refuse(ip("10.0.0.1"), HORIZON + 1, HORIZON));
        assert!(set.may_refuse(ip("192.0.2.1"), HORIZON + 1, HORIZON));

        for n in 0..CAPACITY {
            let address = IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]);
            set.record(FailureBucket::Own(address), HORIZON + 2, HORIZON);
        }
        assert!(
            set.may_refuse(ip("198.51.100.9"), HORIZON + 2, HORIZON),
            "the set overflowed: every address may be refused"
        );
        assert!(set.knows_recent(own("198.51.100.9"), HORIZON + 2));
        assert!(set.is_quiet(3 * HORIZON, HORIZON));
    }

    #[test]
    fn a_full_set_still_updates_the_addresses_it_holds() {
        let mut set = FailingAddresses::default();
        for n in 0..CAPACITY {
            set.record(
                FailureBucket::Own(IpAddr::from([10, 0, 0, n as u8])),
                0,
                HORIZON,
            );
        }
        set.record(own("10.0.0.7"), 5, HORIZON);

        assert!(
            !set.may_refuse(ip("198.51.100.9"), 5, HORIZON),
            "no overflow"
        );
        assert!(set.may_refuse(ip("10.0.0.7"), 5 + HORIZON, HORIZON));
        assert!(!set.may_refuse(ip("10.0.0.8"), 5 + HORIZON, HORIZON));
    }

    #[test]
    fn a_failure_in_the_overflow_bucket_may_make_any_address_refused() {
        let mut set = FailingAddresses::default();
        set.record(own("192.0.2.1"), 0, HORIZON);
        assert!(!set.knows_recent(FailureBucket::Overflow, 0));

        set.record(FailureBucket::Overflow, 10, HORIZON);

        assert!(set.may_refuse(ip("198.51.100.9"), 10 + HORIZON, HORIZON));
        assert!(!set.may_refuse(ip("198.51.100.9"), 11 + HORIZON, HORIZON));
        assert!(set.knows_recent(FailureBucket::Overflow, 10));
        assert!(!set.knows_recent(FailureBucket::Overflow, 10 + SHARE_EVERY_US));
        assert!(set.is_quiet(11 + HORIZON, HORIZON));
    }

    #[test]
    fn survives_the_shared_encoding() {
        let mut set = FailingAddresses::default();
        set.record(own("192.0.2.1"), 5, HORIZON);
        set.record(own("2001:db8::1"), 7, HORIZON);
        set.overflowed(6);

        assert_eq!(FailingAddresses::from_bytes(&set.to_bytes()), Some(set));
    }

    #[test]
    fn merging_keeps_the_later_time_of_each_address_and_the_overflow() {
        let mut mine = FailingAddresses::default();
        mine.record(own("192.0.2.1"), 10, HORIZON);
        mine.record(own("192.0.2.2"), 30, HORIZON);
        let mut theirs = FailingAddresses::default();
        theirs.record(own("192.0.2.1"), 20, HORIZON);
        theirs.record(own("192.0.2.2"), 5, HORIZON);
        theirs.overflowed(1);

        mine.merge(&theirs, 40, HORIZON);

        assert!(mine.may_refuse(ip("192.0.2.1"), 20 + HORIZON, HORIZON));
        assert!(mine.may_refuse(ip("192.0.2.2"), 30 + HORIZON, HORIZON));
        assert!(!mine.may_refuse(ip("192.0.2.1"), 21 + HORIZON, HORIZON));
        assert!(mine.may_refuse(ip("198.51.100.9"), 1 + HORIZON, HORIZON));
    }

    /// Two workers and the shared set, as the filter drives them: `worker` counts and shares
    /// when told to, `other` reads the shared set on its ticks.
    struct Envoy {
        shared: FailingAddresses,
        workers: [WorkerFailures; 2],
    }

    impl Envoy {
        fn new() -> Self {
            Self {
                shared: FailingAddresses::default(),
                workers: [WorkerFailures::default(), WorkerFailures::default()],
            }
        }

        fn fail(&mut self, worker: usize, address: IpAddr, now_us: i64) {
            let bucket = FailureBucket::Own(address);
            if self.workers[worker].counted(bucket, now_us, HORIZON) {
                self.shared.record(bucket, now_us, HORIZON);
                let written = self.shared.clone();
                self.workers[worker].saw_shared(written, now_us, HORIZON);
            }
        }

        fn tick(&mut self, worker: usize, now_us: i64) {
            let read = self.shared.clone();
            self.workers[worker].saw_shared(read, now_us, HORIZON);
        }
    }

    #[test]
    fn a_worker_that_keeps_counting_an_address_keeps_sharing_it() {
        let mut envoy = Envoy::new();
        let guesser = ip("203.0.113.9");
        let mut now = 0;
        while now <= 3 * HORIZON {
            envoy.fail(1, guesser, now);
            envoy.tick(0, now);
            now += 500_000;
        }

        assert!(envoy.workers[0].known().may_refuse(guesser, now, HORIZON));
        assert!(envoy.workers[1].known().may_refuse(guesser, now, HORIZON));
    }

    #[test]
    fn a_worker_shares_an_address_once_a_second_at_most() {
        let mut envoy = Envoy::new();
        let guesser = ip("203.0.113.9");
        envoy.fail(1, guesser, 0);
        assert!(!envoy.workers[1].counted(
            FailureBucket::Own(guesser),
            SHARE_EVERY_US - 1,
            HORIZON
        ));
        assert!(envoy.workers[1].counted(FailureBucket::Own(guesser), SHARE_EVERY_US, HORIZON));
    }

    #[test]
    fn a_worker_keeps_its_own_failures_when_the_shared_set_lacks_them() {
        let mut worker = WorkerFailures::default();
        worker.counted(own("203.0.113.9"), 0, HORIZON);

        worker.saw_shared(FailingAddresses::default(), 1, HORIZON);

        assert!(worker.known().may_refuse(ip("203.0.113.9"), 1, HORIZON));
    }

    #[test]
    fn undecodable_bytes_and_odd_addresses_are_rejected() {
        assert_eq!(FailingAddresses::from_bytes(&[0xff]), None);
        let odd = SharedFailures {
            addresses: vec![SharedFailure {
                address: vec![1, 2, 3],
                last_failure_us: 1,
            }],
            overflowed_at_us: None,
        };
        assert_eq!(
            FailingAddresses::from_bytes(&odd.encode_to_vec()),
            Some(FailingAddresses::default())
        );
    }

    #[test]
    fn the_horizon_is_the_longest_window_per_envoy_plus_the_staleness() {
        assert_eq!(failure_horizon_us(60, 1), 60_000_000 + STALENESS_US);
        assert_eq!(failure_horizon_us(60, 2), 120_000_000 + STALENESS_US);
        assert_eq!(failure_horizon_us(60, 0), 60_000_000 + STALENESS_US);
    }
}
