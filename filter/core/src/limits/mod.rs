//! Rate limits: token buckets per subject, counted in this Envoy's shared data, reconciled
//! with the control plane (`fast`) or asked of it on every request (`exact`).

pub mod bucket;
pub mod plan;
pub mod state;

use state::Checked;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` for the tightest of `checked`: the one
/// with the fewest requests left (the smaller limit on a tie). `Reset` is the Unix time in
/// seconds at which that bucket is full again.
pub fn rate_limit_headers(checked: &[Checked], now_us: i64) -> Option<[(&'static str, String); 3]> {
    let tightest = checked
        .iter()
        .min_by_key(|c| (c.verdict.remaining, c.requests))?;
    let reset_at = ceil_seconds(now_us.saturating_add(tightest.verdict.full_after_us));
    Some([
        ("x-ratelimit-limit", tightest.requests.to_string()),
        (
            "x-ratelimit-remaining",
            tightest.verdict.remaining.to_string(),
        ),
        ("x-ratelimit-reset", reset_at.to_string()),
    ])
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
        let headers = rate_limit_headers(&all, 100_000_000).expect("headers");
        assert_eq!(headers[0], ("x-ratelimit-limit", "10".to_owned()));
        assert_eq!(headers[1], ("x-ratelimit-remaining", "3".to_owned()));
        assert_eq!(headers[2], ("x-ratelimit-reset", "103".to_owned()));
        assert!(rate_limit_headers(&[], 0).is_none());
    }

    #[test]
    fn retry_after_is_the_longest_wait_rounded_up() {
        let all = [checked(5, 0, 0, 1_200_000), checked(5, 0, 0, 11_999_999)];
        assert_eq!(retry_after_secs(&all), 12);
        assert_eq!(retry_after_secs(&[checked(5, 0, 0, 1)]), 1);
    }
}
