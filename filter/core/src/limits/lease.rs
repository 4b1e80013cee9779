//! Requests one worker takes from a subject's shared buckets ahead of need, so that most
//! requests are counted without touching Envoy's shared data (one lock for the whole Envoy).
//!
//! A lease is small next to what the buckets still hold (an eighth, at most 16 requests),
//! so near a limit it is one request and counting is as exact as without leases; far from
//! it, one shared write serves up to 16 requests. Nothing is ever admitted beyond the
//! buckets: leased requests are taken from them, and what a lease did not use goes back.
//! What it did use counts as admitted (for the `fast` reports) when the lease is settled, so
//! the control plane is never told of requests that were not admitted.

use super::bucket::Rate;
use super::state::Checked;
use crate::proto::RateLimit;

/// How long a lease may be spent from; what is left afterwards goes back to the buckets.
pub const LEASE_LIFETIME_US: i64 = 100_000;
/// By when a lease is settled: its lifetime, then the worker's next tick (every 100 ms), with
/// a tick to spare. A lease not settled by then (its worker lost it) counts no more.
pub const LEASE_SETTLED_WITHIN_US: i64 = 3 * LEASE_LIFETIME_US;
const MAX_LEASE: u64 = 16;
/// A lease takes at most this fraction of what the buckets can still give.
const LEASE_FRACTION: u64 = 8;

/// How many requests to take at once from buckets that could give `capacity` now.
pub fn lease_size(capacity: u64) -> u32 {
    u32::try_from((capacity / LEASE_FRACTION).clamp(1, MAX_LEASE)).unwrap_or(1)
}

/// Requests taken from one subject's buckets and not yet used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    limits: Vec<RateLimit>,
    count: u32,
    left: u32,
    taken_at_us: i64,
    /// The buckets' verdicts when the lease was taken, aligned with `rates`.
    taken: Vec<Checked>,
    rates: Vec<Rate>,
}

impl Lease {
    /// A lease of `count` requests taken at `now_us` under `limits`, whose buckets answered
    /// `taken` (as [`super::state::SubjectState::take`] gives them).
    pub fn new(limits: &[RateLimit], count: u32, taken: Vec<Checked>, now_us: i64) -> Self {
        Self {
            limits: limits.to_vec(),
            count,
            left: count,
            taken_at_us: now_us,
            taken,
            rates: limits.iter().filter_map(Rate::of).collect(),
        }
    }

    /// One request from the lease with its verdicts, as if it had been taken from the
    /// buckets on its own; `None` when the lease is used up, too old, or was taken under
    /// other limits.
    pub fn take(&mut self, limits: &[RateLimit], now_us: i64) -> Option<Vec<Checked>> {
        if !self.usable(limits, now_us) {
            return None;
        }
        self.left -= 1;
        let left = u64::from(self.left);
        Some(
            self.taken
                .iter()
                .zip(&self.rates)
                .map(|(taken, rate)| {
                    let mut verdict = taken.verdict;
                    verdict.remaining = verdict.remaining.saturating_add(left);
                    let unused_us = rate.emission_us.saturating_mul(i64::from(self.left));
                    verdict.full_after_us =
                        (self.taken_at_us + verdict.full_after_us - unused_us - now_us).max(0);
                    Checked {
                        requests: taken.requests,
                        verdict,
                    }
                })
                .collect(),
        )
    }

    /// Whether [`Lease::take`] would give a request now.
    pub fn usable(&self, limits: &[RateLimit], now_us: i64) -> bool {
        self.left > 0 && !self.is_expired(now_us) && self.limits == limits
    }

    /// Puts back one request that was refused elsewhere, to be given back when the lease is
    /// settled; `false` when the lease gave nothing yet (the request came from elsewhere).
    pub fn put_back(&mut self) -> bool {
        if self.left >= self.count {
            return false;
        }
        self.left += 1;
        true
    }

    pub fn is_expired(&self, now_us: i64) -> bool {
        now_us.saturating_sub(self.taken_at_us) >= LEASE_LIFETIME_US
    }

    /// What settles the lease in the buckets: the limits it was taken under, the requests
    /// it gave (admitted), and those it did not (to give back). See
    /// [`super::state::SubjectState::settle`].
    pub fn settlement(&self) -> (&[RateLimit], u32, u32) {
        (&self.limits, self.count - self.left, self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::state::SubjectState;
    use crate::proto::LimitMode;

    fn per_minute(requests: u64, burst: u64) -> RateLimit {
        RateLimit {
            window_seconds: 60,
            requests,
            burst,
            mode: LimitMode::Local.into(),
            ..RateLimit::default()
        }
    }

    #[test]
    fn a_lease_is_an_eighth_of_what_is_free_between_one_and_sixteen() {
        assert_eq!(lease_size(0), 1);
        assert_eq!(lease_size(5), 1);
        assert_eq!(lease_size(16), 2);
        assert_eq!(lease_size(1_000_000), 16);
    }

    #[test]
    fn requests_from_a_lease_see_what_requests_one_by_one_would_see() {
        let limits = [per_minute(600, 100)];
        let now = 1_000_000_000;
        let mut one_by_one = SubjectState::default();
        let expected: Vec<Vec<Checked>> =
            (0..4).map(|_| one_by_one.admit(&limits, now, 1)).collect();

        let mut state = SubjectState::default();
        let taken = state.take(&limits, now, 1, 4);
        let mut lease = Lease::new(&limits, 4, taken, now);
        for expected in expected {
            let mut got = lease.take(&limits, now).expect("leased");
            got[0].verdict.tat_us = expected[0].verdict.tat_us;
            assert_eq!(got, expected);
        }
        assert_eq!(lease.take(&limits, now), None, "used up");
    }

    #[test]
    fn a_lease_ends_with_its_lifetime_or_its_limits() {
        let limits = [per_minute(600, 100)];
        let mut state = SubjectState::default();
        let mut lease = Lease::new(&limits, 3, state.take(&limits, 0, 1, 3), 0);
        assert!(lease.take(&[per_minute(60, 10)], 1).is_none());
        assert!(lease.take(&limits, LEASE_LIFETIME_US).is_none());
        assert!(lease.take(&limits, LEASE_LIFETIME_US - 1).is_some());
        assert!(lease.put_back());
        assert_eq!(lease.settlement(), (&limits[..], 0, 3));
        assert!(!lease.put_back(), "nothing taken to put back");
    }

    #[test]
    fn a_settled_lease_gives_back_what_it_did_not_use_and_reports_what_it_did() {
        let limits = [RateLimit {
            mode: LimitMode::Fast.into(),
            ..per_minute(600, 100)
        }];
        let mut state = SubjectState::default();
        let before = state.capacity(&limits, 0, 1);
        let mut lease = Lease::new(&limits, 8, state.take(&limits, 0, 1, 8), 0);
        assert_eq!(state.capacity(&limits, 0, 1), before - 8);
        assert_eq!(state.take_unreported(), vec![], "nothing admitted yet");
        lease.take(&limits, 0).expect("leased");
        lease.take(&limits, 0).expect("leased");
        let (leased_limits, used, unused) = lease.settlement();
        state.settle(leased_limits, used, unused);
        assert_eq!(state.capacity(&limits, 0, 1), before - 2);
        assert_eq!(state.take_unreported(), vec![(60, 2)]);
    }
}
