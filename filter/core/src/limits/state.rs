//! The buckets of one subject (an address, a user, a key, a route) as one Envoy holds them in
//! shared data, one entry per subject so that one read and one write serve all its windows.
//!
//! `fast` buckets also carry this Envoy's share of the global bucket: between two reports to
//! the control plane an Envoy may spend only its share of what was free at the last report,
//! plus its share of the refill since, so that Envoys admitting at once do not each spend the
//! whole bucket.

use prost::Message;

use super::bucket::{Rate, Verdict};
use crate::proto::{LimitMode, RateLimit};

/// Every bucket of one subject.
#[derive(Clone, PartialEq, Message)]
pub struct SubjectState {
    #[prost(message, repeated, tag = "1")]
    pub slots: Vec<Slot>,
}

/// One window's bucket.
#[derive(Clone, PartialEq, Message)]
pub struct Slot {
    #[prost(uint32, tag = "1")]
    pub window_seconds: u32,
    #[prost(int64, tag = "2")]
    pub tat_us: i64,
    /// `fast`: requests admitted here and not yet reported.
    #[prost(uint32, tag = "3")]
    pub unreported: u32,
    /// `fast`: this Envoy's budget at `synced_at_us` (negative when the Envoys overspent).
    #[prost(int64, tag = "4")]
    pub allowance_us: i64,
    /// `fast`: when the share was last set.
    #[prost(int64, tag = "5")]
    pub synced_at_us: i64,
    /// `fast`: budget spent since `synced_at_us`.
    #[prost(int64, tag = "6")]
    pub spent_us: i64,
    /// `fast`: how many Envoys share the bucket; 0 until the first share is set.
    #[prost(uint32, tag = "7")]
    pub envoys: u32,
    /// `fast`: requests workers took in leases and have not settled yet.
    #[prost(uint32, tag = "8")]
    pub leased: u32,
    /// `fast`: when every lease counted in `leased` is settled or lost: a lease whose worker
    /// could not settle it must not hold the share back for good.
    #[prost(int64, tag = "9")]
    pub leased_until_us: i64,
}

impl Slot {
    fn new(window_seconds: u32) -> Self {
        Self {
            window_seconds,
            tat_us: 0,
            unreported: 0,
            allowance_us: 0,
            synced_at_us: 0,
            spent_us: 0,
            envoys: 0,
            leased: 0,
            leased_until_us: 0,
        }
    }

    /// Budget this Envoy may still spend: its share at the last sync, plus its share of
    /// the refill since, never more than its share of a full bucket. A share that has
    /// refilled to the full share starts over from now, so idle time is not banked.
    fn available_us(&mut self, rate: &Rate, now_us: i64) -> i64 {
        let envoys = i64::from(self.envoys.max(1));
        let full_share = rate.tolerance_us / envoys;
        let refill = (now_us - self.synced_at_us).max(0) / envoys;
        let available = self.allowance_us + refill - self.spent_us;
        if available >= full_share {
            self.allowance_us = full_share;
            self.spent_us = 0;
            self.synced_at_us = now_us;
            return full_share;
        }
        available
    }
}

/// A limit with the verdict of one request against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub requests: u64,
    pub verdict: Verdict,
}

impl SubjectState {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::decode(bytes).unwrap_or_default()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    fn slot_mut(&mut self, window_seconds: u32) -> &mut Slot {
        let index = match self
            .slots
            .iter()
            .position(|slot| slot.window_seconds == window_seconds)
        {
            Some(index) => index,
            None => {
                self.slots.push(Slot::new(window_seconds));
                self.slots.len() - 1
            }
        };
        &mut self.slots[index]
    }

    /// Takes one request from every bucket in `limits`, or from none when any refuses.
    /// `envoys` is how many Envoys share `fast` buckets, for a bucket's first share.
    pub fn admit(&mut self, limits: &[RateLimit], now_us: i64, envoys: u32) -> Vec<Checked> {
        let checked = self.take(limits, now_us, envoys, 1);
        if checked.iter().all(|c| c.verdict.admitted) {
            self.count_admitted(limits, 1);
        }
        checked
    }

