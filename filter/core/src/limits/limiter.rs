//! Takes requests from the token buckets in Envoy's shared data, which every worker of the
//! Envoy sees: a read, the decision, and a compare-and-swap write per subject, for one
//! request or, while a bucket is far from empty, for a lease of several (see
//! [`super::lease`]).

use std::cell::RefCell;
use std::collections::HashMap;

use super::lease::{lease_size, Lease, LEASE_SETTLED_WITHIN_US};
use super::plan::{Draw, ADDRESS_OVERFLOW_SUBJECT};
use super::state::{Checked, SubjectState};
use crate::host::{Host, WriteError};
use crate::proto::RateLimit;

/// Writes lost to another worker's are retried this many times, then the request passes:
/// a bucket that busy is better served late than by refusing on contention.
const MAX_ATTEMPTS: usize = 4;

/// The most address buckets one Envoy keeps, about 100 bytes of shared data each. Shared data
/// cannot delete, so beyond this every new address counts against one overflow bucket.
pub(crate) const MAX_ADDRESS_BUCKETS: u64 = 100_000;
pub(crate) const ADDRESS_BUCKETS_KEY: &str = "tollgate:rl:address_buckets";

/// The verdicts of one request against its buckets.
pub struct Admission {
    pub admitted: bool,
    pub checked: Vec<Checked>,
    /// The subject of the first bucket that refused.
    pub refused_by: Option<String>,
    /// Whether shared buckets were written (else only this worker's leases were used), so
    /// that their `fast` counts are reported at the next sync.
    pub wrote_shared: bool,
}

fn shared_key(subject: &str) -> String {
    format!("tollgate:rl:{subject}")
}

fn read(host: &impl Host, subject: &str) -> (SubjectState, Option<u32>) {
    read_key(host, &shared_key(subject))
}

fn read_key(host: &impl Host, key: &str) -> (SubjectState, Option<u32>) {
    match host.shared_data_get(key) {
        Some((bytes, cas)) => (SubjectState::from_bytes(&bytes), cas),
        None => (SubjectState::default(), None),
    }
}

/// Applies `change` to a subject's buckets with compare-and-swap; `false` when every
/// attempt lost to another worker.
pub fn update(host: &impl Host, subject: &str, mut change: impl FnMut(&mut SubjectState)) -> bool {
    for _ in 0..MAX_ATTEMPTS {
        let (mut state, cas) = read(host, subject);
        change(&mut state);
        match host.shared_data_set(&shared_key(subject), &state.to_bytes(), cas) {
            Ok(()) => return true,
            Err(WriteError::CasMismatch) => {}
            Err(WriteError::Failed(error)) => {
                log::warn!("could not write a rate-limit bucket: {error}");
                return false;
            }
        }
    }
    false
}

/// This worker's leases, by subject: requests taken from shared buckets ahead of need.
#[derive(Default)]
pub struct Limiter {
    leases: RefCell<HashMap<String, Lease>>,
}

/// One draw as taken from the shared buckets: how many requests, and their verdicts.
struct Taken {
    count: u32,
    checked: Vec<Checked>,
}

impl Limiter {
    /// Takes one request from every bucket of `draws`, or from none when any refuses: from
    /// this worker's lease on a subject when it has one, else from shared data, leasing a
    /// few more while the buckets are far from empty.
    pub fn admit(&self, host: &impl Host, draws: &[Draw], now_us: i64, envoys: u32) -> Admission {
        let Ok(mut leases) = self.leases.try_borrow_mut() else {
            return take_shared(host, draws.iter().collect(), now_us, envoys, None);
        };
        let mut checked = Vec::new();
        let mut leased = Vec::new();
        let mut unleased = Vec::new();
        for draw in draws {
            let from_lease = leases
                .get_mut(&draw.subject)
                .and_then(|lease| lease.take(&draw.limits, now_us));
            match from_lease {
                Some(verdicts) => {
                    checked.extend(verdicts);
                    leased.push(&draw.subject);
                }
                None => unleased.push(draw),
            }
        }
        if unleased.is_empty() {
            return Admission {
                admitted: true,
                checked,
                refused_by: None,
                wrote_shared: false,
            };
        }
        let mut admission = take_shared(host, unleased, now_us, envoys, Some(&mut leases));
        if !admission.admitted {
            for subject in leased {
                if let Some(lease) = leases.get_mut(subject) {
                    lease.put_back();
                }
            }
        }
        admission.checked.extend(checked);
        admission
    }

