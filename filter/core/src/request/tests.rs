use super::*;
use crate::cache::{shared_data_key, CacheEntry};
use crate::config::PluginConfig;
use crate::digest::KeyDigest;
use crate::host::memory::{MemoryHost, Reply};
use crate::proto::{
    BucketState, CheckLimitsResponse, LimitLevel, LimitMode, LookupKeyResponse, Principal,
    RateLimit, UserStatus,
};

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
    let config = PluginConfig::default();
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
    host.set_request(&[(":method", "GET"), (":path", "/v1/x"), ("x-api-key", KEY)]);
    let mut flow = RequestFlow::new(Rc::clone(worker));
    let action = flow.on_request_headers(host);
    (flow, action)
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