    /// Takes `count` requests from every bucket in `limits`, or nothing when any bucket
    /// cannot give them all. They do not count as admitted yet: a lease counts what it used
    /// when it is settled.
    pub fn take(
        &mut self,
        limits: &[RateLimit],
        now_us: i64,
        envoys: u32,
        count: u32,
    ) -> Vec<Checked> {
        let mut checked = Vec::with_capacity(limits.len());
        let mut updates = Vec::with_capacity(limits.len());
        for limit in limits {
            let Some(rate) = Rate::of(limit) else {
                continue;
            };
            let fast = limit.mode() == LimitMode::Fast;
            let slot = self.slot_mut(limit.window_seconds);
            if fast && slot.envoys == 0 {
                slot.envoys = envoys.max(1);
                slot.allowance_us = rate.tolerance_us / i64::from(slot.envoys);
                slot.synced_at_us = now_us;
            }
            let cost_us = rate.emission_us.saturating_mul(i64::from(count));
            let mut verdict = rate.verdict(slot.tat_us, now_us, i64::from(count));
            if fast && verdict.admitted {
                let short_us = cost_us - slot.available_us(&rate, now_us);
                if short_us > 0 {
                    verdict.admitted = false;
                    verdict.tat_us = slot.tat_us;
                    verdict.remaining = 0;
                    verdict.retry_after_us = short_us.saturating_mul(i64::from(slot.envoys));
                }
            }
            checked.push(Checked {
                requests: rate.requests,
                verdict,
            });
            updates.push((limit.window_seconds, verdict.tat_us, fast, cost_us));
        }
        if checked.iter().all(|c| c.verdict.admitted) {
            for (window, tat_us, fast, cost_us) in updates {
                let slot = self.slot_mut(window);
                slot.tat_us = tat_us;
                if fast {
                    slot.spent_us = slot.spent_us.saturating_add(cost_us);
                }
            }
        }
        checked
    }

    /// How many requests every bucket in `limits` could give right now.
    pub fn capacity(&self, limits: &[RateLimit], now_us: i64, envoys: u32) -> u64 {
        limits
            .iter()
            .filter_map(|limit| {
                let rate = Rate::of(limit)?;
                let slot = self
                    .slots
                    .iter()
                    .find(|slot| slot.window_seconds == limit.window_seconds);
                let tat_us = slot.map_or(0, |slot| slot.tat_us);
                let free_us = rate.tolerance_us - (tat_us.max(now_us) - now_us);
                let mut free = free_us.max(0) / rate.emission_us;
                if limit.mode() == LimitMode::Fast {
                    let share_us = match slot {
                        Some(slot) if slot.envoys > 0 => slot.clone().available_us(&rate, now_us),
                        _ => rate.tolerance_us / i64::from(envoys.max(1)),
                    };
                    free = free.min(share_us.max(0) / rate.emission_us);
                }
                Some(u64::try_from(free).unwrap_or(0))
            })
            .min()
            .unwrap_or(0)
    }

    /// Counts `count` requests taken from `fast` buckets as admitted here, to be reported at
    /// the next sync.
    pub fn count_admitted(&mut self, limits: &[RateLimit], count: u32) {
        for limit in limits.iter().filter(|l| l.mode() == LimitMode::Fast) {
            let slot = self.slot_mut(limit.window_seconds);
            slot.unreported = slot.unreported.saturating_add(count);
        }
    }

    /// Returns one admitted request to every bucket in `limits`: it was refused elsewhere.
    pub fn give_back(&mut self, limits: &[RateLimit]) {
        self.put_back(limits, 1);
        for limit in limits.iter().filter(|l| l.mode() == LimitMode::Fast) {
            let slot = self.slot_mut(limit.window_seconds);
            slot.unreported = slot.unreported.saturating_sub(1);
        }
    }

    /// Marks `count` requests taken with [`SubjectState::take`] at `now_us` as a worker's
    /// lease, to be settled by `settled_by_us`.
    pub fn lease_out(&mut self, limits: &[RateLimit], count: u32, now_us: i64, settled_by_us: i64) {
        for limit in limits.iter().filter(|l| l.mode() == LimitMode::Fast) {
            let slot = self.slot_mut(limit.window_seconds);
            if slot.leased_until_us <= now_us {
                slot.leased = 0;
            }
            slot.leased = slot.leased.saturating_add(count);
            slot.leased_until_us = slot.leased_until_us.max(settled_by_us);
        }
    }

    /// Ends a lease: `used` requests count as admitted, `unused` go back to the buckets.
    pub fn settle(&mut self, limits: &[RateLimit], used: u32, unused: u32) {
        for limit in limits.iter().filter(|l| l.mode() == LimitMode::Fast) {
            let slot = self.slot_mut(limit.window_seconds);
            slot.leased = slot.leased.saturating_sub(used.saturating_add(unused));
        }
        self.count_admitted(limits, used);
        self.put_back(limits, unused);
    }

