//! Claims, read only once the signature verifies: issuer, audience, lifetime and identity.

use serde_json::{json, Value};

use super::fixtures::*;
use crate::session::{verify, Expectations, SessionClaims, SessionError};

fn check_claims(claims: &Value) -> Result<SessionClaims, SessionError> {
    check(&ed_token(claims))
}

#[test]
fn maps_every_claim() {
    assert_eq!(check_claims(&claims()), Ok(alice()));
}

#[test]
fn optional_claims_may_be_absent() {
    let minimal = json!({
        "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 900, "sub": "u_bob", "sid": "s_2",
    });

    assert_eq!(
        check_claims(&minimal),
        Ok(SessionClaims {
            user_id: "u_bob".to_owned(),
            session_id: "s_2".to_owned(),
            tenant_id: None,
            groups: Vec::new(),
            role: None,
            expires_at: NOW + 900,
        })
    );
}

#[test]
fn optional_claims_may_be_null_or_empty() {
    let claims = claims_with(json!({ "tid": "", "role": "", "groups": [] }));
    let expected = SessionClaims {
        tenant_id: None,
        groups: Vec::new(),
        role: None,
        ..alice()
    };

    assert_eq!(check_claims(&claims), Ok(expected));
}

#[test]
fn unknown_claims_and_any_iat_are_ignored() {
    let claims = claims_with(json!({ "iat": NOW + 86_400, "jti": "j_1", "scope": ["x"] }));

    assert_eq!(check_claims(&claims), Ok(alice()));
}

#[test]
fn refuses_another_issuer() {
    for iss in [
        json!("https://evil.test"),
        json!("https://tollgate.test/"),
        json!(""),
    ] {
        assert_eq!(
            check_claims(&claims_with(json!({ "iss": iss }))),
            Err(SessionError::WrongIssuer),
            "for {iss}"
        );
    }
}

#[test]
fn refuses_a_missing_issuer() {
    assert_eq!(
        check_claims(&claims_with(json!({ "iss": null }))),
        Err(SessionError::WrongIssuer)
    );
}

#[test]
fn accepts_an_audience_array_that_holds_the_audience() {
    let claims = claims_with(json!({ "aud": ["other", AUDIENCE] }));

    assert_eq!(check_claims(&claims), Ok(alice()));
}

#[test]
fn refuses_another_audience() {
    for aud in [
        json!("other"),
        json!("TOLLGATE-FILTER"),
        json!(["other", "another"]),
        json!([]),
        json!(null),
    ] {
        assert_eq!(
            check_claims(&claims_with(json!({ "aud": aud }))),
            Err(SessionError::WrongAudience),
            "for {aud}"
        );
    }
}

#[test]
fn refuses_claims_of_the_wrong_type() {
    for change in [
        json!({ "aud": 42 }),
        json!({ "aud": [AUDIENCE, 42] }),
        json!({ "iss": ["https://tollgate.test"] }),
        json!({ "exp": "1767226500" }),
        json!({ "exp": 1_767_226_500.5 }),
        json!({ "exp": 1e30 }),
        json!({ "exp": u64::MAX }),
        json!({ "nbf": true }),
        json!({ "sub": 7 }),
        json!({ "sid": { "id": "s_1" } }),
        json!({ "tid": 3 }),
        json!({ "groups": "g_eng" }),
        json!({ "groups": ["g_eng", 1] }),
        json!({ "role": ["admin"] }),
    ] {
        assert_eq!(
            check_claims(&claims_with(change.clone())),
            Err(SessionError::Malformed),
            "for {change}"
        );
    }
}

#[test]
fn refuses_claims_that_are_not_a_json_object() {
    let header = header("EdDSA", ED_KID).to_string();
    for claims in [
        "",
        "null",
        "[]",
        "\"claims\"",
        "{",
        r#"["https://tollgate.test"]"#,
    ] {
        let token = ed_sign(&ed_signing_key(), &signing_input(&header, claims));

        assert_eq!(
            check(&token),
            Err(SessionError::Malformed),
            "for {claims:?}"
        );
    }
}

#[test]
fn refuses_a_repeated_claim() {
    let header = header("EdDSA", ED_KID).to_string();
    let claims = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"sub":"u_alice","sid":"s_1","sub":"u_admin"}}"#,
        NOW + 900
    );
    let token = ed_sign(&ed_signing_key(), &signing_input(&header, &claims));

    assert_eq!(check(&token), Err(SessionError::Malformed));
}

