//! GCRA token buckets in exact integer arithmetic.
//!
//! A bucket is its theoretical arrival time (tat), held as a *backlog*: how far the tat lies
//! ahead of now, in ticks of 1/`requests` µs. In ticks the emission interval
//! T = window/requests is exactly `window_us`, so an interval below a microsecond loses
//! nothing to rounding, and time drains `requests` ticks per µs.

/// One microsecond is `requests` ticks of a limit.
pub type Ticks = u128;

const MICROS_PER_SECOND: u128 = 1_000_000;
const MICROS_PER_MILLI: u128 = 1_000;

/// `requests` per `window_seconds`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub window_seconds: u32,
    pub requests: u64,
    pub burst: u64,
}

impl Limit {
    pub fn window_us(&self) -> u64 {
        u64::from(self.window_seconds) * 1_000_000
    }

    /// T in ticks.
    fn interval(&self) -> Ticks {
        Ticks::from(self.window_seconds) * MICROS_PER_SECOND
    }

    /// The largest backlog an admitted request may leave: burst * T.
    fn capacity(&self) -> Ticks {
        Ticks::from(self.burst) * self.interval()
    }

    /// The largest backlog charges may leave: burst * T + window.
    fn debt_limit(&self) -> Ticks {
        self.capacity() + self.interval() * Ticks::from(self.requests)
    }

    fn cost(&self, count: u32) -> Ticks {
        self.interval() * Ticks::from(count)
    }
}

/// A bucket as stored: its backlog when last written, at `at_us`, in ticks of `requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    backlog: Ticks,
    at_us: u64,
    requests: u64,
}

impl Bucket {
    pub fn new(backlog: Ticks, limit: &Limit, now_us: u64) -> Self {
        Self {
            backlog,
            at_us: now_us,
            requests: limit.requests,
        }
    }

    /// The backlog at `now_us` in ticks of `limit`, which may count requests differently
    /// from the limit the bucket was written with.
    pub fn backlog(&self, limit: &Limit, now_us: u64) -> Ticks {
        let backlog = if self.requests == limit.requests {
            self.backlog
        } else {
            self.backlog * Ticks::from(limit.requests) / Ticks::from(self.requests.max(1))
        };
        let drained = Ticks::from(now_us.saturating_sub(self.at_us)) * Ticks::from(limit.requests);
        backlog.saturating_sub(drained)
    }

    /// When the bucket is full again and may be forgotten.
    pub fn full_at_us(&self) -> u64 {
        let ahead = self.backlog.div_ceil(Ticks::from(self.requests.max(1)));
        self.at_us
            .saturating_add(u64::try_from(ahead).unwrap_or(u64::MAX))
    }
}

/// The backlogs after taking `count` from every bucket, or `None` (and nothing taken) when
/// any bucket would overflow.
pub fn take_all<'a>(
    draws: impl IntoIterator<Item = (Ticks, &'a Limit, u32)>,
) -> Option<Vec<Ticks>> {
    draws
        .into_iter()
        .map(|(backlog, limit, count)| {
            let after = backlog + limit.cost(count);
            (after <= limit.capacity()).then_some(after)
        })
        .collect()
}

/// The backlog after charging `count` requests that were already admitted: never refused,
/// but the debt stays within one window beyond a full burst.
pub fn charge(backlog: Ticks, limit: &Limit, count: u32) -> Ticks {
    (backlog + limit.cost(count)).min(limit.debt_limit())
}

