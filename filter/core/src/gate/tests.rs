use std::cell::RefCell;
use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey as Ed25519SigningKey};
use serde_json::json;

use super::*;
use crate::cache::CacheEntry;
use crate::credential::extract_credential;
use crate::decision::AUTH_METHOD_HEADER;
use crate::digest::KeyDigest;
use crate::local_digest::LocalDigester;
use crate::proto::{invalidation, Invalidation, Principal, SigningKey, WatchChangesResponse};
use crate::sync::SyncState;

const NOW_MS: i64 = 1_767_225_600_000;
const NOW_SECS: i64 = NOW_MS / 1000;
const KID: &str = "sk_test";

#[derive(Default)]
struct Cached {
    keys: HashMap<KeyDigest, Resolved>,
    users: HashMap<String, Resolved>,
    asked: RefCell<Vec<String>>,
}

impl Principals for Cached {
    fn with_key<R>(
        &self,
        key: &PresentedCredential,
        read: impl FnOnce(Option<&Resolved>) -> R,
    ) -> R {
        self.asked.borrow_mut().push("key".into());
        read(self.keys.get(&key.digest()))
    }

    fn with_user<R>(&self, user_id: &str, read: impl FnOnce(Option<&Resolved>) -> R) -> R {
        self.asked.borrow_mut().push(format!("user {user_id}"));
        read(self.users.get(user_id))
    }
}

fn alice() -> Principal {
    Principal {
        user_id: "u_alice".to_owned(),
        key_id: "k_1".to_owned(),
        user_status: UserStatus::Active as i32,
        ..Principal::default()
    }
}

fn entry(principal: Option<Principal>, expires_at_ms: i64, cursor: u64) -> Resolved {
    Resolved::new(CacheEntry {
        principal,
        expires_at_ms,
        fetched_cursor: cursor,
    })
}

fn digester() -> LocalDigester {
    LocalDigester::new([1; 16])
}

fn key_presented(key: &str) -> Result<Presented, CredentialError> {
    extract_credential(&[("x-api-key", key)], 256, &digester()).map(Presented::ApiKey)
}

fn session_presented(token: String) -> Result<Presented, CredentialError> {
    Ok(Presented::Session {
        local: digester().digest(token.as_bytes()),
        token,
        alongside_api_key: false,
        from_cookie: false,
    })
}

fn with_key(key: &str, resolved: Resolved) -> Cached {
    let mut cached = Cached::default();
    cached
        .keys
        .insert(KeyDigest::of_key(key.as_bytes()), resolved);
    cached
}

fn client() -> Result<std::net::IpAddr, Verdict> {
    Ok("192.0.2.10".parse().expect("ip"))
}

fn facts(stage: Stage) -> RequestFacts<'static> {
    RequestFacts {
        method: "GET",
        path: "/v1/images/1",
        client_ip: &client,
        now_ms: NOW_MS,
        stage,
    }
}

fn decide(
    cached: &Cached,
    freshness: &Freshness,
    presented: &Result<Presented, CredentialError>,
    facts: &RequestFacts<'_>,
) -> Verdict {
    let policy = FailurePolicy {
        max_stale_ms: 300_000,
        fail_open: Scopes::parse(&["GET /status".to_owned()]).ok(),
    };
    let gate = Gate {
        principals: cached,
        freshness,
        policy: &policy,
    };
    gate.decide(presented, facts, &mut VerifiedTokens::new(16))
}

fn decide_key(cached: &Cached, stage: Stage) -> Verdict {
    decide(
        cached,
        &Freshness::default(),
        &key_presented("k3y"),
        &facts(stage),
    )
}

fn denied_code(decision: &Verdict) -> &'static str {
    match decision {
        Verdict::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn header<'d>(decision: &'d Verdict, name: &str) -> Option<&'d str> {
    match decision {
        Verdict::Authorized { auth_method, .. } if name == AUTH_METHOD_HEADER => {
            Some(auth_method.as_str())
        }
        Verdict::Authorized { set_headers, .. } => set_headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str()),
        other => panic!("expected an allow, got {other:?}"),
    }
}

