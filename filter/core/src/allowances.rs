//! Quota allowances this worker holds: parts of a user's quota the control plane set aside
//! for it. A metered request is admitted only from an allowance (one request, or up to the
//! reserve's bytes for bandwidth); what it used is settled when it ends. An allowance admits
//! until its time is up, then waits for its requests to end and is settled in the next usage
//! report, which hands back to the quota what it did not give.

use std::collections::HashMap;
use std::rc::Rc;

use crate::proto::Allowance as GrantedAllowance;

const MICROS_PER_MILLI: i64 = 1000;
/// A worker asks for the next allowance while traffic comes and what it holds falls to
/// this fraction of the last grant.
const REFILL_WHEN_LEFT_BELOW_FRACTION: i64 = 4;
/// Near a quota's end grants are small, and one asked ahead of need would hold the last of
/// the quota in one worker while requests on the others are refused: below this size a
/// worker asks only when a request needs it.
const REFILL_AHEAD_FROM_GRANT: i64 = 8;

/// A quota counted through allowances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeteredQuota {
    Requests,
    /// Bytes: request and response, headers and bodies.
    Bandwidth,
}

impl MeteredQuota {
    pub const ALL: [Self; 2] = [Self::Requests, Self::Bandwidth];

    /// The name in the filter protocol and in 402 answers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Requests => "monthly_requests",
            Self::Bandwidth => "monthly_bandwidth",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|quota| quota.name() == name)
    }
}

/// Which metered quotas apply: a set of [`MeteredQuota`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeteredQuotas {
    requests: bool,
    bandwidth: bool,
}

impl MeteredQuotas {
    /// From the principal's names; names this filter does not know are left out.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let mut set = Self::default();
        for quota in names
            .iter()
            .filter_map(|n| MeteredQuota::from_name(n.as_ref()))
        {
            set.insert(quota);
        }
        set
    }

    pub fn insert(&mut self, quota: MeteredQuota) {
        match quota {
            MeteredQuota::Requests => self.requests = true,
            MeteredQuota::Bandwidth => self.bandwidth = true,
        }
    }

    pub fn is_empty(self) -> bool {
        !self.requests && !self.bandwidth
    }

    pub fn iter(self) -> impl Iterator<Item = MeteredQuota> {
        MeteredQuota::ALL
            .into_iter()
            .filter(move |quota| match quota {
                MeteredQuota::Requests => self.requests,
                MeteredQuota::Bandwidth => self.bandwidth,
            })
    }

    pub fn names(self) -> Vec<String> {
        self.iter().map(|quota| quota.name().to_owned()).collect()
    }
}

/// What one admitted request took from an allowance; given back, in part or whole, when
/// it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    user_id: Rc<str>,
    quota: MeteredQuota,
    allowance_id: Rc<str>,
    /// Requests (1) or bytes.
    amount: i64,
}

impl Taken {
    pub fn quota(&self) -> MeteredQuota {
        self.quota
    }
}

/// A user's metered quotas a worker wants a new allowance of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refill {
    pub user_id: Rc<str>,
    pub quotas: MeteredQuotas,
}

#[derive(Debug)]
struct Allowance {
    id: Rc<str>,
    /// What may still be admitted; below zero when requests passed more bytes than they
    /// reserved.
    left: i64,
    in_flight: u32,
    /// Unix microseconds: admits nothing from then on.
    admit_until_us: i64,
    last_drawn_us: i64,
}

impl Allowance {
    fn admits(&self, now_us: i64) -> bool {
        self.left > 0 && now_us < self.admit_until_us
    }

    /// Done admitting: out of time, used up, or idle for `idle_us`.
    fn retired(&self, now_us: i64, idle_us: i64) -> bool {
        now_us >= self.admit_until_us
            || (self.in_flight == 0 && (self.left <= 0 || now_us - self.last_drawn_us >= idle_us))
    }
}

#[derive(Debug, Default)]
struct Held {
    /// Newest last; requests draw on the oldest that admits.
    admitting: Vec<Allowance>,
    /// Retired, waiting for their requests to end.
    draining: Vec<Allowance>,
    refill_in_flight: bool,
    last_drawn_us: i64,
    /// The size of the newest grant.
    last_granted: i64,
}