    fn put_back(&mut self, limits: &[RateLimit], count: u32) {
        for limit in limits {
            let Some(rate) = Rate::of(limit) else {
                continue;
            };
            let cost_us = rate.emission_us.saturating_mul(i64::from(count));
            let slot = self.slot_mut(limit.window_seconds);
            slot.tat_us = slot.tat_us.saturating_sub(cost_us);
            if limit.mode() == LimitMode::Fast {
                slot.spent_us = slot.spent_us.saturating_sub(cost_us);
            }
        }
    }

    /// Whether one more request would pass every bucket, without taking it.
    pub fn would_admit(&self, limits: &[RateLimit], now_us: i64, envoys: u32) -> Vec<Checked> {
        self.clone().admit(limits, now_us, envoys)
    }

    /// Takes the counts not yet reported, per window, leaving zero.
    pub fn take_unreported(&mut self) -> Vec<(u32, u32)> {
        self.slots
            .iter_mut()
            .filter(|slot| slot.unreported > 0)
            .map(|slot| (slot.window_seconds, std::mem::take(&mut slot.unreported)))
            .collect()
    }

    /// Re-bases a `fast` bucket on the global state the control plane answered: its
    /// backlog, and the number of Envoys that share it. What was admitted here since the
    /// report, and what workers hold in leases, is not in that backlog yet.
    pub fn rebase(&mut self, limit: &RateLimit, backlog_ms: i64, envoys: u32, now_us: i64) {
        let Some(rate) = Rate::of(limit) else {
            return;
        };
        let slot = self.slot_mut(limit.window_seconds);
        let backlog_us = backlog_ms.max(0).saturating_mul(1000);
        if slot.leased_until_us <= now_us {
            slot.leased = 0;
        }
        let not_reported = slot.unreported.saturating_add(slot.leased);
        let since_report_us = rate.emission_us.saturating_mul(i64::from(not_reported));
        slot.envoys = envoys.max(1);
        slot.tat_us = slot.tat_us.max(now_us + backlog_us + since_report_us);
        slot.allowance_us = (rate.tolerance_us - backlog_us) / i64::from(slot.envoys);
        slot.spent_us = since_report_us;
        slot.synced_at_us = now_us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u64, burst: u64, mode: LimitMode) -> RateLimit {
        RateLimit {
            window_seconds: 60,
            requests,
            burst,
            mode: mode.into(),
            ..RateLimit::default()
        }
    }

    fn admitted(checked: &[Checked]) -> bool {
        checked.iter().all(|c| c.verdict.admitted)
    }

    #[test]
    fn every_window_or_none_is_charged() {
        let minute = limit(100, 100, LimitMode::Local);
        let second = RateLimit {
            window_seconds: 1,
            requests: 1,
            burst: 1,
            ..minute
        };
        let mut state = SubjectState::default();
        assert!(admitted(&state.admit(&[minute, second], 0, 1)));
        assert!(!admitted(&state.admit(&[minute, second], 0, 1)));
        let remaining = state.admit(&[minute], 0, 1)[0].verdict.remaining;
        assert_eq!(remaining, 98, "the refused request took nothing");
    }

    #[test]
    fn survives_shared_data() {
        let mut state = SubjectState::default();
        state.admit(&[limit(5, 5, LimitMode::Fast)], 10, 2);
        let read = SubjectState::from_bytes(&state.to_bytes());
        assert_eq!(read, state);
        assert_eq!(
            SubjectState::from_bytes(b"\xff\xff"),
            SubjectState::default()
        );
    }

    #[test]
    fn a_fast_bucket_starts_with_its_share_of_the_burst() {
        let fast = limit(60, 10, LimitMode::Fast);
        let mut state = SubjectState::default();
        let admitted_now = (0..10)
            .filter(|_| admitted(&state.admit(std::slice::from_ref(&fast), 1_000, 2)))
            .count();
        assert_eq!(admitted_now, 5);
        assert_eq!(state.take_unreported(), vec![(60, 5)]);
        assert_eq!(state.take_unreported(), vec![]);
    }