#[test]
fn refuses_an_expired_token() {
    let token = ed_token(&claims_with(json!({ "exp": NOW - 3_600 })));

    assert_eq!(check(&token), Err(SessionError::Expired));
    assert_eq!(
        check(&token).map_err(|error| error.code()),
        Err("session_expired")
    );
}

#[test]
fn expiry_allows_the_leeway_and_not_a_second_more() {
    let token = ed_token(&claims_with(json!({ "exp": NOW })));

    assert!(check_at(&token, NOW - 1).is_ok());
    assert!(check_at(&token, NOW).is_ok());
    assert!(check_at(&token, NOW + LEEWAY_SECS - 1).is_ok());
    assert_eq!(
        check_at(&token, NOW + LEEWAY_SECS),
        Err(SessionError::Expired)
    );
}

#[test]
fn without_leeway_a_token_expires_at_its_exp() {
    let token = ed_token(&claims_with(json!({ "exp": NOW })));
    let strict = Expectations {
        leeway_secs: 0,
        ..expectations()
    };

    assert!(verify(&token, key_set(), &strict, NOW - 1).is_ok());
    assert_eq!(
        verify(&token, key_set(), &strict, NOW),
        Err(SessionError::Expired)
    );
}

#[test]
fn a_negative_leeway_counts_as_none() {
    let token = ed_token(&claims_with(json!({ "exp": NOW })));
    let negative = Expectations {
        leeway_secs: -3_600,
        ..expectations()
    };

    assert!(verify(&token, key_set(), &negative, NOW - 1).is_ok());
}

#[test]
fn extreme_times_do_not_overflow() {
    let token = ed_token(&claims_with(json!({ "exp": i64::MAX, "nbf": i64::MIN })));
    let lenient = Expectations {
        leeway_secs: i64::MAX,
        ..expectations()
    };

    let expired = ed_token(&claims_with(json!({ "exp": i64::MIN })));

    assert!(verify(&token, key_set(), &lenient, i64::MIN).is_ok());
    assert!(verify(&token, key_set(), &lenient, i64::MAX).is_ok());
    assert!(check_at(&token, i64::MIN).is_ok());
    assert_eq!(
        verify(&expired, key_set(), &lenient, i64::MIN),
        Err(SessionError::Expired)
    );
}

#[test]
fn refuses_a_missing_expiry() {
    assert_eq!(
        check_claims(&claims_with(json!({ "exp": null }))),
        Err(SessionError::MissingClaim("exp"))
    );
}

#[test]
fn refuses_a_token_not_yet_valid() {
    let token = ed_token(&claims_with(json!({ "nbf": NOW + 600 })));

    assert_eq!(check(&token), Err(SessionError::NotYetValid));
    assert_eq!(
        check(&token).map_err(|error| error.code()),
        Err("invalid_session")
    );
}

#[test]
fn not_before_allows_the_leeway_and_not_a_second_more() {
    let token = ed_token(&claims_with(json!({ "nbf": NOW + LEEWAY_SECS })));

    assert!(check_at(&token, NOW).is_ok());
    assert_eq!(check_at(&token, NOW - 1), Err(SessionError::NotYetValid));
}

#[test]
fn refuses_a_missing_or_empty_subject() {
    for sub in [json!(null), json!("")] {
        assert_eq!(
            check_claims(&claims_with(json!({ "sub": sub }))),
            Err(SessionError::MissingClaim("sub")),
            "for {sub}"
        );
    }
}

#[test]
fn refuses_a_missing_or_empty_session_id() {
    for sid in [json!(null), json!("")] {
        assert_eq!(
            check_claims(&claims_with(json!({ "sid": sid }))),
            Err(SessionError::MissingClaim("sid")),
            "for {sid}"
        );
    }
}

#[test]
fn claims_are_not_read_before_the_signature_verifies() {
    let stranger = stranger_ed_signing_key();
    let input = signing_input(
        &header("EdDSA", ED_KID).to_string(),
        &claims_with(json!({ "exp": NOW - 3_600, "iss": "https://evil.test" })).to_string(),
    );

    assert_eq!(
        check(&ed_sign(&stranger, &input)),
        Err(SessionError::BadSignature)
    );
}