impl Held {
    fn find(&mut self, id: &str) -> Option<&mut Allowance> {
        self.admitting
            .iter_mut()
            .chain(self.draining.iter_mut())
            .find(|allowance| &*allowance.id == id)
    }

    fn needs_refill(&self, now_us: i64, idle_us: i64) -> bool {
        if self.refill_in_flight
            || now_us - self.last_drawn_us >= idle_us
            || self.last_granted < REFILL_AHEAD_FROM_GRANT
        {
            return false;
        }
        let left: i64 = self
            .admitting
            .iter()
            .filter(|allowance| allowance.admits(now_us))
            .map(|allowance| allowance.left)
            .sum();
        left * REFILL_WHEN_LEFT_BELOW_FRACTION < self.last_granted
    }
}

/// Every allowance of one worker, by user and quota.
#[derive(Debug)]
pub struct Allowances {
    held: HashMap<(Rc<str>, MeteredQuota), Held>,
    /// An allowance nothing was drawn from for this long goes back, so that another worker
    /// or Envoy can have it.
    idle_us: i64,
}

impl Allowances {
    pub fn new(idle_ms: u32) -> Self {
        Self {
            held: HashMap::new(),
            idle_us: i64::from(idle_ms) * MICROS_PER_MILLI,
        }
    }

    /// Takes `amount` of `quota` for one request of `user_id`: a request quota takes 1, a
    /// bandwidth quota reserves up to `amount` bytes (what the allowance has left, if less).
    /// `None` when no allowance this worker holds admits it.
    pub fn take(
        &mut self,
        user_id: &Rc<str>,
        quota: MeteredQuota,
        amount: u64,
        now_us: i64,
    ) -> Option<Taken> {
        let held = self.held.get_mut(&(Rc::clone(user_id), quota))?;
        let allowance = held
            .admitting
            .iter_mut()
            .find(|allowance| allowance.admits(now_us))?;
        let amount = i64::try_from(amount)
            .unwrap_or(i64::MAX)
            .clamp(1, allowance.left);
        allowance.left -= amount;
        allowance.in_flight += 1;
        allowance.last_drawn_us = now_us;
        held.last_drawn_us = now_us;
        Some(Taken {
            user_id: Rc::clone(user_id),
            quota,
            allowance_id: Rc::clone(&allowance.id),
            amount,
        })
    }

    /// A request that took `taken` ended having used `used` of it (0 when it did not count):
    /// the rest goes back to its allowance, and a bandwidth request that passed more than it
    /// reserved takes the excess from it. Returns the allowance's id when it is used up and
    /// this was its last request: it is done, to be settled now rather than at the next tick
    /// (until it is, the control plane counts its requests twice, as used and as held).
    pub fn finish(&mut self, taken: &Taken, used: u64) -> Option<Rc<str>> {
        let key = (Rc::clone(&taken.user_id), taken.quota);
        let held = self.held.get_mut(&key)?;
        let allowance = held.find(&taken.allowance_id)?;
        let used = i64::try_from(used).unwrap_or(i64::MAX);
        allowance.left = allowance.left.saturating_add(taken.amount - used);
        allowance.in_flight = allowance.in_flight.saturating_sub(1);
        if allowance.left > 0 || allowance.in_flight > 0 {
            return None;
        }
        let id = Rc::clone(&allowance.id);
        held.admitting.retain(|allowance| allowance.id != id);
        held.draining.retain(|allowance| allowance.id != id);
        Some(id)
    }

    /// Holds what the control plane granted, from `now_us`.
    pub fn granted(&mut self, user_id: &Rc<str>, grant: &GrantedAllowance, now_us: i64) {
        let Some(quota) = MeteredQuota::from_name(&grant.quota) else {
            return;
        };
        if grant.granted == 0 || grant.allowance_id.is_empty() {
            return;
        }
        let granted = i64::try_from(grant.granted).unwrap_or(i64::MAX);
        let held = self.held.entry((Rc::clone(user_id), quota)).or_default();
        held.last_granted = granted;
        held.admitting.push(Allowance {
            id: Rc::from(grant.allowance_id.as_str()),
            left: granted,
            in_flight: 0,
            admit_until_us: now_us
                .saturating_add(i64::from(grant.admit_for_ms).saturating_mul(MICROS_PER_MILLI)),
            last_drawn_us: now_us,
        });
    }