    /// The verdicts one more request would get, without taking it.
    pub fn peek(&self, host: &impl Host, draws: &[Draw], now_us: i64, envoys: u32) -> Admission {
        let leases = self.leases.try_borrow().ok();
        let mut checked = Vec::new();
        let mut refused_by = None;
        for draw in draws {
            let leased = leases
                .as_ref()
                .and_then(|leases| leases.get(&draw.subject))
                .is_some_and(|lease| lease.usable(&draw.limits, now_us));
            if leased {
                continue;
            }
            let verdicts = read(host, &draw.subject)
                .0
                .would_admit(&draw.limits, now_us, envoys);
            if refused_by.is_none() && verdicts.iter().any(|c| !c.verdict.admitted) {
                refused_by = Some(draw.subject.clone());
            }
            checked.extend(verdicts);
        }
        Admission {
            admitted: refused_by.is_none(),
            checked,
            refused_by,
            wrote_shared: false,
        }
    }

    /// Returns the requests [`Limiter::admit`] took from `draws` after the request was refused
    /// elsewhere: to this worker's lease on a subject when it holds one, else to the shared
    /// buckets.
    pub fn give_back(&self, host: &impl Host, draws: &[Draw]) {
        for draw in draws {
            let put_back = self.leases.try_borrow_mut().is_ok_and(|mut leases| {
                leases
                    .get_mut(&draw.subject)
                    .filter(|lease| lease.settlement().0 == draw.limits.as_slice())
                    .is_some_and(Lease::put_back)
            });
            if !put_back {
                update(host, &draw.subject, |state| state.give_back(&draw.limits));
            }
        }
    }

    /// Settles expired leases in the shared buckets: what they gave counts as admitted, what
    /// they did not goes back. Returns the subjects with newly admitted requests, to report.
    pub fn settle_expired(&self, host: &impl Host, now_us: i64) -> Vec<(String, Vec<RateLimit>)> {
        let mut admitted = Vec::new();
        let Ok(mut leases) = self.leases.try_borrow_mut() else {
            return admitted;
        };
        leases.retain(|subject, lease| {
            if !lease.is_expired(now_us) {
                return true;
            }
            let (limits, used, unused) = lease.settlement();
            update(host, subject, |state| state.settle(limits, used, unused));
            if used > 0 {
                admitted.push((subject.clone(), limits.to_vec()));
            }
            false
        });
        admitted
    }
}

