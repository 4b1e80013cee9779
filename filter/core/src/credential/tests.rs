use super::*;

const SESSION_TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln";

#[test]
fn a_bearer_session_token_is_a_session() {
    let bearer = format!("Bearer {SESSION_TOKEN}");
    assert_eq!(
        super::extract(&[("authorization", bearer.as_str())], MAX, &digester()),
        Ok(Presented::Session {
            token: SESSION_TOKEN.to_owned(),
            local: digester().digest(SESSION_TOKEN.as_bytes()),
            alongside_api_key: false,
            from_cookie: false,
        })
    );
}

#[test]
fn the_session_cookie_is_a_session_when_no_key_is_sent() {
    let cookie = format!("theme=dark; tollgate_session={SESSION_TOKEN}; lang=en");
    assert_eq!(
        super::extract(&[("cookie", cookie.as_str())], MAX, &digester()),
        Ok(Presented::Session {
            token: SESSION_TOKEN.to_owned(),
            local: digester().digest(SESSION_TOKEN.as_bytes()),
            alongside_api_key: false,
            from_cookie: true,
        })
    );
    assert!(matches!(
        super::extract(
            &[("cookie", cookie.as_str()), ("x-api-key", "tg_k")],
            MAX,
            &digester()
        ),
        Ok(Presented::ApiKey(_))
    ));
    let twice = format!("tollgate_session={SESSION_TOKEN}; tollgate_session={SESSION_TOKEN}");
    assert_eq!(
        super::extract(&[("cookie", twice.as_str())], MAX, &digester()),
        Err(CredentialError::Missing)
    );
}

#[test]
fn a_session_wins_over_an_api_key_and_the_pair_is_flagged() {
    let bearer = format!("Bearer {SESSION_TOKEN}");
    assert_eq!(
        super::extract(
            &[("x-api-key", "tg_k"), ("authorization", bearer.as_str())],
            MAX,
            &digester()
        ),
        Ok(Presented::Session {
            token: SESSION_TOKEN.to_owned(),
            local: digester().digest(SESSION_TOKEN.as_bytes()),
            alongside_api_key: true,
            from_cookie: false,
        })
    );
}

#[test]
fn a_bearer_api_key_is_still_a_key() {
    assert_eq!(
        super::extract(
            &[("authorization", "Bearer tg_u1_secret")],
            MAX,
            &digester()
        ),
        presented(CredentialSource::AuthorizationBearer, "tg_u1_secret").map(Presented::ApiKey)
    );
}

const MAX: usize = 64;

fn digester() -> LocalDigester {
    LocalDigester::new([1; 16])
}

fn extract(headers: &[(&str, &str)]) -> Result<PresentedCredential, CredentialError> {
    extract_credential(headers, MAX, &digester())
}

fn presented(source: CredentialSource, key: &str) -> Result<PresentedCredential, CredentialError> {
    Ok(PresentedCredential {
        source,
        local: digester().digest(key.as_bytes()),
        raw: Box::from(key.as_bytes()),
        digest: OnceCell::new(),
    })
}

#[test]
fn the_shared_digest_is_the_sha256_of_the_key_and_debug_hides_the_key() {
    let presented = extract(&[("x-api-key", "tg_u1_secret")]).expect("a key");

    assert_eq!(presented.digest(), KeyDigest::of_key(b"tg_u1_secret"));
    assert!(!format!("{presented:?}").contains("secret"));
}

#[test]
fn reads_the_api_key_header() {
    assert_eq!(
        extract(&[("x-api-key", "tg_u1_secret")]),
        presented(CredentialSource::ApiKeyHeader, "tg_u1_secret")
    );
}

#[test]
fn header_names_match_in_any_case() {
    assert_eq!(
        extract(&[("X-API-Key", "tg_u1_secret")]),
        presented(CredentialSource::ApiKeyHeader, "tg_u1_secret")
    );
    assert_eq!(
        extract(&[("Authorization", "Bearer tg_u1_secret")]),
        presented(CredentialSource::AuthorizationBearer, "tg_u1_secret")
    );
}

#[test]
fn reads_a_bearer_authorization() {
    assert_eq!(
        extract(&[("authorization", "Bearer tg_u1_secret")]),
        presented(CredentialSource::AuthorizationBearer, "tg_u1_secret")
    );
}

