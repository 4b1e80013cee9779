use super::*;
use crate::cache::{shared_data_key, CacheEntry};
use crate::config::PluginConfig;
use crate::decision::CLIENT_IP_HEADER;
use crate::digest::KeyDigest;
use crate::freshness::Freshness;
use crate::host::memory::{MemoryHost, Reply};
use crate::limits::limiter::{ADDRESS_BUCKETS_KEY, MAX_ADDRESS_BUCKETS};
use crate::proto::{
    AcquireAllowancesRequest, AcquireAllowancesResponse, Allowance, BucketState,
    CheckLimitsResponse, LimitLevel, LimitMode, LimitSettings, LookupKeyResponse, Principal,
    RateLimit, ReportUsageRequest, UserStatus,
};
use crate::sync::SyncState;

const NOW_US: i64 = 1_767_225_600_000_000;
const KEY: &str = "tg_u_alice_0123456789abcdef0123456789abcdef";
const UNAVAILABLE: u32 = 14;

fn alice(mode: LimitMode, burst: u64) -> Principal {
    Principal {
        user_id: "u_alice".to_owned(),
        key_id: "k_1".to_owned(),
        user_status: UserStatus::Active.into(),
        rate_limits: vec![RateLimit {
            level: LimitLevel::User.into(),
            window_seconds: 60,
            requests: 600,
            burst,
            mode: mode.into(),
        }],
        ..Principal::default()
    }
}

fn worker(host: &MemoryHost) -> Rc<Worker> {
    worker_with(host, PluginConfig::default())
}

fn worker_with(host: &MemoryHost, config: PluginConfig) -> Rc<Worker> {
    Rc::new(Worker::new(
        host,
        config,
        "node".into(),
        "vm".into(),
        [1; 16],
    ))
}

/// A host whose shared data holds the control plane's answer about the key, as another
/// worker left it.
fn serving(principal: Principal) -> MemoryHost {
    let host = MemoryHost::at(NOW_US);
    let entry = CacheEntry::for_answer(Some(principal), 60, 0, NOW_US / MICROS_PER_MILLI);
    let key = shared_data_key(&KeyDigest::of_key(KEY.as_bytes()));
    assert!(host.shared_data_set(&key, &entry.to_bytes(), None).is_ok());
    host
}

/// A request with the key, through a flow of its own.
fn request(host: &MemoryHost, worker: &Rc<Worker>) -> (RequestFlow, Action) {
    request_with(host, worker, &[("x-api-key", KEY)])
}

/// A request with these headers besides its method and path, through a flow of its own.
fn request_with(
    host: &MemoryHost,
    worker: &Rc<Worker>,
    headers: &[(&str, &str)],
) -> (RequestFlow, Action) {
    let mut all = vec![(":method", "GET"), (":path", "/v1/x")];
    all.extend_from_slice(headers);
    host.set_request(&all);
    let mut flow = RequestFlow::new(Rc::clone(worker));
    let action = flow.on_request_headers(host);
    (flow, action)
}

/// The headers of the request as it went upstream, each with how often it was sent.
fn sent(host: &MemoryHost, name: &str) -> Vec<String> {
    host.request()
        .into_iter()
        .filter(|(known, _)| known == name)
        .map(|(_, value)| value)
        .collect()
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(known, _)| known == name)
        .map(|(_, value)| value.as_str())
}

fn only_reply(host: &MemoryHost) -> Reply {
    let mut replies = host.take_replies();
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies.remove(0)
}

#[test]
fn an_allowed_request_goes_on_with_its_identity_instead_of_its_key() {
    let host = serving(alice(LimitMode::Local, 10));

    let (mut flow, action) = request(&host, &worker(&host));

    assert_eq!(action, Action::Continue);
    assert!(host.take_replies().is_empty());
    let forwarded = host.request();
    assert_eq!(header(&forwarded, "x-api-key"), None);
    assert_eq!(header(&forwarded, "x-tollgate-user-id"), Some("u_alice"));
    assert_eq!(header(&forwarded, AUTH_METHOD_HEADER), Some("api_key"));
    host.set_response(&[(":status", "200"), (STORAGE_HEADER, "5")]);
    flow.on_response_headers(&host);
    let answered = host.response();
    assert_eq!(
        header(&answered, STORAGE_HEADER),
        None,
        "for the meter only"
    );
    assert_eq!(header(&answered, "x-ratelimit-limit"), Some("600"));
}