#[test]
fn missing_and_malformed_credentials_are_refused_without_lookup() {
    let cached = Cached::default();
    let freshness = Freshness::default();
    let missing = decide(
        &cached,
        &freshness,
        &Err(CredentialError::Missing),
        &facts(Stage::First),
    );
    assert_eq!(denied_code(&missing), "missing_credentials");
    let invalid = decide(
        &cached,
        &freshness,
        &Err(CredentialError::Invalid),
        &facts(Stage::First),
    );
    assert_eq!(denied_code(&invalid), "invalid_api_key");
    assert!(cached.asked.borrow().is_empty());
}

#[test]
fn a_fresh_cached_key_is_allowed_with_identity_headers() {
    let mut principal = alice();
    principal.tenant_id = "t_1".into();
    principal.group_ids = vec!["g_a".into(), "g_b".into()];
    principal.route_group = "g_b".into();
    let cached = with_key("k3y", entry(Some(principal), NOW_MS + 1, 0));
    let decision = decide_key(&cached, Stage::First);
    assert_eq!(header(&decision, "x-tollgate-user-id"), Some("u_alice"));
    assert_eq!(header(&decision, "x-tollgate-key-id"), Some("k_1"));
    assert_eq!(header(&decision, "x-tollgate-tenant-id"), Some("t_1"));
    assert_eq!(header(&decision, "x-tollgate-groups"), Some("g_a,g_b"));
    assert_eq!(header(&decision, "x-tollgate-route-group"), Some("g_b"));
    assert_eq!(header(&decision, "x-tollgate-auth-method"), Some("api_key"));
}

#[test]
fn an_unknown_or_expired_entry_asks_the_control_plane() {
    let lookup = Lookup::Key {
        digest: KeyDigest::of_key(b"k3y"),
        local: digester().digest(b"k3y"),
    };
    assert_eq!(
        decide_key(&Cached::default(), Stage::First),
        Verdict::Lookup(lookup.clone())
    );
    let expired = with_key("k3y", entry(Some(alice()), NOW_MS, 0));
    assert_eq!(decide_key(&expired, Stage::First), Verdict::Lookup(lookup));
}

