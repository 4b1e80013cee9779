//! Takes requests from the token buckets in Envoy's shared data, which every worker of the
//! Envoy sees: a read, the decision, and a compare-and-swap write per subject.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use tollgate_filter_core::limits::plan::{Draw, ADDRESS_OVERFLOW_SUBJECT};
use tollgate_filter_core::limits::state::{Checked, SubjectState};

/// Writes lost to another worker's are retried this many times, then the request passes:
/// a bucket that busy is better served late than by refusing on contention.
const MAX_ATTEMPTS: usize = 4;

/// The most address buckets one Envoy keeps, about 100 bytes of shared data each. Shared data
/// cannot delete, so beyond this every new address counts against one overflow bucket.
const MAX_ADDRESS_BUCKETS: u64 = 100_000;
const ADDRESS_BUCKETS_KEY: &str = "tollgate:rl:address_buckets";

/// The verdicts of one request against its buckets.
pub struct Admission {
    pub admitted: bool,
    pub checked: Vec<Checked>,
    /// The subject of the first bucket that refused.
    pub refused_by: Option<String>,
}

fn shared_key(subject: &str) -> String {
    format!("tollgate:rl:{subject}")
}

fn read(subject: &str) -> (SubjectState, Option<u32>) {
    read_key(&shared_key(subject))
}

fn read_key(key: &str) -> (SubjectState, Option<u32>) {
    match hostcalls::get_shared_data(key) {
        Ok((Some(bytes), cas)) => (SubjectState::from_bytes(&bytes), cas),
        Ok((None, cas)) => (SubjectState::default(), cas),
        Err(status) => {
            log::warn!("could not read a rate-limit bucket: {status:?}");
            (SubjectState::default(), None)
        }
    }
}

/// Applies `change` to a subject's buckets with compare-and-swap; `false` when every
/// attempt lost to another worker.
pub fn update(subject: &str, mut change: impl FnMut(&mut SubjectState)) -> bool {
    for _ in 0..MAX_ATTEMPTS {
        let (mut state, cas) = read(subject);
        change(&mut state);
        match hostcalls::set_shared_data(&shared_key(subject), Some(&state.to_bytes()), cas) {
            Ok(()) => return true,
            Err(Status::CasMismatch) => {}
            Err(status) => {
                log::warn!("could not write a rate-limit bucket: {status:?}");
                return false;
            }
        }
    }
    false
}

/// Takes one request from every bucket of `draws`, or from none when any refuses.
pub fn admit(draws: &[Draw], now_us: i64, envoys: u32) -> Admission {
    let keys: Vec<String> = draws.iter().map(|draw| shared_key(&draw.subject)).collect();
    let mut done: Vec<Option<Vec<Checked>>> = vec![None; draws.len()];
    for _ in 0..MAX_ATTEMPTS {
        let mut decided = Vec::new();
        for (index, draw) in draws.iter().enumerate() {
            if done[index].is_some() {
                continue;
            }
            let (mut state, cas) = read_key(&keys[index]);
            let checked = state.admit(&draw.limits, now_us, envoys);
            decided.push((index, state, cas, checked));
        }
        let refused_by = decided
            .iter()
            .find(|(_, _, _, checked)| checked.iter().any(|c| !c.verdict.admitted))
            .map(|(index, _, _, _)| draws[*index].subject.clone());
        if refused_by.is_some() {
            // Buckets written in an earlier attempt took the request: they get it back.
            for (index, _) in done.iter().enumerate().filter(|(_, done)| done.is_some()) {
                give_back(&draws[index]);
            }
            let checked = done
                .into_iter()
                .flatten()
                .flatten()
                .chain(decided.into_iter().flat_map(|(_, _, _, checked)| checked))
                .collect();
            return Admission {
                admitted: false,
                checked,
                refused_by,
            };
        }
        let mut lost = false;
        for (index, state, cas, checked) in decided {
            let written = hostcalls::set_shared_data(&keys[index], Some(&state.to_bytes()), cas);
            match written {
                Err(Status::CasMismatch) => lost = true,
                Err(status) => {
                    log::warn!("could not write a rate-limit bucket: {status:?}");
                    done[index] = Some(checked);
                }
                Ok(()) => done[index] = Some(checked),
            }
        }
        if !lost {
            break;
        }
    }
    Admission {
        admitted: true,
        checked: done.into_iter().flatten().flatten().collect(),
        refused_by: None,
    }
}

/// Returns one request to the draw's buckets after it was refused elsewhere.
pub fn give_back(draw: &Draw) {
    update(&draw.subject, |state| state.give_back(&draw.limits));
}

/// The verdicts one more request would get, without taking it.
pub fn peek(draws: &[Draw], now_us: i64, envoys: u32) -> Admission {
    let mut checked = Vec::new();
    let mut refused_by = None;
    for draw in draws {
        let verdicts = read(&draw.subject)
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
    }
}

/// The bucket a failed authentication from `subject`'s address is counted in: its own when it
/// has one or one may still be made, else the overflow bucket.
pub fn address_bucket(subject: String) -> String {
    if matches!(
        hostcalls::get_shared_data(&shared_key(&subject)),
        Ok((Some(_), _))
    ) {
        return subject;
    }
    for _ in 0..MAX_ATTEMPTS {
        let Ok((bytes, cas)) = hostcalls::get_shared_data(ADDRESS_BUCKETS_KEY) else {
            break;
        };
        let held = bytes
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        if held >= MAX_ADDRESS_BUCKETS {
            break;
        }
        let claimed = (held + 1).to_le_bytes();
        match hostcalls::set_shared_data(ADDRESS_BUCKETS_KEY, Some(&claimed), cas) {
            Ok(()) => return subject,
            Err(Status::CasMismatch) => {}
            Err(_) => break,
        }
    }
    ADDRESS_OVERFLOW_SUBJECT.to_owned()
}
