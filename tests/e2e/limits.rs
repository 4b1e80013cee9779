//! Rate limits through Envoy: each level refuses with 429 and the `X-RateLimit-*` headers,
//! and a refused request never reaches the upstream.

use std::time::Duration;

use serde_json::json;
use tollgate_e2e::http::Answer;
use tollgate_e2e::{ControlPlaneOptions, EnvoyOptions, Gateway};

#[test]
fn a_user_limit_admits_its_burst_then_refuses_with_429_and_headers() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key_with(json!({
        "username": "limited",
        "rate_limits": {"requests_per_minute": 5, "mode": "local"},
    }));

    for expected_remaining in (0..5).rev() {
        let answer = gateway.envoy.get_with_key("/", &key);
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.header("x-ratelimit-limit"), "5");
        assert_eq!(
            answer.header("x-ratelimit-remaining"),
            expected_remaining.to_string()
        );
        let reset: i64 = answer.header("x-ratelimit-reset").parse().expect("reset");
        let now = chrono::Utc::now().timestamp();
        assert!(
            reset > now && reset <= now + 61,
            "reset {reset} vs now {now}"
        );
    }
    let upstream_before = gateway.envoy.upstream_requests();
    let refused = gateway.envoy.get_with_key("/", &key);
    refused.assert_refused(429, "rate_limited");
    let retry_after: u64 = refused.header("retry-after").parse().expect("Retry-After");
    assert!(
        (11..=12).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    assert_eq!(gateway.envoy.upstream_requests(), upstream_before);
    gateway.envoy.wait_for_stat(
        "wasmcustom.tollgate.rate_limited.user",
        1,
        Duration::from_secs(2),
    );
}

#[test]
fn a_user_override_beats_the_group_limit_and_members_inherit_it() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let member = cp.create_user("member");
    let overridden = cp.create_user_with(json!({
        "username": "overridden",
        "rate_limits": {"requests_per_minute": 6},
    }));
    let group_id = cp.create_group(
        json!({"name": "small", "rate_limits": {"requests_per_minute": 3, "mode": "local"}}),
    );
    for user in [&member, &overridden] {
        cp.add_group_member(&group_id, user);
    }
    let (_, member_key) = cp.create_key(&member);
    let (_, overridden_key) = cp.create_key(&overridden);

    assert_eq!(
        gateway.envoy.statuses_with_key(&member_key, 4),
        [200, 200, 200, 429]
    );
    assert_eq!(
        gateway.envoy.statuses_with_key(&overridden_key, 7),
        [200, 200, 200, 200, 200, 200, 429]
    );
}

#[test]
fn a_key_limit_holds_for_its_key_only() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let user = cp.create_user("two-keys");
    let (_, slow_key) = cp.create_key_with(
        &user,
        json!({"name": "slow", "rate_limits": {"requests_per_hour": 2, "mode": "local"}}),
    );
    let (_, other_key) = cp.create_key(&user);

    assert_eq!(
        gateway.envoy.statuses_with_key(&slow_key, 3),
        [200, 200, 429]
    );
    assert_eq!(
        gateway.envoy.statuses_with_key(&other_key, 3),
        [200, 200, 200]
    );
}

#[test]
fn a_route_limit_holds_for_all_users_together_where_configured() {
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[(
        "TOLLGATE_LIMITS__ROUTES",
        r#"[{route="/reports/", requests_per_minute=3, mode="local"}]"#,
    )]));
    let cp = &gateway.control_plane;
    let (_, first) = cp.create_user_and_key("first");
    let (_, second) = cp.create_user_and_key("second");
    let report = |key: &str| gateway.envoy.get_with_key("/reports/1", key).status;

    assert_eq!([report(&first), report(&second), report(&first)], [200; 3]);
    assert_eq!(report(&second), 429);
    assert_eq!(
        gateway.envoy.get_with_key("/other", &second).status,
        200,
        "other routes are not limited"
    );
}

#[test]
fn an_address_is_limited_on_failed_authentications_only() {
    let gateway = Gateway::start_with(ControlPlaneOptions::with_env(&[
        ("TOLLGATE_LIMITS__IP__REQUESTS_PER_MINUTE", "3"),
        ("TOLLGATE_LIMITS__IP__BURST", "3"),
    ]));
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key("behind-nat");

    assert!(
        gateway
            .envoy
            .statuses_with_key(&key, 10)
            .iter()
            .all(|s| *s == 200),
        "successful requests do not count against the address"
    );
    let guesses = gateway
        .envoy
        .statuses_with_key("tg_guess_000000000000000000000000000000", 4);
    assert_eq!(guesses, [401, 401, 401, 429]);
    gateway.envoy.wait_for_worker_ticks();
    let blocked = gateway.envoy.get_with_key("/", &key);
    assert_eq!(
        blocked.status, 429,
        "a blocked address learns nothing, not even from a valid key"
    );
    assert!(blocked.header("retry-after").parse::<u64>().is_ok());
}

