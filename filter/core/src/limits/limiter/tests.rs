use std::rc::Rc;

use super::*;
use crate::host::memory::MemoryHost;
use crate::proto::{LimitLevel, LimitMode};

const NOW_US: i64 = 1_767_225_600_000_000;

fn per_minute(burst: u64, mode: LimitMode) -> RateLimit {
    RateLimit {
        level: LimitLevel::User.into(),
        window_seconds: 60,
        requests: 600,
        burst,
        mode: mode.into(),
    }
}

fn draw(subject: &str, limit: RateLimit) -> Draw {
    Draw {
        subject: subject.to_owned(),
        limits: vec![limit],
    }
}

/// What the subject's shared buckets can still give.
fn capacity(host: &MemoryHost, draw: &Draw) -> u64 {
    let bytes = host.shared(&shared_key(&draw.subject)).unwrap_or_default();
    SubjectState::from_bytes(&bytes).capacity(&draw.limits, host.now_us(), 1)
}

#[test]
fn a_worker_leases_a_few_requests_and_spends_them_without_shared_data() {
    let host = MemoryHost::at(NOW_US);
    let limiter = Limiter::default();
    let user = [draw("user:u", per_minute(160, LimitMode::Local))];

    let first = limiter.admit(&host, &user, NOW_US, 1);
    assert!(first.admitted && first.wrote_shared);
    assert_eq!(capacity(&host, &user[0]), 160 - 16, "a lease of 16");
    for _ in 1..16 {
        let leased = limiter.admit(&host, &user, NOW_US, 1);
        assert!(leased.admitted && !leased.wrote_shared);
    }
    assert_eq!(host.writes(), 1);
    assert!(
        limiter.admit(&host, &user, NOW_US, 1).wrote_shared,
        "used up"
    );
}

#[test]
fn near_the_limit_every_request_is_counted_in_shared_data() {
    let host = MemoryHost::at(NOW_US);
    let limiter = Limiter::default();
    let user = [draw("user:u", per_minute(2, LimitMode::Local))];
    for _ in 0..2 {
        assert!(limiter.admit(&host, &user, NOW_US, 1).admitted);
    }
    let refused = limiter.admit(&host, &user, NOW_US, 1);
    assert_eq!(refused_by(&refused), Some("user:u"));
    assert!(retry_after_us(&refused) > 0);
    assert_eq!(host.writes(), 2, "a refusal writes nothing");
}

/// The subject that refused the request; `None` when it was admitted.
fn refused_by(admission: &Admission) -> Option<&str> {
    assert_eq!(admission.admitted, admission.refused_by.is_none());
    admission.refused_by.as_deref()
}

fn retry_after_us(admission: &Admission) -> i64 {
    admission
        .checked
        .iter()
        .map(|c| c.verdict.retry_after_us)
        .max()
        .unwrap_or(0)
}

#[test]
fn a_write_lost_to_another_worker_is_retried_on_what_that_worker_wrote() {
    let host = MemoryHost::at(NOW_US);
    let other_host = Rc::new(host.another_worker());
    let other = Rc::new(Limiter::default());
    let user = [draw("user:u", per_minute(5, LimitMode::Local))];
    // A bucket's first write cannot be a compare-and-swap: the key does not exist yet.
    assert!(other.admit(&*other_host, &user, NOW_US, 1).admitted);
    let interfered = Rc::new(std::cell::Cell::new(false));
    {
        let (other_host, other, user, interfered) = (
            Rc::clone(&other_host),
            Rc::clone(&other),
            user.clone(),
            Rc::clone(&interfered),
        );
        host.before_each_write(move |_key| {
            if !interfered.replace(true) {
                assert!(other.admit(&*other_host, &user, NOW_US, 1).admitted);
            }
        });
    }

    let admission = Limiter::default().admit(&host, &user, NOW_US, 1);

    assert!(admission.admitted);
    assert_eq!(host.writes(), 2, "lost once, then written");
    assert_eq!(capacity(&host, &user[0]), 2, "every request counted");
}

#[test]
fn a_bucket_that_keeps_changing_lets_the_request_pass_without_counting_it() {
    let host = MemoryHost::at(NOW_US);
    let other_host = host.another_worker();
    host.before_each_write(move |key| {
        let (bytes, _) = other_host.shared_data_get(key).unwrap_or_default();
        assert!(other_host.shared_data_set(key, &bytes, None).is_ok());
    });
    let user = [draw("user:u", per_minute(5, LimitMode::Local))];
    let empty = SubjectState::default().to_bytes();
    assert!(host
        .shared_data_set(&shared_key("user:u"), &empty, None)
        .is_ok());

    let admission = Limiter::default().admit(&host, &user, NOW_US, 1);

    assert!(admission.admitted);
    assert_eq!(host.writes(), 1 + MAX_ATTEMPTS as u32);
    assert_eq!(capacity(&host, &user[0]), 5);
}