#[test]
fn a_just_fetched_entry_answers_even_if_expired_or_behind_the_feed() {
    let cached = with_key("k3y", entry(Some(alice()), NOW_MS, 0));
    assert!(matches!(
        decide_key(&cached, Stage::Fetched),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn a_negative_entry_is_an_invalid_key() {
    let cached = with_key("k3y", entry(None, NOW_MS + 1_000, 0));
    assert_eq!(
        denied_code(&decide_key(&cached, Stage::First)),
        "invalid_api_key"
    );
}

#[test]
fn a_key_expires_from_the_first_millisecond_of_its_expiry_second() {
    assert!(!key_expired(NOW_SECS, NOW_MS - 1));
    assert!(key_expired(NOW_SECS, NOW_MS));
    assert!(key_expired(NOW_SECS, NOW_MS + 999));
    assert!(!key_expired(0, NOW_MS), "0 is a key that never expires");
}

#[test]
fn suspension_expiry_allowlist_and_scopes_are_enforced_in_that_order() {
    let suspended = Principal {
        user_status: UserStatus::Suspended as i32,
        key_expires_at: NOW_SECS - 1,
        ..alice()
    };
    let cached = with_key("k3y", entry(Some(suspended), NOW_MS + 1_000, 0));
    assert_eq!(
        denied_code(&decide_key(&cached, Stage::First)),
        "user_suspended"
    );

    let expired_key = Principal {
        key_expires_at: NOW_SECS,
        ip_allowlist: vec!["10.0.0.0/8".into()],
        ..alice()
    };
    let cached = with_key("k3y", entry(Some(expired_key), NOW_MS + 1_000, 0));
    assert_eq!(
        denied_code(&decide_key(&cached, Stage::First)),
        "api_key_expired"
    );

    let elsewhere = Principal {
        ip_allowlist: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
        scopes: vec!["POST /v1".into()],
        ..alice()
    };
    let cached = with_key("k3y", entry(Some(elsewhere), NOW_MS + 1_000, 0));
    assert_eq!(
        denied_code(&decide_key(&cached, Stage::First)),
        "ip_not_allowed"
    );

    let here_out_of_scope = Principal {
        ip_allowlist: vec!["192.0.2.0/24".into()],
        scopes: vec!["POST /v1".into(), "/v2".into()],
        ..alice()
    };
    let cached = with_key("k3y", entry(Some(here_out_of_scope), NOW_MS + 1_000, 0));
    assert_eq!(
        denied_code(&decide_key(&cached, Stage::First)),
        "scope_denied"
    );

    let in_scope = Principal {
        ip_allowlist: vec!["192.0.2.10".into()],
        scopes: vec!["GET /v1/images".into()],
        ..alice()
    };
    let cached = with_key("k3y", entry(Some(in_scope), NOW_MS + 1_000, 0));
    assert!(matches!(
        decide_key(&cached, Stage::First),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn an_unreadable_allowlist_or_scope_list_fails_closed() {
    let garbled = Principal {
        ip_allowlist: vec!["not-an-address".into()],
        ..alice()
    };
    let cached = with_key("k3y", entry(Some(garbled), NOW_MS + 1_000, 0));
    assert_eq!(
        denied_code(&decide_key(&cached, Stage::First)),
        "ip_not_allowed"
    );
}

#[test]
fn when_unreachable_a_recently_expired_entry_still_serves() {
    let recent = with_key("k3y", entry(Some(alice()), NOW_MS - 299_000, 0));
    assert!(matches!(
        decide_key(&recent, Stage::Unreachable),
        Verdict::Authorized { .. }
    ));
    let too_old = with_key("k3y", entry(Some(alice()), NOW_MS - 300_000, 0));
    assert_eq!(
        denied_code(&decide_key(&too_old, Stage::Unreachable)),
        "control_plane_unavailable"
    );
    assert_eq!(
        denied_code(&decide_key(&Cached::default(), Stage::Unreachable)),
        "control_plane_unavailable"
    );
}

#[test]
fn when_unreachable_fail_open_routes_let_unknown_credentials_through_unverified() {
    let status_check = RequestFacts {
        path: "/status",
        ..facts(Stage::Unreachable)
    };
    let decision = decide(
        &Cached::default(),
        &Freshness::default(),
        &key_presented("k3y"),
        &status_check,
    );
    assert_eq!(
        header(&decision, "x-tollgate-auth-method"),
        Some("unverified")
    );
    assert_eq!(header(&decision, "x-tollgate-user-id"), None);
}

fn synced(invalidations: Vec<Invalidation>, keys: Vec<SigningKey>) -> Freshness {
    let next = WatchChangesResponse {
        cursor: 20,
        invalidations,
        signing_keys: keys,
        session_issuer: "tollgate".into(),
        session_audience: "tollgate".into(),
        signing_keys_version: "v1".into(),
        ..Default::default()
    };
    Freshness::from_state(&SyncState::after_first_answer_then(next, NOW_SECS), None)
}

fn revoked(cursor: u64, subject: invalidation::Subject) -> Invalidation {
    Invalidation {
        cursor,
        subject: Some(subject),
        session_expires_at: NOW_SECS + 600,
    }
}

#[test]
fn a_revoked_key_or_changed_user_is_looked_up_again_at_once() {
    let freshness = synced(
        vec![revoked(15, invalidation::Subject::KeyId("k_1".into()))],
        vec![],
    );
    let cached = with_key("k3y", entry(Some(alice()), NOW_MS + 60_000, 12));
    let decision = decide(
        &cached,
        &freshness,
        &key_presented("k3y"),
        &facts(Stage::First),
    );
    assert!(matches!(decision, Verdict::Lookup(_)), "{decision:?}");
    let refetched = with_key("k3y", entry(Some(alice()), NOW_MS + 60_000, 15));
    let decision = decide(
        &refetched,
        &freshness,
        &key_presented("k3y"),
        &facts(Stage::First),
    );
    assert!(matches!(decision, Verdict::Authorized { .. }));
    // A revoked key must not serve from a stale entry when the control plane is away either.
    let decision = decide(
        &cached,
        &freshness,
        &key_presented("k3y"),
        &facts(Stage::Unreachable),
    );
    assert_eq!(denied_code(&decision), "control_plane_unavailable");
}

fn signing_key() -> Ed25519SigningKey {
    Ed25519SigningKey::from_bytes(&[3; 32])
}

fn published_key() -> SigningKey {
    SigningKey {
        kid: KID.into(),
        alg: "EdDSA".into(),
        ed25519_public_key: signing_key().verifying_key().to_bytes().to_vec(),
        ..SigningKey::default()
    }
}

fn session_token(claims: &serde_json::Value) -> String {
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "kid": KID, "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(signing_key().sign(signing_input.as_bytes()).to_bytes());
    format!("{signing_input}.{signature}")
}

fn alice_session(session_id: &str) -> Result<Presented, CredentialError> {
    let token = session_token(&json!({
        "iss": "tollgate", "aud": "tollgate", "sub": "u_alice", "sid": session_id,
        "exp": NOW_SECS + 600, "nbf": NOW_SECS - 1, "iat": NOW_SECS - 1,
    }));
    session_presented(token)
}

fn with_user(principal: Principal) -> Cached {
    let mut cached = Cached::default();
    cached.users.insert(
        principal.user_id.clone(),
        entry(Some(principal), NOW_MS + 60_000, 20),
    );
    cached
}

#[test]
fn a_verified_session_is_authorized_against_its_user() {
    let freshness = synced(vec![], vec![published_key()]);
    let user = Principal {
        key_id: String::new(),
        ..alice()
    };
    let cached = with_user(user);
    let decision = decide(
        &cached,
        &freshness,
        &alice_session("s_1"),
        &facts(Stage::First),
    );
    assert_eq!(header(&decision, "x-tollgate-user-id"), Some("u_alice"));
    assert_eq!(header(&decision, "x-tollgate-auth-method"), Some("session"));
    assert_eq!(header(&decision, "x-tollgate-key-id"), None);
    assert_eq!(cached.asked.borrow().as_slice(), ["user u_alice"]);
}

#[test]
fn a_session_user_not_cached_is_looked_up() {
    let freshness = synced(vec![], vec![published_key()]);
    let decision = decide(
        &Cached::default(),
        &freshness,
        &alice_session("s_1"),
        &facts(Stage::First),
    );
    assert_eq!(decision, Verdict::Lookup(Lookup::User("u_alice".into())));
}

#[test]
fn an_ended_session_is_refused() {
    let freshness = synced(
        vec![revoked(
            16,
            invalidation::Subject::SessionId("s_gone".into()),
        )],
        vec![published_key()],
    );
    let decision = decide(
        &with_user(alice()),
        &freshness,
        &alice_session("s_gone"),
        &facts(Stage::First),
    );
    assert_eq!(denied_code(&decision), "session_revoked");
}

#[test]
fn bad_session_tokens_are_refused_with_the_session_codes() {
    let freshness = synced(vec![], vec![published_key()]);
    let expired = session_token(&json!({
        "iss": "tollgate", "aud": "tollgate", "sub": "u_alice", "sid": "s_1",
        "exp": NOW_SECS - 60, "nbf": NOW_SECS - 900,
    }));
    let other_audience = session_token(&json!({
        "iss": "tollgate", "aud": "elsewhere", "sub": "u_alice", "sid": "s_1",
        "exp": NOW_SECS + 60,
    }));
    for (token, code) in [
        (expired, "session_expired"),
        (other_audience, "invalid_session"),
    ] {
        let presented = session_presented(token);
        let decision = decide(
            &with_user(alice()),
            &freshness,
            &presented,
            &facts(Stage::First),
        );
        assert_eq!(denied_code(&decision), code);
    }
}

#[test]
fn sessions_cannot_be_checked_before_the_keys_arrive() {
    let decision = decide(
        &with_user(alice()),
        &Freshness::default(),
        &alice_session("s_1"),
        &facts(Stage::First),
    );
    assert_eq!(denied_code(&decision), "control_plane_unavailable");
}

#[test]
fn a_bad_forwarded_for_is_refused() {
    assert_eq!(
        client_address("127.0.0.1:5000", Some(b"not-an-ip, 127.0.0.1"), 1)
            .map_err(|d| denied_code(&d)),
        Err("invalid_forwarded_for")
    );
    assert_eq!(
        client_address("127.0.0.1:5000", Some(b"203.0.113.9"), 0),
        Ok("127.0.0.1".parse().expect("ip")),
        "a spoofed header from an untrusted peer changes nothing"
    );
}

#[test]
fn behind_trusted_proxies_the_entry_before_envoys_own_counts() {
    // Envoy appended the peer (127.0.0.1); one trusted proxy wrote 203.0.113.9.
    let xff = b"198.51.100.7, 203.0.113.9, 127.0.0.1";
    assert_eq!(
        client_address("127.0.0.1:5000", Some(xff), 1),
        Ok("203.0.113.9".parse().expect("ip"))
    );
    assert_eq!(
        client_address("127.0.0.1:5000", Some(xff), 2),
        Ok("198.51.100.7".parse().expect("ip"))
    );
}

fn alice_over(quota: &str, resets_at: i64) -> Principal {
    Principal {
        exhausted_quotas: vec![ExhaustedQuota {
            name: quota.to_owned(),
            resets_at,
        }],
        ..alice()
    }
}

#[test]
fn a_used_up_quota_refuses_until_it_resets() {
    let over = with_key(
        "k3y",
        entry(
            Some(alice_over("monthly_requests", NOW_SECS + 60)),
            NOW_MS + 1_000,
            0,
        ),
    );
    assert_eq!(
        decide_key(&over, Stage::First),
        Verdict::QuotaExceeded {
            user_id: "u_alice".to_owned(),
            quota: "monthly_requests".to_owned(),
            resets_at: NOW_SECS + 60,
        }
    );
    let reset = with_key(
        "k3y",
        entry(
            Some(alice_over("monthly_requests", NOW_SECS)),
            NOW_MS + 1_000,
            0,
        ),
    );
    assert!(matches!(
        decide_key(&reset, Stage::First),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn a_full_storage_quota_still_lets_storage_be_freed() {
    let full = with_key(
        "k3y",
        entry(Some(alice_over("storage", 0)), NOW_MS + 1_000, 0),
    );
    assert!(matches!(
        decide_key(&full, Stage::First),
        Verdict::QuotaExceeded { .. }
    ));
    let delete = RequestFacts {
        method: "DELETE",
        ..facts(Stage::First)
    };
    assert!(matches!(
        decide(&full, &Freshness::default(), &key_presented("k3y"), &delete),
        Verdict::Authorized { .. }
    ));
}

#[test]
fn an_allowed_request_carries_its_user_and_limits() {
    use crate::proto::{LimitLevel, LimitMode, RateLimit};
    let limited = Principal {
        rate_limits: vec![RateLimit {
            level: LimitLevel::User.into(),
            window_seconds: 60,
            requests: 5,
            burst: 5,
            mode: LimitMode::Local.into(),
        }],
        ..alice()
    };
    let cached = with_key("k3y", entry(Some(limited), NOW_MS + 1_000, 0));
    let Verdict::Authorized {
        user_id, limits, ..
    } = decide_key(&cached, Stage::First)
    else {
        panic!("allowed");
    };
    assert_eq!(&*user_id, "u_alice");
    assert_eq!(limits.here[0].subject, "user:u_alice");
}
