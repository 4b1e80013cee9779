//! Where the checker is in the routing feed. Postgres numbers a change when its write starts,
//! not when it commits, so a change numbered below one already read may still appear: the
//! checker reads again from the first position it cannot yet be sure of, and skips what it
//! has seen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a gap in the positions may be filled by a write still committing; after that the
/// position is taken as never used (a rolled-back write).
const SETTLE: Duration = Duration::from_secs(10);
/// At most this many writes may be committing when the checker loads everything; their
/// changes are read again after the load.
const WRITES_IN_FLIGHT_AT_MOST: u64 = 100;

/// The checker's position in the routing feed.
#[derive(Debug, Clone)]
pub struct FeedCursor {
    /// Every position up to here has been read or will never be used.
    settled: u64,
    /// Positions read beyond `settled`, and when they were first read.
    seen: BTreeMap<u64, Instant>,
}

impl FeedCursor {
    /// After loading everything while the feed's newest position was `latest`.
    pub fn after_full_load(latest: u64) -> Self {
        Self {
            settled: latest.saturating_sub(WRITES_IN_FLIGHT_AT_MOST),
            seen: BTreeMap::new(),
        }
    }

    /// The position to read after.
    pub fn read_after(&self) -> u64 {
        self.settled
    }

    /// Takes the positions read after [`Self::read_after`] at `now`; answers those not seen
    /// before, to be applied.
    pub fn read(&mut self, positions: &[u64], now: Instant) -> Vec<u64> {
        let fresh: Vec<u64> = positions
            .iter()
            .copied()
            .filter(|position| *position > self.settled && !self.seen.contains_key(position))
            .collect();
        for position in &fresh {
            self.seen.insert(*position, now);
        }
        while let Some((&first, &read_at)) = self.seen.first_key_value() {
            if first != self.settled + 1 && now.duration_since(read_at) < SETTLE {
                break;
            }
            self.settled = first;
            self.seen.remove(&first);
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_commit_below_a_read_position_is_still_read_once() {
        let start = Instant::now();
        let mut cursor = FeedCursor::after_full_load(7);
        assert_eq!(cursor.read_after(), 0);
        assert_eq!(
            cursor.read(&[1, 2, 3, 4, 5, 6, 7], start),
            vec![1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(cursor.read_after(), 7);
        // 8 is still committing when 9 is read.
        assert_eq!(cursor.read(&[9], start), vec![9]);
        assert_eq!(cursor.read_after(), 7);
        let later = start + Duration::from_secs(1);
        assert_eq!(cursor.read(&[8, 9, 10], later), vec![8, 10]);
        assert_eq!(cursor.read_after(), 10);
    }

    #[test]
    fn a_position_never_used_stops_holding_the_cursor_back_once_settled() {
        let start = Instant::now();
        let mut cursor = FeedCursor::after_full_load(0);
        assert_eq!(cursor.read(&[2, 3], start), vec![2, 3]);
        assert_eq!(cursor.read_after(), 0);
        assert_eq!(cursor.read(&[2, 3], start + SETTLE), Vec::<u64>::new());
        assert_eq!(cursor.read_after(), 3);
    }
}
