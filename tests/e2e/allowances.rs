//! Quotas held exactly through Envoy: each worker admits only from allowances the control
//! plane granted out of what remains, across Envoys, Envoy deaths and control-plane restarts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate_e2e::{ControlPlane, ControlPlaneOptions, Envoy, EnvoyOptions, Gateway};

/// Rate limits no test here reaches (the default allows 1,000 a minute).
fn unlimited_rate() -> Value {
    json!({
        "requests_per_second": 1_000_000,
        "requests_per_minute": 1_000_000_000,
        "requests_per_hour": 1_000_000_000,
        "mode": "local",
    })
}

/// The user's `monthly_requests` entry of `GET /api/v1/users/{id}/quota`.
fn requests_quota(cp: &ControlPlane, user: &str) -> Value {
    let answer = cp.admin("GET", &format!("/api/v1/users/{user}/quota"), None);
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["quotas"]
        .as_array()
        .and_then(|quotas| quotas.iter().find(|q| q["name"] == "monthly_requests"))
        .cloned()
        .unwrap_or_else(|| panic!("no monthly_requests in {}", answer.text))
}

/// Waits until every allowance is settled and `used` is `expected`; panics with the last entry.
fn wait_until_settled(cp: &ControlPlane, user: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let entry = requests_quota(cp, user);
        if entry["used"] == expected && entry["reserved"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never settled at {expected} used: {entry}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends requests with the key from `threads` threads until each is refused with 402;
/// returns how many were admitted. A 503 (the control plane answered an allowance later
/// than the filter waits, as on a busy machine) is sent again.
fn admitted_until_402(envoy: &Envoy, key: &str, threads: usize) -> u64 {
    let admitted = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let answer = envoy.get_with_key("/", key);
                match answer.status {
                    200 => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    402 => return,
                    503 => answer.assert_refused(503, "control_plane_unavailable"),
                    other => panic!("unexpected {other}: {}", answer.text),
                }
                assert!(Instant::now() < deadline, "no 402 within two minutes");
            });
        }
    });
    admitted.into_inner()
}

#[test]
fn a_request_quota_admits_exactly_its_amount_then_402() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (user, key) = cp.create_user_and_key_with(json!({
        "username": "metered",
        "quotas": {"monthly_requests": 3},
    }));

    assert_eq!(
        gateway.envoy.statuses_with_key(&key, 5),
        [200, 200, 200, 402, 402]
    );

    let refused = gateway.envoy.get_with_key("/", &key);
    refused.assert_refused(402, "quota_exceeded");
    assert_eq!(refused.body["error"]["quota"], "monthly_requests");
    let period = cp.admin("GET", &format!("/api/v1/users/{user}/quota"), None);
    let resets_at = refused.body["error"]["resets_at"]
        .as_str()
        .expect("resets_at");
    let period_end = period.body["period_end"].as_str().expect("period_end");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(resets_at).expect("RFC 3339"),
        chrono::DateTime::parse_from_rfc3339(period_end).expect("RFC 3339"),
    );
    wait_until_settled(cp, &user, 3);

    let raised = cp.patch_user(&user, json!({"quotas": {"monthly_requests": 5}}));
    assert_eq!(raised.status, 200, "{}", raised.text);
    let request = || gateway.envoy.get_with_key("/", &key);
    let took = gateway
        .envoy
        .until(Duration::from_secs(5), request, |a| a.status == 200);
    assert!(took < Duration::from_secs(1), "the raise took {took:?}");
    assert_eq!(gateway.envoy.statuses_with_key(&key, 2), [200, 402]);
    wait_until_settled(cp, &user, 5);
}

#[test]
fn two_envoys_under_load_admit_no_more_than_the_quota() {
    const QUOTA: u64 = 10_000;
    // An allowance whose answer came after the filter stopped waiting is held until it
    // times out: short here, so that the test ends with every allowance settled.
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[
        ("TOLLGATE_QUOTAS__ALLOWANCE_TIMEOUT_SECS", "20"),
        ("TOLLGATE_QUOTAS__ALLOWANCE_ADMIT_SECS", "10"),
    ]));
    let cp = &gateway.control_plane;
    let second = gateway.another_envoy(EnvoyOptions::default());
    let (user, key) = cp.create_user_and_key_with(json!({
        "username": "shared",
        "quotas": {"monthly_requests": QUOTA},
        "rate_limits": unlimited_rate(),
    }));

    let (first_admitted, second_admitted) = std::thread::scope(|scope| {
        let first = scope.spawn(|| admitted_until_402(&gateway.envoy, &key, 4));
        let second = scope.spawn(|| admitted_until_402(&second, &key, 4));
        (
            first.join().expect("first Envoy's load"),
            second.join().expect("second Envoy's load"),
        )
    });

    let admitted = first_admitted + second_admitted;
    assert!(admitted <= QUOTA, "{admitted} admitted of {QUOTA}");
    assert!(
        first_admitted > 0 && second_admitted > 0,
        "both Envoys served: {first_admitted} and {second_admitted}"
    );
    wait_until_settled(cp, &user, admitted);
    let grants = cp.metric(
        "tollgate_allowances_granted_total",
        "quota=\"monthly_requests\"",
    );
    eprintln!(
        "{admitted} admitted ({first_admitted} + {second_admitted}) with {grants} allowances"
    );
}

#[test]
fn an_envoy_killed_holding_an_allowance_and_a_control_plane_restart_lose_nothing() {
    const QUOTA: u64 = 100;
    const TIMEOUT: Duration = Duration::from_secs(20);
    let mut gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[
        ("TOLLGATE_QUOTAS__ALLOWANCE_TIMEOUT_SECS", "20"),
        ("TOLLGATE_QUOTAS__ALLOWANCE_ADMIT_SECS", "10"),
    ]));
    let (user, key) = gateway.control_plane.create_user_and_key_with(json!({
        "username": "survivor",
        "quotas": {"monthly_requests": QUOTA},
    }));
    // Its allowance stays held while idle, as a busy Envoy's would.
    let doomed = gateway.another_envoy(EnvoyOptions {
        workers: 1,
        filter_config: Some(r#"{"allowance_idle_ms": 600000}"#.to_owned()),
        ..EnvoyOptions::default()
    });
    let granted_before = Instant::now();
    assert_eq!(doomed.statuses_with_key(&key, 5), [200; 5]);
    // The usage report (every second) carries the five; the allowance stays held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while requests_quota(&gateway.control_plane, &user)["used"] != 5 {
        assert!(Instant::now() < deadline, "the five were never reported");
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = requests_quota(&gateway.control_plane, &user)["reserved"].clone();
    assert!(held.as_u64().is_some_and(|held| held > 0), "held: {held}");
    drop(doomed);

    gateway.control_plane.stop();
    gateway.control_plane.resume();
    assert_eq!(
        requests_quota(&gateway.control_plane, &user)["reserved"],
        held,
        "the dead Envoy's allowance outlived the restart"
    );

    let admitted = 5 + admitted_until_402(&gateway.envoy, &key, 2);
    assert!(
        admitted < QUOTA,
        "{admitted} admitted while the dead Envoy held the rest"
    );
    // Once the dead Envoy's allowance timed out, its rest is admitted too.
    std::thread::sleep(
        (granted_before + TIMEOUT + Duration::from_secs(1))
            .saturating_duration_since(Instant::now()),
    );
    let rest = admitted_until_402(&gateway.envoy, &key, 1);
    assert_eq!(admitted + rest, QUOTA);
    wait_until_settled(&gateway.control_plane, &user, QUOTA);
}