/// A backlog in whole milliseconds, rounded up.
pub fn backlog_ms(backlog: Ticks, limit: &Limit) -> u64 {
    let ms = backlog.div_ceil(Ticks::from(limit.requests) * MICROS_PER_MILLI);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_MINUTE_5: Limit = Limit {
        window_seconds: 60,
        requests: 5,
        burst: 5,
    };

    /// Takes one request at `now_us` from `bucket`, storing the result when admitted.
    fn take(bucket: &mut Option<Bucket>, limit: &Limit, now_us: u64) -> bool {
        let backlog = bucket.map_or(0, |b| b.backlog(limit, now_us));
        match take_all([(backlog, limit, 1)]) {
            Some(after) => {
                *bucket = Some(Bucket::new(after[0], limit, now_us));
                true
            }
            None => false,
        }
    }

    #[test]
    fn a_burst_is_admitted_then_one_request_per_interval() {
        let mut bucket = None;
        for _ in 0..5 {
            assert!(take(&mut bucket, &PER_MINUTE_5, 0));
        }
        assert!(!take(&mut bucket, &PER_MINUTE_5, 0));
        assert!(!take(&mut bucket, &PER_MINUTE_5, 11_999_999));
        assert!(take(&mut bucket, &PER_MINUTE_5, 12_000_000));
        assert!(!take(&mut bucket, &PER_MINUTE_5, 12_000_000));
        assert!(take(&mut bucket, &PER_MINUTE_5, 24_000_000));
    }

    #[test]
    fn intervals_below_a_microsecond_are_exact() {
        // T = 1 s / 3,000,000 = 0.333... µs.
        let limit = Limit {
            window_seconds: 1,
            requests: 3_000_000,
            burst: 3,
        };
        let mut bucket = None;
        for _ in 0..3 {
            assert!(take(&mut bucket, &limit, 1_000));
        }
        assert!(!take(&mut bucket, &limit, 1_000));
        // Three intervals are exactly one microsecond.
        assert!(take(&mut bucket, &limit, 1_001));
        assert!(take(&mut bucket, &limit, 1_001));
        assert!(take(&mut bucket, &limit, 1_001));
        assert!(!take(&mut bucket, &limit, 1_001));
    }

    #[test]
    fn nothing_is_taken_unless_every_bucket_has_room() {
        let roomy = Limit {
            window_seconds: 1,
            requests: 10,
            burst: 10,
        };
        let full = PER_MINUTE_5.capacity();
        assert_eq!(take_all([(0, &roomy, 1), (full, &PER_MINUTE_5, 1)]), None);
        assert_eq!(
            take_all([(0, &roomy, 1), (0, &PER_MINUTE_5, 2)]),
            Some(vec![roomy.interval(), 2 * PER_MINUTE_5.interval()])
        );
    }

    #[test]
    fn a_count_larger_than_the_burst_is_refused_even_when_full() {
        assert_eq!(take_all([(0, &PER_MINUTE_5, 6)]), None);
        assert!(take_all([(0, &PER_MINUTE_5, 5)]).is_some());
    }

    #[test]
    fn charges_are_never_refused_but_the_debt_is_bounded() {
        let after = charge(0, &PER_MINUTE_5, 7);
        assert_eq!(backlog_ms(after, &PER_MINUTE_5), 84_000);
        // burst * T + window = 60 s + 60 s.
        let after = charge(after, &PER_MINUTE_5, 1_000_000);
        assert_eq!(backlog_ms(after, &PER_MINUTE_5), 120_000);
    }

    #[test]
    fn a_full_debt_drains_at_the_limit_rate() {
        let debt = charge(0, &PER_MINUTE_5, 1_000);
        let bucket = Bucket::new(debt, &PER_MINUTE_5, 0);
        assert_eq!(
            backlog_ms(bucket.backlog(&PER_MINUTE_5, 60_000_000), &PER_MINUTE_5),
            60_000
        );
        assert_eq!(bucket.full_at_us(), 120_000_000);
        assert_eq!(bucket.backlog(&PER_MINUTE_5, 120_000_000), 0);
    }

    #[test]
    fn backlogs_round_up_to_whole_milliseconds() {
        let limit = Limit {
            window_seconds: 1,
            requests: 3,
            burst: 3,
        };
        // One interval is 333,333.3 µs.
        assert_eq!(backlog_ms(limit.cost(1), &limit), 334);
        assert_eq!(backlog_ms(limit.cost(3), &limit), 1_000);
        assert_eq!(backlog_ms(1, &limit), 1);
        assert_eq!(backlog_ms(0, &limit), 0);
    }

    #[test]
    fn a_changed_rate_rescales_the_stored_backlog() {
        let bucket = Bucket::new(PER_MINUTE_5.cost(5), &PER_MINUTE_5, 0);
        let faster = Limit {
            requests: 10,
            ..PER_MINUTE_5
        };
        assert_eq!(backlog_ms(bucket.backlog(&faster, 0), &faster), 60_000);
    }
}