#[test]
fn a_guessing_address_is_blocked_and_its_neighbours_are_not() {
    let gateway = Gateway::start_configured(
        ControlPlaneOptions::with_env(&[
            ("TOLLGATE_LIMITS__IP__REQUESTS_PER_MINUTE", "3"),
            ("TOLLGATE_LIMITS__IP__BURST", "3"),
        ]),
        Some(r#"{"trusted_hops":1}"#.to_string()),
    );
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key("neighbour");
    let from = |address: &str, key: &str| {
        gateway
            .envoy
            .get("/", &[("x-api-key", key), ("x-forwarded-for", address)])
            .status
    };
    let guess = "tg_guess_000000000000000000000000000000";

    let guesses: Vec<u16> = (0..4).map(|_| from("203.0.113.9", guess)).collect();
    assert_eq!(guesses, [401, 401, 401, 429]);
    gateway.envoy.wait_for_worker_ticks();
    assert_eq!(from("203.0.113.9", &key), 429, "the guesser stays blocked");
    assert_eq!(from("203.0.113.10", &key), 200, "its neighbour is not");
    assert_eq!(
        from("203.0.113.10", guess),
        401,
        "and has a bucket of its own"
    );

    let guesses: Vec<u16> = (0..4).map(|_| from("2001:db8:1:2::7", guess)).collect();
    assert_eq!(guesses, [401, 401, 401, 429]);
    gateway.envoy.wait_for_worker_ticks();
    assert_eq!(
        from("2001:db8:1:2::8", &key),
        429,
        "an IPv6 /64 counts as one address"
    );
    assert_eq!(from("2001:db8:1:3::7", &key), 200);
}

#[test]
fn rate_limit_headers_can_be_kept_to_refusals() {
    let gateway = Gateway::start_with_filter_config(r#"{"rate_limit_headers":"refusals"}"#);
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key_with(json!({
        "username": "quiet",
        "rate_limits": {"requests_per_minute": 2, "mode": "local"},
    }));

    for _ in 0..2 {
        let answer = gateway.envoy.get_with_key("/", &key);
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert!(answer.headers.get("x-ratelimit-limit").is_none());
        assert!(answer.headers.get("x-ratelimit-remaining").is_none());
    }
    let refused = gateway.envoy.get_with_key("/", &key);
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.header("x-ratelimit-limit"), "2");
    assert_eq!(refused.header("x-ratelimit-remaining"), "0");
    assert!(refused.header("retry-after").parse::<u64>().is_ok());
}

#[test]
fn exact_limits_are_counted_by_the_control_plane() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key_with(json!({
        "username": "exact",
        "rate_limits": {"requests_per_minute": 3, "mode": "exact"},
    }));

    let answers: Vec<Answer> = (0..4)
        .map(|_| gateway.envoy.get_with_key("/", &key))
        .collect();
    let seen: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(seen, [200, 200, 200, 429]);
    assert_eq!(answers[2].header("x-ratelimit-remaining"), "0");
    assert!(cp.metric("tollgate_limit_checks_total", "limited") >= 1.0);
}

#[test]
fn exact_limits_fail_closed_when_the_control_plane_is_gone() {
    let mut gateway = Gateway::start();
    let (_, key) = gateway.control_plane.create_user_and_key_with(json!({
        "username": "exact-closed",
        "rate_limits": {"requests_per_minute": 100, "mode": "exact"},
    }));
    assert_eq!(gateway.envoy.get_with_key("/", &key).status, 200);

    gateway.control_plane.stop();
    let answer = gateway.envoy.get_with_key("/", &key);
    answer.assert_refused(503, "rate_limiter_unavailable");
}

#[test]
fn two_envoys_share_one_exact_limit() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let second = gateway.another_envoy(EnvoyOptions::default());
    let (_, key) = cp.create_user_and_key_with(json!({
        "username": "shared",
        "rate_limits": {"requests_per_minute": 10, "mode": "exact"},
    }));

    let admitted = (0..20)
        .map(|i| {
            let envoy = if i % 2 == 0 { &gateway.envoy } else { &second };
            envoy.get_with_key("/", &key).status
        })
        .filter(|status| *status == 200)
        .count();
    assert_eq!(admitted, 10);
}

#[test]
fn fast_limits_admit_locally_and_sync_in_the_background() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key_with(json!({
        "username": "fast",
        "rate_limits": {"requests_per_minute": 5, "mode": "fast"},
    }));

    assert_eq!(
        gateway.envoy.statuses_with_key(&key, 6),
        [200, 200, 200, 200, 200, 429]
    );
    let synced = std::time::Instant::now();
    while cp.metric("tollgate_limit_syncs_total", r#"result="ok""#) < 1.0 {
        assert!(
            synced.elapsed() < Duration::from_secs(5),
            "no sync reached the control plane"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn leases_spread_over_workers_never_admit_more_than_the_limit() {
    let gateway = Gateway::start();
    let cp = &gateway.control_plane;
    let (_, key) = cp.create_user_and_key_with(json!({
        "username": "leased",
        "rate_limits": {"requests_per_hour": 200, "mode": "local"},
    }));
    let admitted = |statuses: &[u16]| statuses.iter().filter(|status| **status == 200).count();

    let first = gateway.envoy.statuses_with_key(&key, 200);
    assert!(
        admitted(&first) >= 195,
        "only {} of the first 200 admitted: {first:?}",
        admitted(&first)
    );
    // What a worker leased and did not use goes back to the bucket within a tick.
    std::thread::sleep(Duration::from_millis(500));
    let rest = gateway.envoy.statuses_with_key(&key, 20);
    assert_eq!(admitted(&first) + admitted(&rest), 200, "{rest:?}");
    assert_eq!(rest.last(), Some(&429));
}