#[test]
fn a_request_refused_by_one_bucket_takes_nothing_from_the_others() {
    let host = MemoryHost::at(NOW_US);
    let limiter = Limiter::default();
    let key = draw("key:k", per_minute(1, LimitMode::Local));
    assert!(
        limiter
            .admit(&host, std::slice::from_ref(&key), NOW_US, 1)
            .admitted
    );
    let both = [draw("user:u", per_minute(5, LimitMode::Local)), key];

    let refused = limiter.admit(&host, &both, NOW_US, 1);

    assert_eq!(refused_by(&refused), Some("key:k"));
    assert_eq!(capacity(&host, &both[0]), 5);
}

#[test]
fn a_request_refused_elsewhere_goes_back_to_the_lease_or_the_buckets() {
    let (host, limiter) = (MemoryHost::at(NOW_US), Limiter::default());
    let leased = [draw("user:u", per_minute(160, LimitMode::Local))];
    let single = [draw("key:k", per_minute(5, LimitMode::Local))];
    assert!(limiter.admit(&host, &leased, NOW_US, 1).admitted);
    assert!(limiter.admit(&host, &single, NOW_US, 1).admitted);
    assert_eq!(capacity(&host, &single[0]), 4);

    limiter.give_back(&host, &leased);
    limiter.give_back(&host, &single);

    assert_eq!(capacity(&host, &single[0]), 5);
    let settled = limiter.settle_expired(&host, NOW_US + LEASE_SETTLED_WITHIN_US);
    assert!(settled.is_empty(), "the lease gave nothing");
    assert_eq!(capacity(&host, &leased[0]), 160);
}

#[test]
fn an_expired_lease_is_settled_and_what_it_gave_is_reported() {
    let host = MemoryHost::at(NOW_US);
    let limiter = Limiter::default();
    let user = [draw("user:u", per_minute(160, LimitMode::Fast))];
    for _ in 0..3 {
        assert!(limiter.admit(&host, &user, NOW_US, 1).admitted);
    }

    assert!(
        limiter.settle_expired(&host, NOW_US + 1).is_empty(),
        "not yet"
    );
    let later = NOW_US + super::super::lease::LEASE_LIFETIME_US;
    let settled = limiter.settle_expired(&host, later);

    assert_eq!(settled, vec![("user:u".to_owned(), user[0].limits.clone())]);
    let unreported = update(&host, "user:u", |state| {
        assert_eq!(state.take_unreported(), vec![(60, 3)]);
    });
    assert!(unreported);
}

#[test]
fn peeking_takes_nothing() {
    let host = MemoryHost::at(NOW_US);
    let limiter = Limiter::default();
    let address = [draw("ip:192.0.2.1", per_minute(1, LimitMode::Fast))];
    assert!(limiter.peek(&host, &address, NOW_US, 1).admitted);
    assert!(limiter.admit(&host, &address, NOW_US, 1).admitted);
    let peeked = limiter.peek(&host, &address, NOW_US, 1);
    assert_eq!(refused_by(&peeked), Some("ip:192.0.2.1"));
    assert_eq!(host.writes(), 1);
}

#[test]
fn addresses_beyond_the_most_buckets_share_the_overflow_bucket() {
    let host = MemoryHost::at(NOW_US);
    assert_eq!(
        address_bucket(&host, "ip:192.0.2.1".to_owned()),
        "ip:192.0.2.1"
    );
    let full = MAX_ADDRESS_BUCKETS.to_le_bytes();
    assert!(host
        .shared_data_set(ADDRESS_BUCKETS_KEY, &full, None)
        .is_ok());
    assert_eq!(
        address_bucket(&host, "ip:192.0.2.2".to_owned()),
        ADDRESS_OVERFLOW_SUBJECT
    );
    let known = [draw("ip:192.0.2.3", per_minute(5, LimitMode::Fast))];
    assert!(Limiter::default().admit(&host, &known, NOW_US, 1).admitted);
    assert_eq!(
        address_bucket(&host, "ip:192.0.2.3".to_owned()),
        "ip:192.0.2.3"
    );
}

#[test]
fn the_bucket_in_use_is_found_without_claiming_one() {
    let host = MemoryHost::at(NOW_US);
    assert_eq!(
        address_bucket_in_use(&host, "ip:192.0.2.1".to_owned()),
        "ip:192.0.2.1"
    );
    assert_eq!(host.writes(), 0, "nothing claimed");
    let known = [draw("ip:192.0.2.3", per_minute(5, LimitMode::Fast))];
    assert!(Limiter::default().admit(&host, &known, NOW_US, 1).admitted);
    let full = MAX_ADDRESS_BUCKETS.to_le_bytes();
    assert!(host
        .shared_data_set(ADDRESS_BUCKETS_KEY, &full, None)
        .is_ok());

    assert_eq!(
        address_bucket_in_use(&host, "ip:192.0.2.2".to_owned()),
        ADDRESS_OVERFLOW_SUBJECT
    );
    assert_eq!(
        address_bucket_in_use(&host, "ip:192.0.2.3".to_owned()),
        "ip:192.0.2.3"
    );
}
