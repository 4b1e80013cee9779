//! Where a follower stands in a feed whose positions may commit out of order.
//!
//! On Postgres a position is taken from a sequence when a write inserts, but writes commit in
//! their own order: position 11 can be visible while 10 is still to come, and a rolled-back
//! write leaves 10 out for ever. A follower that only asked for "after the last position seen"
//! would miss 10. So it asks after the last *settled* position (all before it seen or given
//! up), skips what it has seen since, and gives up on a gap only after [`GAP_WAIT`], longer
//! than a write transaction lives.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How long a gap in the positions is waited for before it is taken as a rolled-back write.
pub const GAP_WAIT: Duration = Duration::from_secs(30);

/// A follower's position in a feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPosition {
    /// Every position up to here is seen or given up.
    settled: u64,
    /// Positions after `settled` already seen.
    seen: BTreeSet<u64>,
    /// The first gap after `settled`, and since when it is waited for.
    waiting: Option<(u64, Instant)>,
}

impl FeedPosition {
    /// Everything up to `cursor` is known.
    pub fn at(cursor: u64) -> Self {
        Self {
            settled: cursor,
            ..Self::default()
        }
    }

    /// The position to read the feed after.
    pub fn read_after(&self) -> u64 {
        self.settled
    }

    /// The newest position seen.
    pub fn newest(&self) -> u64 {
        self.seen.last().copied().unwrap_or(self.settled)
    }

    /// Takes one position read from the feed: whether it is new to the follower.
    pub fn take(&mut self, cursor: u64) -> bool {
        cursor > self.settled && self.seen.insert(cursor)
    }

    /// Moves past every position seen in a row, and past a gap waited for since `now -
    /// GAP_WAIT` or longer.
    pub fn settle(&mut self, now: Instant) {
        while let Some(&first) = self.seen.first() {
            if first == self.settled + 1 {
                self.seen.pop_first();
                self.settled = first;
                continue;
            }
            let gap = self.settled + 1;
            match self.waiting {
                Some((waited, since)) if waited == gap => {
                    if now.duration_since(since) < GAP_WAIT {
                        return;
                    }
                    self.settled = first - 1;
                }
                _ => {
                    self.waiting = Some((gap, now));
                    return;
                }
            }
        }
        self.waiting = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_in_a_row_settle_at_once() {
        let now = Instant::now();
        let mut position = FeedPosition::at(4);
        assert!(position.take(5));
        assert!(position.take(6));
        assert!(!position.take(6));
        assert!(!position.take(3));
        position.settle(now);
        assert_eq!(position.read_after(), 6);
        assert_eq!(position.newest(), 6);
    }

    #[test]
    fn a_gap_is_read_again_until_it_fills() {
        let now = Instant::now();
        let mut position = FeedPosition::at(9);
        assert!(position.take(11));
        position.settle(now);
        assert_eq!(position.read_after(), 9);
        assert_eq!(position.newest(), 11);
        // Read again after 9: 11 comes back (seen), 10 has committed meanwhile.
        assert!(position.take(10));
        assert!(!position.take(11));
        position.settle(now + Duration::from_secs(1));
        assert_eq!(position.read_after(), 11);
    }

    #[test]
    fn a_gap_is_given_up_after_the_wait() {
        let now = Instant::now();
        let mut position = FeedPosition::at(9);
        position.take(11);
        position.take(13);
        position.settle(now);
        position.settle(now + GAP_WAIT - Duration::from_secs(1));
        assert_eq!(position.read_after(), 9);
        position.settle(now + GAP_WAIT);
        // 10 is given up; the gap at 12 is waited for from now on.
        assert_eq!(position.read_after(), 11);
        position.settle(now + GAP_WAIT * 2 - Duration::from_secs(1));
        assert_eq!(position.read_after(), 11);
        position.settle(now + GAP_WAIT * 2);
        assert_eq!(position.read_after(), 13);
    }
}