/// Takes `draws` from shared data with compare-and-swap, all or none. With `leases`, a draw
/// whose buckets have room takes a lease along, and the lease it replaces (used up or
/// expired) is settled in the same write.
fn take_shared(
    host: &impl Host,
    draws: Vec<&Draw>,
    now_us: i64,
    envoys: u32,
    mut leases: Option<&mut HashMap<String, Lease>>,
) -> Admission {
    let keys: Vec<String> = draws.iter().map(|draw| shared_key(&draw.subject)).collect();
    let mut done: Vec<Option<Taken>> = draws.iter().map(|_| None).collect();
    for _ in 0..MAX_ATTEMPTS {
        let mut decided = Vec::new();
        for (index, draw) in draws.iter().enumerate() {
            if done[index].is_some() {
                continue;
            }
            let (mut state, cas) = read_key(host, &keys[index]);
            let old = leases.as_ref().and_then(|leases| leases.get(&draw.subject));
            if let Some(old) = old {
                let (limits, used, unused) = old.settlement();
                state.settle(limits, used, unused);
            }
            let count = match leases {
                Some(_) => lease_size(state.capacity(&draw.limits, now_us, envoys)),
                None => 1,
            };
            let mut checked = state.take(&draw.limits, now_us, envoys, count);
            let mut count = count;
            if count > 1 && checked.iter().any(|c| !c.verdict.admitted) {
                count = 1;
                checked = state.take(&draw.limits, now_us, envoys, 1);
            }
            if checked.iter().all(|c| c.verdict.admitted) {
                match count {
                    1 => state.count_admitted(&draw.limits, 1),
                    leased => {
                        let settled_by = now_us + LEASE_SETTLED_WITHIN_US;
                        state.lease_out(&draw.limits, leased, now_us, settled_by);
                    }
                }
            }
            decided.push((index, state, cas, Taken { count, checked }));
        }
        let refused_by = decided
            .iter()
            .find(|(_, _, _, taken)| taken.checked.iter().any(|c| !c.verdict.admitted))
            .map(|(index, _, _, _)| draws[*index].subject.clone());
        if refused_by.is_some() {
            // Buckets written in an earlier attempt took the request: they get it back. Their
            // writes also settled any lease they replaced, which is reported.
            let wrote_shared = done.iter().any(Option::is_some);
            for (index, taken) in done.iter().enumerate() {
                if let Some(taken) = taken {
                    let draw = draws[index];
                    if let Some(leases) = leases.as_mut() {
                        leases.remove(&draw.subject);
                    }
                    update(host, &draw.subject, |state| match taken.count {
                        1 => state.give_back(&draw.limits),
                        count => state.settle(&draw.limits, 0, count),
                    });
                }
            }
            let checked = done
                .into_iter()
                .flatten()
                .chain(decided.into_iter().map(|(_, _, _, taken)| taken))
                .flat_map(|taken| taken.checked)
                .collect();
            return Admission {
                admitted: false,
                checked,
                refused_by,
                wrote_shared,
            };
        }
        let mut lost = false;
        for (index, state, cas, taken) in decided {
            match host.shared_data_set(&keys[index], &state.to_bytes(), cas) {
                Err(WriteError::CasMismatch) => lost = true,
                Err(WriteError::Failed(error)) => {
                    // The request passes, but nothing was taken: no lease comes of it.
                    log::warn!("could not write a rate-limit bucket: {error}");
                    done[index] = Some(Taken {
                        count: 1,
                        checked: taken.checked,
                    });
                }
                Ok(()) => done[index] = Some(taken),
            }
        }
        if !lost {
            break;
        }
    }
    let mut checked = Vec::new();
    for (draw, taken) in draws.iter().zip(done) {
        let Some(taken) = taken else {
            continue;
        };
        let Some(leases) = leases.as_mut() else {
            checked.extend(taken.checked);
            continue;
        };
        leases.remove(&draw.subject);
        if taken.count == 1 {
            checked.extend(taken.checked);
            continue;
        }
        let mut lease = Lease::new(&draw.limits, taken.count, taken.checked, now_us);
        checked.extend(lease.take(&draw.limits, now_us).unwrap_or_default());
        leases.insert(draw.subject.clone(), lease);
    }
    Admission {
        admitted: true,
        checked,
        refused_by: None,
        wrote_shared: true,
    }
}

/// The bucket a failed authentication from `subject`'s address is counted in: its own when it
/// has one or one may still be made (which claims it), else the overflow bucket.
pub fn address_bucket(host: &impl Host, subject: String) -> String {
    if host.shared_data_get(&shared_key(&subject)).is_some() {
        return subject;
    }
    for _ in 0..MAX_ATTEMPTS {
        let (held, cas) = address_buckets_held(host);
        if held >= MAX_ADDRESS_BUCKETS {
            break;
        }
        let claimed = (held + 1).to_le_bytes();
        match host.shared_data_set(ADDRESS_BUCKETS_KEY, &claimed, cas) {
            Ok(()) => return subject,
            Err(WriteError::CasMismatch) => {}
            Err(WriteError::Failed(_)) => break,
        }
    }
    ADDRESS_OVERFLOW_SUBJECT.to_owned()
}

/// The bucket [`address_bucket`] would count `subject`'s address in, without claiming one:
/// the bucket that can be refusing the address.
pub fn address_bucket_in_use(host: &impl Host, subject: String) -> String {
    if host.shared_data_get(&shared_key(&subject)).is_some()
        || address_buckets_held(host).0 < MAX_ADDRESS_BUCKETS
    {
        return subject;
    }
    ADDRESS_OVERFLOW_SUBJECT.to_owned()
}

/// How many address buckets this Envoy holds, and the version of that count.
fn address_buckets_held(host: &impl Host) -> (u64, Option<u32>) {
    let (bytes, cas) = host.shared_data_get(ADDRESS_BUCKETS_KEY).unzip();
    let held = bytes
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map_or(0, u64::from_le_bytes);
    (held, cas.flatten())
}

#[cfg(test)]
mod tests;
