//! One token bucket as a generic cell rate algorithm (GCRA): the bucket is a single
//! timestamp, the theoretical arrival time (`tat`) of the next request at the limit's rate.
//! A request is admitted while `tat` stays within `burst` emission intervals of now.

use crate::proto::RateLimit;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// A limit's rate and size in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time one request uses up: the window divided by its request count.
    pub emission_us: i64,
    /// How far `tat` may run ahead of now: `burst` emission intervals.
    pub tolerance_us: i64,
    /// The request count per window, for `X-RateLimit-Limit`.
    pub requests: u64,
}

impl Rate {
    /// `None` for a limit no request could pass (a zero count, burst or window).
    pub fn of(limit: &RateLimit) -> Option<Self> {
        let requests = i64::try_from(limit.requests).ok().filter(|n| *n > 0)?;
        let burst = i64::try_from(limit.burst).ok().filter(|n| *n > 0)?;
        let window_us = i64::from(limit.window_seconds).checked_mul(MICROS_PER_SECOND)?;
        let emission_us = (window_us / requests).max(1);
        Some(Self {
            emission_us,
            tolerance_us: emission_us.saturating_mul(burst),
            requests: limit.requests,
        })
    }

    /// What taking `count` requests at `now_us` from a bucket at `tat_us` would give.
    pub fn verdict(&self, tat_us: i64, now_us: i64, count: i64) -> Verdict {
        let base = tat_us.max(now_us);
        let new_tat = base.saturating_add(self.emission_us.saturating_mul(count));
        let ahead = new_tat - now_us;
        if ahead > self.tolerance_us {
            Verdict {
                admitted: false,
                tat_us,
                remaining: 0,
                full_after_us: base - now_us,
                retry_after_us: ahead - self.tolerance_us,
            }
        } else {
            Verdict {
                admitted: true,
                tat_us: new_tat,
                remaining: u64::try_from((self.tolerance_us - ahead) / self.emission_us)
                    .unwrap_or(0),
                full_after_us: ahead,
                retry_after_us: 0,
            }
        }
    }

    /// The bucket as the control plane reported it: `backlog_ms` ahead of now.
    pub fn from_backlog(&self, backlog_ms: i64, admitted: bool) -> Verdict {
        let ahead = backlog_ms.max(0).saturating_mul(1000);
        let free = self.tolerance_us - ahead;
        Verdict {
            admitted,
            tat_us: 0,
            remaining: u64::try_from(free / self.emission_us).unwrap_or(0),
            full_after_us: ahead,
            retry_after_us: if admitted {
                0
            } else {
                (self.emission_us - free).max(1)
            },
        }
    }
}

/// The outcome of one request against one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub admitted: bool,
    /// The bucket's new theoretical arrival time (unchanged when refused).
    pub tat_us: i64,
    /// Requests that could still be admitted right now.
    pub remaining: u64,
    /// Until the bucket is full again.
    pub full_after_us: i64,
    /// Until a refused request would be admitted; 0 when admitted.
    pub retry_after_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_minute(requests: u64, burst: u64) -> Rate {
        Rate::of(&RateLimit {
            window_seconds: 60,
            requests,
            burst,
            ..RateLimit::default()
        })
        .expect("valid")
    }

    #[test]
    fn admits_the_burst_then_one_per_emission_interval() {
        let rate = per_minute(5, 5);
        let mut tat = 0;
        let now = 1_000_000_000;
        for expected_remaining in (0..5).rev() {
            let verdict = rate.verdict(tat, now, 1);
            assert!(verdict.admitted);
            assert_eq!(verdict.remaining, expected_remaining);
            tat = verdict.tat_us;
        }
        let refused = rate.verdict(tat, now, 1);
        assert!(!refused.admitted);
        assert_eq!(refused.retry_after_us, 12_000_000);
        assert_eq!(refused.full_after_us, 60_000_000);

        let later = rate.verdict(tat, now + 12_000_000, 1);
        assert!(later.admitted);
        assert_eq!(later.remaining, 0);
    }

    #[test]
    fn a_smaller_burst_limits_the_row_but_not_the_rate() {
        let rate = per_minute(60, 2);
        let now = 5_000_000;
        let first = rate.verdict(0, now, 1);
        let second = rate.verdict(first.tat_us, now, 1);
        assert!(first.admitted && second.admitted);
        assert!(!rate.verdict(second.tat_us, now, 1).admitted);
        assert!(rate.verdict(second.tat_us, now + 1_000_000, 1).admitted);
    }

    #[test]
    fn sub_millisecond_intervals_are_exact_in_microseconds() {
        let rate = Rate::of(&RateLimit {
            window_seconds: 1,
            requests: 5000,
            burst: 5000,
            ..RateLimit::default()
        })
        .expect("valid");
        assert_eq!(rate.emission_us, 200);
        assert_eq!(rate.verdict(0, 0, 1).remaining, 4999);
    }

    #[test]
    fn zero_counts_are_not_rates() {
        let zero = RateLimit {
            window_seconds: 60,
            requests: 0,
            burst: 1,
            ..RateLimit::default()
        };
        assert!(Rate::of(&zero).is_none());
        assert!(Rate::of(&RateLimit {
            requests: 1,
            burst: 0,
            ..zero
        })
        .is_none());
    }

    #[test]
    fn control_plane_backlogs_become_verdicts() {
        let rate = per_minute(6, 6);
        let half_used = rate.from_backlog(30_000, true);
        assert_eq!(half_used.remaining, 3);
        assert_eq!(half_used.full_after_us, 30_000_000);
        let empty = rate.from_backlog(60_000, false);
        assert_eq!(empty.remaining, 0);
        assert_eq!(empty.retry_after_us, 10_000_000);
    }
}