    #[test]
    fn a_fast_share_refills_at_the_share_of_the_rate() {
        let fast = limit(60, 2, LimitMode::Fast);
        let mut state = SubjectState::default();
        assert!(admitted(&state.admit(std::slice::from_ref(&fast), 0, 2)));
        assert!(!admitted(&state.admit(std::slice::from_ref(&fast), 0, 2)));
        // One request per second overall: each of two Envoys earns one every two seconds.
        assert!(!admitted(&state.admit(
            std::slice::from_ref(&fast),
            1_000_000,
            2
        )));
        assert!(admitted(&state.admit(
            std::slice::from_ref(&fast),
            2_000_000,
            2
        )));
    }

    #[test]
    fn rebasing_takes_in_what_other_envoys_spent() {
        let fast = limit(60, 60, LimitMode::Fast);
        let mut state = SubjectState::default();
        assert!(admitted(&state.admit(std::slice::from_ref(&fast), 0, 1)));
        let reported = state.take_unreported();
        assert_eq!(reported, vec![(60, 1)]);
        // The others spent 50 of the 60: 10 left, shared by 2 Envoys.
        state.rebase(&fast, 51_000, 2, 0);
        let admitted_now = (0..10)
            .filter(|_| admitted(&state.admit(std::slice::from_ref(&fast), 0, 2)))
            .count();
        assert_eq!(admitted_now, 4);
    }

    #[test]
    fn an_overspent_global_bucket_blocks_until_repaid() {
        let fast = limit(60, 10, LimitMode::Fast);
        let mut state = SubjectState::default();
        state.rebase(&fast, 70_000, 2, 0);
        assert!(!admitted(&state.admit(std::slice::from_ref(&fast), 0, 2)));
        assert!(!admitted(&state.admit(
            std::slice::from_ref(&fast),
            61_000_000,
            2
        )));
        assert!(admitted(&state.admit(
            std::slice::from_ref(&fast),
            62_000_000,
            2
        )));
    }

    #[test]
    fn an_idle_share_refills_to_its_share_of_the_burst_only() {
        let fast = limit(60, 10, LimitMode::Fast);
        let mut state = SubjectState::default();
        state.rebase(&fast, 0, 2, 0);
        let an_hour_later = 3_600_000_000;
        let admitted_then = (0..10)
            .filter(|_| admitted(&state.admit(std::slice::from_ref(&fast), an_hour_later, 2)))
            .count();
        assert_eq!(admitted_then, 5);
    }

    #[test]
    fn a_request_given_back_is_as_if_never_taken() {
        let fast = limit(60, 2, LimitMode::Fast);
        let mut state = SubjectState::default();
        assert!(admitted(&state.admit(std::slice::from_ref(&fast), 0, 1)));
        let before_second = state.clone();
        assert!(admitted(&state.admit(std::slice::from_ref(&fast), 0, 1)));
        state.give_back(std::slice::from_ref(&fast));
        assert_eq!(state, before_second);
    }

    #[test]
    fn a_rebase_keeps_what_leases_hold_out_of_the_share() {
        let fast = limit(60, 60, LimitMode::Fast);
        let mut state = SubjectState::default();
        state.take(std::slice::from_ref(&fast), 0, 1, 16);
        state.lease_out(std::slice::from_ref(&fast), 16, 0, 300_000);
        state.rebase(&fast, 0, 1, 0);
        assert_eq!(state.capacity(std::slice::from_ref(&fast), 0, 1), 44);
        state.settle(std::slice::from_ref(&fast), 10, 6);
        assert_eq!(state.capacity(std::slice::from_ref(&fast), 0, 1), 50);
        assert_eq!(state.take_unreported(), vec![(60, 10)]);
    }

    #[test]
    fn a_lease_never_settled_stops_holding_the_share_back() {
        let fast = limit(60, 60, LimitMode::Fast);
        let mut state = SubjectState::default();
        state.take(std::slice::from_ref(&fast), 0, 1, 16);
        state.lease_out(std::slice::from_ref(&fast), 16, 0, 300_000);
        state.rebase(&fast, 16_000, 1, 300_000);
        let leased = state.slots[0].leased;
        assert_eq!(leased, 0, "the lost lease is forgotten");
        assert_eq!(state.capacity(std::slice::from_ref(&fast), 300_000, 1), 44);
    }

    #[test]
    fn would_admit_takes_nothing() {
        let local = limit(1, 1, LimitMode::Local);
        let state = SubjectState::default();
        assert!(admitted(&state.would_admit(
            std::slice::from_ref(&local),
            0,
            1
        )));
        assert!(admitted(&state.would_admit(
            std::slice::from_ref(&local),
            0,
            1
        )));
    }
}
