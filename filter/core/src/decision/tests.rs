use super::*;
use crate::credential::CredentialSource;

const NOW_MS: i64 = 1_767_225_600_000;
const NOW_SECS: i64 = NOW_MS / 1000;

fn presented(key: &str) -> Result<PresentedCredential, CredentialError> {
    Ok(PresentedCredential {
        source: CredentialSource::ApiKeyHeader,
        digest: KeyDigest::of_key(key.as_bytes()),
    })
}

fn alice() -> Principal {
    Principal {
        user_id: "u_alice".to_owned(),
        key_id: "k_1".to_owned(),
        user_status: UserStatus::Active as i32,
        ..Principal::default()
    }
}

fn fresh(principal: Option<Principal>) -> CacheEntry {
    CacheEntry {
        principal,
        expires_at_ms: NOW_MS + 30_000,
    }
}

fn decide_cached(entry: CacheEntry) -> Decision {
    decide_request(presented("k3y"), |_| Some(entry), NOW_MS)
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn assert_denied(decision: &Decision, expected_status: u32, expected_code: &str) {
    match decision {
        Decision::Deny { status, code, .. } => {
            assert_eq!((*status, *code), (expected_status, expected_code));
        }
        other => panic!("expected a {expected_status} {expected_code}, got {other:?}"),
    }
}

#[test]
fn missing_credentials_are_refused_without_asking_the_cache() {
    let decision = decide_request(
        Err(CredentialError::Missing),
        |_| panic!("cache consulted"),
        NOW_MS,
    );

    assert_denied(&decision, 401, "missing_credentials");
}

#[test]
fn malformed_key_is_refused_without_asking_the_cache() {
    let decision = decide_request(
        Err(CredentialError::Invalid),
        |_| panic!("cache consulted"),
        NOW_MS,
    );

    assert_eq!(
        decision,
        Decision::Deny {
            status: 401,
            code: "invalid_api_key",
            message: "invalid API key".to_owned(),
        }
    );
}

#[test]
fn cache_is_asked_for_the_digest_of_the_presented_key() {
    let mut asked_for = None;

    decide_request(
        presented("k3y"),
        |digest| {
            asked_for = Some(*digest);
            None
        },
        NOW_MS,
    );

    assert_eq!(asked_for, Some(KeyDigest::of_key(b"k3y")));
}

#[test]
fn cache_miss_asks_for_a_lookup() {
    assert_eq!(
        decide_request(presented("k3y"), |_| None, NOW_MS),
        Decision::Lookup {
            key_digest: KeyDigest::of_key(b"k3y")
        }
    );
}

#[test]
fn stale_entry_asks_for_a_lookup() {
    let stale = CacheEntry {
        principal: Some(alice()),
        expires_at_ms: NOW_MS,
    };

    assert_eq!(
        decide_cached(stale),
        Decision::Lookup {
            key_digest: KeyDigest::of_key(b"k3y")
        }
    );
}

#[test]
fn negative_entry_looks_exactly_like_a_malformed_key() {
    assert_eq!(
        decide_cached(fresh(None)),
        decide_request(Err(CredentialError::Invalid), |_| None, NOW_MS)
    );
}

#[test]
fn known_key_is_allowed_with_identity_headers() {
    let principal = Principal {
        tenant_id: "t_acme".to_owned(),
        group_ids: vec!["g_eng".to_owned(), "g_ops".to_owned()],
        ..alice()
    };

    assert_eq!(
        decide_cached(fresh(Some(principal))),
        Decision::Allow {
            set_headers: headers(&[
                ("x-tollgate-user-id", "u_alice"),
                ("x-tollgate-key-id", "k_1"),
                ("x-tollgate-tenant-id", "t_acme"),
                ("x-tollgate-groups", "g_eng,g_ops"),
                ("x-tollgate-auth-method", "api_key"),
            ])
        }
    );
}

#[test]
fn tenant_and_groups_headers_are_omitted_when_empty() {
    assert_eq!(
        decide_cached(fresh(Some(alice()))),
        Decision::Allow {
            set_headers: headers(&[
                ("x-tollgate-user-id", "u_alice"),
                ("x-tollgate-key-id", "k_1"),
                ("x-tollgate-auth-method", "api_key"),
            ])
        }
    );
}

#[test]
fn unspecified_user_status_is_allowed() {
    let principal = Principal {
        user_status: UserStatus::Unspecified as i32,
        ..alice()
    };

    assert!(matches!(
        decide_cached(fresh(Some(principal))),
        Decision::Allow { .. }
    ));
}

#[test]
fn suspended_user_is_forbidden() {
    let principal = Principal {
        user_status: UserStatus::Suspended as i32,
        ..alice()
    };

    assert_denied(
        &decide_cached(fresh(Some(principal))),
        403,
        "user_suspended",
    );
}

#[test]
fn suspension_is_reported_before_expiry() {
    let principal = Principal {
        user_status: UserStatus::Suspended as i32,
        key_expires_at: NOW_SECS - 60,
        ..alice()
    };

    assert_denied(
        &decide_cached(fresh(Some(principal))),
        403,
        "user_suspended",
    );
}

#[test]
fn key_expiring_now_is_refused() {
    let principal = Principal {
        key_expires_at: NOW_SECS,
        ..alice()
    };

    assert_denied(
        &decide_cached(fresh(Some(principal))),
        401,
        "api_key_expired",
    );
}

#[test]
fn key_expired_long_ago_is_refused() {
    let principal = Principal {
        key_expires_at: 1,
        ..alice()
    };

    assert_denied(
        &decide_cached(fresh(Some(principal))),
        401,
        "api_key_expired",
    );
}

#[test]
fn key_expiring_later_is_allowed() {
    let principal = Principal {
        key_expires_at: NOW_SECS + 1,
        ..alice()
    };

    assert!(matches!(
        decide_cached(fresh(Some(principal))),
        Decision::Allow { .. }
    ));
}

#[test]
fn key_without_expiry_is_allowed() {
    let principal = Principal {
        key_expires_at: 0,
        ..alice()
    };

    assert!(matches!(
        decide_cached(fresh(Some(principal))),
        Decision::Allow { .. }
    ));
}

#[test]
fn absurd_expiry_does_not_overflow() {
    let far_future = Principal {
        key_expires_at: i64::MAX,
        ..alice()
    };
    let far_past = Principal {
        key_expires_at: i64::MIN,
        ..alice()
    };

    assert!(matches!(
        decide_cached(fresh(Some(far_future))),
        Decision::Allow { .. }
    ));
    assert_denied(
        &decide_cached(fresh(Some(far_past))),
        401,
        "api_key_expired",
    );
}

#[test]
fn callout_answer_with_a_principal_is_allowed() {
    let answer = LookupKeyResponse {
        principal: Some(alice()),
        cache_ttl_seconds: 30,
        cursor: 0,
    };

    assert_eq!(
        decide_from_callout(&Ok(answer), NOW_MS),
        decide_cached(fresh(Some(alice())))
    );
}

#[test]
fn callout_answer_without_a_principal_is_an_invalid_key() {
    let answer = LookupKeyResponse {
        principal: None,
        cache_ttl_seconds: 30,
        cursor: 0,
    };

    assert_denied(
        &decide_from_callout(&Ok(answer), NOW_MS),
        401,
        "invalid_api_key",
    );
}

#[test]
fn callout_answer_follows_the_same_rules_as_the_cache() {
    let answer = LookupKeyResponse {
        principal: Some(Principal {
            user_status: UserStatus::Suspended as i32,
            ..alice()
        }),
        cache_ttl_seconds: 30,
        cursor: 0,
    };

    assert_denied(
        &decide_from_callout(&Ok(answer), NOW_MS),
        403,
        "user_suspended",
    );
}

#[test]
fn every_callout_failure_is_a_503() {
    for failure in [
        CalloutFailure::NotDispatched,
        CalloutFailure::GrpcStatus(14),
        CalloutFailure::UndecodableAnswer,
    ] {
        assert_eq!(
            decide_from_callout(&Err(failure), NOW_MS),
            Decision::Deny {
                status: 503,
                code: "control_plane_unavailable",
                message: "the control plane could not be reached".to_owned(),
            },
            "for {failure:?}"
        );
    }
}
