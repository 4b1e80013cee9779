//! Rate limits: token buckets per subject, counted in this Envoy's shared data, reconciled
//! with the control plane (`fast`) or asked of it on every request (`exact`).

pub mod bucket;
pub mod failing_addresses;
pub mod lease;
pub mod limiter;
pub mod plan;
pub mod shared_failures;
pub mod state;

use state::Checked;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset`: the tightest bucket's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitFigures {
    pub limit: u64,
    pub remaining: u64,
    /// The Unix time in seconds at which the bucket is full again.
    pub reset: i64,
}

impl RateLimitFigures {
    /// The figures of the tightest of `checked`: the one with the fewest requests left (the
    /// smaller limit on a tie).
    pub fn of(checked: &[Checked], now_us: i64) -> Option<Self> {
        let tightest = checked
            .iter()
            .min_by_key(|c| (c.verdict.remaining, c.requests))?;
        Some(Self {
            limit: tightest.requests,
            remaining: tightest.verdict.remaining,
            reset: ceil_seconds(now_us.saturating_add(tightest.verdict.full_after_us)),
        })
    }

    /// The three headers, their values written into `digits` (no allocation per request).
    pub fn headers<'d>(&self, digits: &'d mut [itoa::Buffer; 3]) -> [(&'static str, &'d str); 3] {
        let [limit, remaining, reset] = digits;
        [
            ("x-ratelimit-limit", limit.format(self.limit)),
            ("x-ratelimit-remaining", remaining.format(self.remaining)),
            ("x-ratelimit-reset", reset.format(self.reset)),
        ]
    }
}

/// `Retry-After` in whole seconds for a refused request: the longest wait of the refusals.
pub fn retry_after_secs(checked: &[Checked]) -> i64 {
    let wait_us = checked
        .iter()
        .filter(|c| !c.verdict.admitted)
        .map(|c| c.verdict.retry_after_us)
        .max()
        .unwrap_or(0);
    ceil_seconds(wait_us).max(1)
}

fn ceil_seconds(micros: i64) -> i64 {
    micros.saturating_add(MICROS_PER_SECOND - 1) / MICROS_PER_SECOND
}

#[cfg(test)]
mod tests {
    use super::bucket::Verdict;
    use super::*;

    fn checked(requests: u64, remaining: u64, full_after_us: i64, retry_after_us: i64) -> Checked {
        Checked {
            requests,
            verdict: Verdict {
                admitted: retry_after_us == 0,
                tat_us: 0,
                remaining,
                full_after_us,
                retry_after_us,
            },
        }
    }

    #[test]
    fn headers_describe_the_tightest_limit() {
        let all = [
            checked(1000, 900, 6_000_000, 0),
            checked(10, 3, 2_500_000, 0),
        ];
        let figures = RateLimitFigures::of(&all, 100_000_000).expect("figures");
        let mut digits = Default::default();
        assert_eq!(
            figures.headers(&mut digits),
            [
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", "3"),
                ("x-ratelimit-reset", "103"),
            ]
        );
        assert!(RateLimitFigures::of(&[], 0).is_none());
    }

    #[test]
    fn retry_after_is_the_longest_wait_rounded_up() {
        let all = [checked(5, 0, 0, 1_200_000), checked(5, 0, 0, 11_999_999)];
        assert_eq!(retry_after_secs(&all), 12);
        assert_eq!(retry_after_secs(&[checked(5, 0, 0, 1)]), 1);
    }
}