    /// A refill asked for `user_id` was answered (or failed), its grants taken in: another
    /// may be asked, but not before a request draws again when it brought nothing usable.
    pub fn refill_answered(&mut self, user_id: &Rc<str>, quotas: MeteredQuotas, now_us: i64) {
        for quota in quotas.iter() {
            if let Some(held) = self.held.get_mut(&(Rc::clone(user_id), quota)) {
                held.refill_in_flight = false;
                if !held
                    .admitting
                    .iter()
                    .any(|allowance| allowance.admits(now_us))
                {
                    held.last_drawn_us = i64::MIN / 2;
                }
            }
        }
    }

    /// The worker's tick: retires allowances that are done admitting, returns the ids of
    /// those whose requests have all ended (to be settled), and the refills to ask for
    /// (marked as asked).
    pub fn tick(&mut self, now_us: i64) -> (Vec<Rc<str>>, Vec<Refill>) {
        let mut settled = Vec::new();
        let mut wanted: HashMap<Rc<str>, MeteredQuotas> = HashMap::new();
        let idle_us = self.idle_us;
        self.held.retain(|(user_id, quota), held| {
            let (retired, admitting) = held
                .admitting
                .drain(..)
                .partition(|allowance| allowance.retired(now_us, idle_us));
            held.admitting = admitting;
            held.draining.extend::<Vec<Allowance>>(retired);
            held.draining.retain(|allowance| {
                let done = allowance.in_flight == 0;
                if done {
                    settled.push(Rc::clone(&allowance.id));
                }
                !done
            });
            if held.needs_refill(now_us, idle_us) {
                held.refill_in_flight = true;
                wanted.entry(Rc::clone(user_id)).or_default().insert(*quota);
            }
            !(held.admitting.is_empty() && held.draining.is_empty() && !held.refill_in_flight)
        });
        let refills = wanted
            .into_iter()
            .map(|(user_id, quotas)| Refill { user_id, quotas })
            .collect();
        (settled, refills)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_US: i64 = 1_767_225_600_000_000;
    const SECOND_US: i64 = 1_000_000;
    const IDLE_MS: u32 = 2000;
    const IDLE_US: i64 = 2_000_000;

    fn grant(id: &str, quota: MeteredQuota, granted: u64) -> GrantedAllowance {
        GrantedAllowance {
            quota: quota.name().to_owned(),
            allowance_id: id.to_owned(),
            granted,
            admit_for_ms: 30_000,
            resets_at: 0,
            unlimited: false,
        }
    }

    fn user() -> Rc<str> {
        Rc::from("u_alice")
    }

    #[test]
    fn requests_are_admitted_only_from_what_was_granted() {
        let mut allowances = Allowances::new(IDLE_MS);
        let user = user();
        assert!(allowances
            .take(&user, MeteredQuota::Requests, 1, NOW_US)
            .is_none());
        allowances.granted(&user, &grant("a1", MeteredQuota::Requests, 2), NOW_US);
        let first = allowances.take(&user, MeteredQuota::Requests, 1, NOW_US);
        let second = allowances.take(&user, MeteredQuota::Requests, 1, NOW_US);
        assert!(first.is_some() && second.is_some());
        assert!(allowances
            .take(&user, MeteredQuota::Requests, 1, NOW_US)
            .is_none());

        // A request that did not count gives its share back.
        allowances.finish(&second.expect("taken"), 0);
        assert!(allowances
            .take(&user, MeteredQuota::Requests, 1, NOW_US)
            .is_some());
    }

    #[test]
    fn an_allowance_is_settled_once_its_requests_ended() {
        let mut allowances = Allowances::new(IDLE_MS);
        let user = user();
        allowances.granted(&user, &grant("a1", MeteredQuota::Requests, 1), NOW_US);
        let taken = allowances
            .take(&user, MeteredQuota::Requests, 1, NOW_US)
            .expect("taken");
        let (settled, refills) = allowances.tick(NOW_US + 1);
        assert!(settled.is_empty(), "its request is still in flight");
        assert!(
            refills.is_empty(),
            "a grant of one is not refilled ahead of need"
        );

        assert_eq!(
            allowances.finish(&taken, 1),
            Some(Rc::from("a1")),
            "used up by its last request: settled at once"
        );
        let (settled, _) = allowances.tick(NOW_US + 2);
        assert!(settled.is_empty(), "settled once");
        assert!(allowances.is_empty());
    }

    #[test]
    fn an_allowance_stops_admitting_when_its_time_is_up_and_goes_back_when_idle() {
        let mut allowances = Allowances::new(IDLE_MS);
        let user = user();
        allowances.granted(&user, &grant("a1", MeteredQuota::Requests, 100), NOW_US);
        assert!(allowances
            .take(&user, MeteredQuota::Requests, 1, NOW_US + 31 * SECOND_US)
            .is_none());

        allowances.granted(&user, &grant("a2", MeteredQuota::Requests, 100), NOW_US);
        let taken = allowances
            .take(&user, MeteredQuota::Requests, 1, NOW_US)
            .expect("taken");
        allowances.finish(&taken, 1);
        let (settled, _) = allowances.tick(NOW_US + IDLE_US);
        assert_eq!(settled.len(), 2, "a1 is out of time, a2 idle");
    }

    #[test]
    fn the_next_allowance_is_asked_for_before_this_one_runs_out() {
        let mut allowances = Allowances::new(IDLE_MS);
        let user = user();
        allowances.granted(&user, &grant("a1", MeteredQuota::Requests, 8), NOW_US);
        for _ in 0..6 {
            let taken = allowances
                .take(&user, MeteredQuota::Requests, 1, NOW_US)
                .expect("taken");
            allowances.finish(&taken, 1);
        }
        let (_, refills) = allowances.tick(NOW_US);
        assert!(refills.is_empty(), "a quarter is left");

        let taken = allowances
            .take(&user, MeteredQuota::Requests, 1, NOW_US)
            .expect("taken");
        allowances.finish(&taken, 1);
        let (_, refills) = allowances.tick(NOW_US);
        assert_eq!(
            refills,
            vec![Refill {
                user_id: Rc::clone(&user),
                quotas: MeteredQuotas::from_names(&["monthly_requests"]),
            }]
        );
        let (_, again) = allowances.tick(NOW_US);
        assert!(again.is_empty(), "one refill at a time");
        let quotas = MeteredQuotas::from_names(&["monthly_requests"]);
        allowances.granted(&user, &grant("a2", MeteredQuota::Requests, 8), NOW_US);
        allowances.refill_answered(&user, quotas, NOW_US);
        assert!(allowances.tick(NOW_US).1.is_empty(), "the refill came");

        for _ in 0..9 {
            if let Some(taken) = allowances.take(&user, MeteredQuota::Requests, 1, NOW_US) {
                allowances.finish(&taken, 1);
            }
        }
        assert_eq!(allowances.tick(NOW_US).1.len(), 1, "used up: asked again");
        allowances.refill_answered(&user, quotas, NOW_US);
        assert!(
            allowances.tick(NOW_US).1.is_empty(),
            "nothing was granted: no more asking until a request wants some"
        );
    }

    #[test]
    fn bandwidth_reserves_then_settles_with_the_bytes_that_passed() {
        let mut allowances = Allowances::new(IDLE_MS);
        let user = user();
        allowances.granted(&user, &grant("b1", MeteredQuota::Bandwidth, 1000), NOW_US);
        let big = allowances
            .take(&user, MeteredQuota::Bandwidth, 600, NOW_US)
            .expect("taken");
        let rest = allowances
            .take(&user, MeteredQuota::Bandwidth, 600, NOW_US)
            .expect("the 400 left");
        assert!(allowances
            .take(&user, MeteredQuota::Bandwidth, 1, NOW_US)
            .is_none());

        assert_eq!(allowances.finish(&big, 100), None, "500 came back");
        // 1000 - 100 - 900 = 0 left: used up.
        assert_eq!(allowances.finish(&rest, 900), Some(Rc::from("b1")));
    }
}