#[test]
fn a_request_beyond_its_limit_is_refused_with_429_and_never_forwarded() {
    let host = serving(alice(LimitMode::Local, 1));
    let worker = worker(&host);
    assert_eq!(request(&host, &worker).1, Action::Continue);
    host.take_replies();

    let (_, action) = request(&host, &worker);

    assert_eq!(action, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(reply.status, 429);
    assert!(reply.body.contains("rate_limited"), "{}", reply.body);
    assert!(header(&reply.headers, "retry-after").is_some());
    assert_eq!(header(&reply.headers, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        header(&host.request(), "x-api-key"),
        Some(KEY),
        "not forwarded"
    );
}

#[test]
fn an_exact_limit_waits_for_the_control_plane_and_its_refusal_is_final() {
    let host = serving(alice(LimitMode::Exact, 10));
    let (mut flow, action) = request(&host, &worker(&host));
    assert_eq!(action, Action::Pause);
    let calls = host.take_calls();
    assert_eq!(calls[0].method, CHECK_LIMITS_METHOD);

    let answer = CheckLimitsResponse {
        admitted: false,
        buckets: vec![BucketState { backlog_ms: 60_000 }],
    };
    let resumed = flow.on_callout_answer(&host, 0, Some(&answer.encode_to_vec()));

    assert_eq!(resumed, Action::Pause);
    assert_eq!(only_reply(&host).status, 429);
    assert_eq!(header(&host.request(), AUTH_METHOD_HEADER), None);
}

#[test]
fn an_exact_limit_that_cannot_be_checked_refuses_with_503() {
    let host = serving(alice(LimitMode::Exact, 10));
    let (mut flow, _) = request(&host, &worker(&host));

    let resumed = flow.on_callout_answer(&host, UNAVAILABLE, None);

    assert_eq!(resumed, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("rate_limiter_unavailable"));
}

#[test]
fn a_lookup_carries_the_request_id_of_the_request_it_is_for() {
    let host = MemoryHost::at(NOW_US);
    let worker = worker(&host);
    request_with(
        &host,
        &worker,
        &[("x-api-key", KEY), ("x-request-id", "req-7")],
    );
    let calls = host.take_calls();
    assert_eq!(calls[0].method, "LookupKey");
    assert_eq!(calls[0].request_id.as_deref(), Some(&b"req-7"[..]));

    request_with(
        &host,
        &worker,
        &[("x-api-key", "tg_u_bob_0123456789abcdef0123456789abcdef")],
    );
    assert_eq!(host.take_calls()[0].request_id, None);
}

#[test]
fn an_unknown_key_is_looked_up_and_the_answer_decides() {
    let host = MemoryHost::at(NOW_US);
    let worker = worker(&host);
    let (mut flow, action) = request(&host, &worker);
    assert_eq!(action, Action::Pause);
    assert_eq!(host.take_calls()[0].method, "LookupKey");

    let answer = LookupKeyResponse {
        principal: Some(alice(LimitMode::Local, 10)),
        cache_ttl_seconds: 60,
        cursor: 0,
    };
    let resumed = flow.on_callout_answer(&host, 0, Some(&answer.encode_to_vec()));

    assert_eq!(resumed, Action::Continue);
    assert_eq!(
        header(&host.request(), "x-tollgate-user-id"),
        Some("u_alice")
    );
    assert_eq!(request(&host, &worker).1, Action::Continue, "cached");
    assert!(host.take_calls().is_empty());
}

#[test]
fn an_unreachable_control_plane_fails_closed() {
    let host = MemoryHost::at(NOW_US);
    host.set_unreachable(true);

    let (_, action) = request(&host, &worker(&host));

    assert_eq!(action, Action::Pause);
    assert_eq!(only_reply(&host).status, 503);
}

#[test]
fn a_request_without_credentials_is_refused_with_401() {
    let host = MemoryHost::at(NOW_US);
    host.set_request(&[(":method", "GET"), (":path", "/v1/x")]);
    let mut flow = RequestFlow::new(worker(&host));

    assert_eq!(flow.on_request_headers(&host), Action::Pause);

    let reply = only_reply(&host);
    assert_eq!(reply.status, 401);
    assert!(reply.body.contains("missing_credentials"));
    assert_eq!(
        header(&reply.headers, "content-type"),
        Some("application/json")
    );
}

#[test]
fn client_sent_tollgate_headers_in_any_spelling_never_reach_the_upstream() {
    let host = serving(alice(LimitMode::Local, 10));

    let (_, action) = request_with(
        &host,
        &worker(&host),
        &[
            ("x-api-key", KEY),
            ("x_tollgate_user_id", "u_admin"),
            ("x-tollgate_groups", "g_admins"),
            ("x-tollgate-user-id", "u_admin"),
        ],
    );

    assert_eq!(action, Action::Continue);
    assert_eq!(sent(&host, "x-tollgate-user-id"), ["u_alice"]);
    assert!(sent(&host, "x_tollgate_user_id").is_empty());
    assert!(sent(&host, "x-tollgate_groups").is_empty());
}

#[test]
fn the_session_cookie_never_reaches_the_upstream_of_a_key_request() {
    let host = serving(alice(LimitMode::Local, 10));

    let (_, action) = request_with(
        &host,
        &worker(&host),
        &[
            ("x-api-key", KEY),
            ("cookie", "theme=dark; tollgate_session=a.b.c; lang=en"),
        ],
    );

    assert_eq!(action, Action::Continue);
    assert_eq!(sent(&host, "x-tollgate-auth-method"), ["api_key"]);
    assert_eq!(sent(&host, "cookie"), ["theme=dark; lang=en"]);
}

#[test]
fn the_upstream_learns_the_peer_as_the_client_address_not_the_clients_claim() {
    let host = serving(alice(LimitMode::Local, 10));
    host.set_peer("[::ffff:203.0.113.9]:5000");

    request_with(
        &host,
        &worker(&host),
        &[
            ("x-api-key", KEY),
            (CLIENT_IP_HEADER, "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
    );

    assert_eq!(sent(&host, CLIENT_IP_HEADER), ["203.0.113.9"]);
}

#[test]
fn behind_trusted_proxies_the_upstream_learns_the_address_they_vouch_for() {
    let host = serving(alice(LimitMode::Local, 10));
    host.set_peer("10.0.0.2:40000");
    let config = PluginConfig {
        trusted_hops: 1,
        ..PluginConfig::default()
    };

    // As Envoy hands it over: the proxy's entry for the client, then Envoy's for the proxy.
    request_with(
        &host,
        &worker_with(&host, config),
        &[
            ("x-api-key", KEY),
            ("x-forwarded-for", "6.6.6.6, 2001:db8::7, 10.0.0.2"),
        ],
    );

    assert_eq!(sent(&host, CLIENT_IP_HEADER), ["2001:db8::7"]);
}

#[test]
fn without_a_peer_address_the_upstream_gets_no_client_address() {
    let host = serving(alice(LimitMode::Local, 10));

    let (_, action) = request_with(
        &host,
        &worker(&host),
        &[("x-api-key", KEY), (CLIENT_IP_HEADER, "6.6.6.6")],
    );

    assert_eq!(action, Action::Continue);
    assert!(sent(&host, CLIENT_IP_HEADER).is_empty());
}

/// Address limits that count failed authentications only, two failures a minute.
fn two_failures_a_minute(worker: &Worker) {
    let limits = LimitSettings {
        ip: vec![RateLimit {
            level: LimitLevel::Ip.into(),
            window_seconds: 60,
            requests: 2,
            burst: 2,
            mode: LimitMode::Fast.into(),
        }],
        ..LimitSettings::default()
    };
    let state = SyncState {
        limits: Some(limits),
        ..SyncState::default()
    };
    *worker.freshness.borrow_mut() = Freshness::from_state(&state, None);
}

/// A request from `peer`: with the key, or with no credential at all.
fn from(host: &MemoryHost, worker: &Rc<Worker>, peer: &str, with_key: bool) -> u32 {
    host.set_peer(peer);
    let headers: &[(&str, &str)] = if with_key { &[("x-api-key", KEY)] } else { &[] };
    match request_with(host, worker, headers).1 {
        Action::Continue => 200,
        Action::Pause => only_reply(host).status,
    }
}

#[test]
fn once_addresses_share_the_overflow_bucket_its_failures_refuse_them_before_authentication() {
    let host = serving(alice(LimitMode::Local, 10));
    let worker = worker(&host);
    two_failures_a_minute(&worker);
    let known = "192.0.2.1:1000";
    assert_eq!(from(&host, &worker, known, false), 401, "its own bucket");
    let full = MAX_ADDRESS_BUCKETS.to_le_bytes();
    assert!(host
        .shared_data_set(ADDRESS_BUCKETS_KEY, &full, None)
        .is_ok());

    let guesser = "198.51.100.7:1000";
    assert_eq!(from(&host, &worker, guesser, false), 401);
    assert_eq!(from(&host, &worker, guesser, false), 401);

    assert_eq!(
        from(&host, &worker, guesser, true),
        429,
        "the overflow bucket is empty: refused before its key is tried"
    );
    assert_eq!(
        from(&host, &worker, "198.51.100.8:1000", true),
        429,
        "another address without a bucket counts in the same one"
    );
    assert_eq!(
        from(&host, &worker, known, true),
        200,
        "its own bucket still has room"
    );
}

fn metered(quotas: &[&str]) -> Principal {
    Principal {
        metered_quotas: quotas.iter().map(|quota| (*quota).to_owned()).collect(),
        rate_limits: Vec::new(),
        ..alice(LimitMode::Local, 10)
    }
}

fn granted(quota: &str, id: &str, amount: u64) -> Vec<u8> {
    AcquireAllowancesResponse {
        allowances: vec![Allowance {
            quota: quota.to_owned(),
            allowance_id: id.to_owned(),
            granted: amount,
            admit_for_ms: 30_000,
            resets_at: 1_798_761_600,
            unlimited: false,
        }],
    }
    .encode_to_vec()
}

/// Ends a forwarded request with an upstream's 200.
fn answered_by_upstream(host: &MemoryHost, flow: &mut RequestFlow) {
    host.set_response(&[(":status", "200"), ("x-envoy-upstream-service-time", "1")]);
    flow.on_response_headers(host);
    flow.on_log(host);
}

#[test]
fn a_metered_request_waits_for_an_allowance_and_the_next_ones_use_it() {
    let host = serving(metered(&["monthly_requests"]));
    let worker = worker(&host);
    let (mut flow, action) = request(&host, &worker);
    assert_eq!(action, Action::Pause);
    let calls = host.take_calls();
    assert_eq!(calls[0].method, ACQUIRE_ALLOWANCES_METHOD);
    let asked = AcquireAllowancesRequest::decode(calls[0].message.as_slice()).expect("decodes");
    assert_eq!(asked.user_id, "u_alice");
    assert_eq!(asked.quotas, vec!["monthly_requests".to_owned()]);
    assert_eq!(
        (asked.holder.as_str(), asked.node_id.as_str()),
        ("vm", "node")
    );

    let resumed = flow.on_callout_answer(&host, 0, Some(&granted("monthly_requests", "a1", 2)));
    assert_eq!(resumed, Action::Continue);
    answered_by_upstream(&host, &mut flow);

    let (mut second, action) = request(&host, &worker);
    assert_eq!(action, Action::Continue, "from the allowance");
    assert!(host.take_calls().is_empty());
    answered_by_upstream(&host, &mut second);

    assert_eq!(request(&host, &worker).1, Action::Pause, "used up");
    assert_eq!(host.take_calls()[0].method, ACQUIRE_ALLOWANCES_METHOD);
}

#[test]
fn nothing_granted_refuses_with_402_and_when_the_quota_resets() {
    let host = serving(metered(&["monthly_requests"]));
    let worker = worker(&host);
    let (mut flow, _) = request(&host, &worker);

    let resumed = flow.on_callout_answer(&host, 0, Some(&granted("monthly_requests", "", 0)));

    assert_eq!(resumed, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(reply.status, 402);
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(body["error"]["quota"], "monthly_requests");
    assert_eq!(body["error"]["resets_at"], "2027-01-01T00:00:00Z");
}

#[test]
fn an_allowance_that_cannot_be_had_refuses_with_503() {
    let host = serving(metered(&["monthly_requests"]));
    let (mut flow, _) = request(&host, &worker(&host));

    let resumed = flow.on_callout_answer(&host, UNAVAILABLE, None);

    assert_eq!(resumed, Action::Pause);
    let reply = only_reply(&host);
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("control_plane_unavailable"));
}

#[test]
fn a_request_whose_answer_does_not_count_gives_its_share_back() {
    let host = serving(metered(&["monthly_requests"]));
    let worker = worker(&host);
    let (mut flow, _) = request(&host, &worker);
    flow.on_callout_answer(&host, 0, Some(&granted("monthly_requests", "a1", 1)));
    host.take_calls();
    // Envoy's own 503: no upstream answered.
    host.set_response(&[(":status", "503")]);
    flow.on_response_headers(&host);
    flow.on_log(&host);

    assert_eq!(request(&host, &worker).1, Action::Continue);
    assert!(host.take_calls().is_empty());
}

#[test]
fn a_used_up_allowance_is_settled_in_the_usage_report_that_counts_its_requests() {
    let host = serving(metered(&["monthly_requests"]));
    let worker = worker(&host);
    let (mut flow, _) = request(&host, &worker);
    flow.on_callout_answer(&host, 0, Some(&granted("monthly_requests", "a1", 1)));
    worker.tick(&host);
    answered_by_upstream(&host, &mut flow);

    let report = (0..10)
        .flat_map(|_| {
            worker.tick(&host);
            host.take_calls()
        })
        .find(|call| call.method == "ReportUsage")
        .expect("a usage report");
    let report = ReportUsageRequest::decode(report.message.as_slice()).expect("decodes");
    assert_eq!(report.usage[0].requests, 1);
    assert_eq!(report.settled_allowances, vec!["a1".to_owned()]);
}

#[test]
fn bandwidth_reserves_what_a_request_declares() {
    let host = serving(metered(&["monthly_bandwidth"]));
    let worker = worker_with(
        &host,
        PluginConfig {
            bandwidth_reserve_bytes: 100,
            ..PluginConfig::default()
        },
    );
    let upload = [("x-api-key", KEY), ("content-length", "5000")];
    let (mut flow, _) = request_with(&host, &worker, &upload);
    flow.on_callout_answer(&host, 0, Some(&granted("monthly_bandwidth", "b1", 6000)));
    host.take_calls();
    // The upload reserved its 90 header bytes and 5,000 declared: 910 are left, ten small
    // requests' reservations of 100 (the last takes the 10 left), and the eleventh waits.
    for _ in 0..10 {
        assert_eq!(request(&host, &worker).1, Action::Continue);
    }
    assert!(host.take_calls().is_empty());
    assert_eq!(request(&host, &worker).1, Action::Pause);
    assert_eq!(host.take_calls()[0].method, ACQUIRE_ALLOWANCES_METHOD);
    flow.on_request_body(5000);
    answered_by_upstream(&host, &mut flow);
}