#[test]
fn bearer_scheme_matches_in_any_case() {
    for value in ["bearer k3y", "BEARER k3y", "bEaReR k3y"] {
        assert_eq!(
            extract(&[("authorization", value)]),
            presented(CredentialSource::AuthorizationBearer, "k3y"),
            "for {value:?}"
        );
    }
}

#[test]
fn spaces_around_the_key_are_not_part_of_it() {
    assert_eq!(
        extract(&[("authorization", "Bearer   k3y ")]),
        presented(CredentialSource::AuthorizationBearer, "k3y")
    );
    assert_eq!(
        extract(&[("x-api-key", " k3y\t")]),
        presented(CredentialSource::ApiKeyHeader, "k3y")
    );
}

#[test]
fn keys_of_any_format_are_accepted() {
    for key in ["legacy-0001", "a", "AKIA/with+symbols=", "tg_u_x"] {
        assert_eq!(
            extract(&[("x-api-key", key)]),
            presented(CredentialSource::ApiKeyHeader, key),
            "for {key:?}"
        );
    }
}

#[test]
fn api_key_header_wins_over_a_bearer() {
    assert_eq!(
        extract(&[("authorization", "Bearer other"), ("x-api-key", "k3y")]),
        presented(CredentialSource::ApiKeyHeader, "k3y")
    );
}

#[test]
fn no_credential_header_is_missing() {
    assert_eq!(extract(&[]), Err(CredentialError::Missing));
    assert_eq!(extract(&[("accept", "*/*")]), Err(CredentialError::Missing));
}

#[test]
fn other_authorization_schemes_are_missing() {
    for value in ["Basic dXNlcjpwYXNz", "Bearerk3y", "Token k3y"] {
        assert_eq!(
            extract(&[("authorization", value)]),
            Err(CredentialError::Missing),
            "for {value:?}"
        );
    }
}

#[test]
fn empty_key_is_invalid() {
    for headers in [
        [("x-api-key", "")],
        [("x-api-key", "   ")],
        [("authorization", "Bearer")],
        [("authorization", "Bearer   ")],
    ] {
        assert_eq!(
            extract(&headers),
            Err(CredentialError::Invalid),
            "for {headers:?}"
        );
    }
}

#[test]
fn key_at_the_size_limit_is_accepted_and_one_byte_more_is_invalid() {
    let at_limit = "k".repeat(MAX);
    let over_limit = "k".repeat(MAX + 1);

    assert_eq!(
        extract(&[("x-api-key", at_limit.as_str())]),
        presented(CredentialSource::ApiKeyHeader, &at_limit)
    );
    assert_eq!(
        extract(&[("x-api-key", over_limit.as_str())]),
        Err(CredentialError::Invalid)
    );
}

#[test]
fn huge_key_is_invalid() {
    let huge = format!("Bearer {}", "k".repeat(1 << 20));

    assert_eq!(
        extract(&[("authorization", huge.as_str())]),
        Err(CredentialError::Invalid)
    );
}

#[test]
fn key_with_non_visible_ascii_is_invalid() {
    for key in [
        "k3y with space",
        "k3y\u{7f}",
        "k3y\u{1}",
        "ключ",
        "k3y\u{e9}",
    ] {
        assert_eq!(
            extract(&[("x-api-key", key)]),
            Err(CredentialError::Invalid),
            "for {key:?}"
        );
    }
}

#[test]
fn key_bytes_that_are_not_utf8_are_invalid() {
    let headers = [("x-api-key", vec![b'k', 0xff, b'y'])];

    assert_eq!(
        extract_credential(&headers, MAX, &digester()),
        Err(CredentialError::Invalid)
    );
}

#[test]
fn two_api_key_headers_are_invalid() {
    assert_eq!(
        extract(&[("x-api-key", "one"), ("x-api-key", "two")]),
        Err(CredentialError::Invalid)
    );
}

#[test]
fn two_bearer_authorizations_are_invalid() {
    assert_eq!(
        extract(&[
            ("authorization", "Bearer one"),
            ("authorization", "Bearer two")
        ]),
        Err(CredentialError::Invalid)
    );
}

#[test]
fn a_bearer_beside_another_scheme_is_read() {
    assert_eq!(
        extract(&[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("authorization", "Bearer k3y")
        ]),
        presented(CredentialSource::AuthorizationBearer, "k3y")
    );
}

#[test]
fn an_invalid_api_key_header_is_not_rescued_by_a_bearer() {
    assert_eq!(
        extract(&[("x-api-key", ""), ("authorization", "Bearer k3y")]),
        Err(CredentialError::Invalid)
    );
}
