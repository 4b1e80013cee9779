use super::*;

fn removed(headers: &[(&str, &str)], key_source: CredentialSource) -> Vec<String> {
    scrub(headers, key_source).remove
}

fn cookie_after(headers: &[(&str, &str)]) -> Option<Option<String>> {
    scrub(headers, CredentialSource::ApiKeyHeader).cookie
}

#[test]
fn removes_the_api_key_header() {
    let headers = [("x-api-key", "k3y"), ("accept", "*/*")];

    assert_eq!(
        removed(&headers, CredentialSource::ApiKeyHeader),
        ["x-api-key"]
    );
}

#[test]
fn removes_authorization_when_it_carried_the_key() {
    let headers = [("authorization", "Bearer k3y"), ("accept", "*/*")];

    assert_eq!(
        removed(&headers, CredentialSource::AuthorizationBearer),
        ["authorization"]
    );
}

#[test]
fn keeps_authorization_when_the_key_came_from_x_api_key() {
    let headers = [("x-api-key", "k3y"), ("authorization", "Bearer other")];

    assert_eq!(
        removed(&headers, CredentialSource::ApiKeyHeader),
        ["x-api-key"]
    );
}

#[test]
fn removes_every_client_sent_tollgate_header_in_any_case() {
    let headers = [
        ("X-Tollgate-User-Id", "u_admin"),
        ("x-tollgate-groups", "g_admins"),
        ("x-tollgate-anything-else", "1"),
        ("x-tollgateway", "not ours"),
        ("x-api-key", "k3y"),
    ];

    assert_eq!(
        removed(&headers, CredentialSource::ApiKeyHeader),
        [
            "x-tollgate-user-id",
            "x-tollgate-groups",
            "x-tollgate-anything-else",
            "x-api-key"
        ]
    );
}

#[test]
fn removes_tollgate_headers_spelled_with_underscores() {
    let headers = [
        ("x_tollgate_user_id", "u_admin"),
        ("X_Tollgate_Groups", "g_admins"),
        ("x-tollgate_tenant_id", "t_other"),
        ("x_tollgate-client-ip", "6.6.6.6"),
        ("x_tollgateway", "not ours"),
        ("x__tollgate_user_id", "not ours"),
        ("xtollgate_user_id", "not ours"),
        ("y_tollgate_user_id", "not ours"),
    ];

    assert_eq!(
        removed(&headers, CredentialSource::ApiKeyHeader),
        [
            "x_tollgate_user_id",
            "x_tollgate_groups",
            "x-tollgate_tenant_id",
            "x_tollgate-client-ip"
        ]
    );
}

#[test]
fn lists_a_repeated_header_once() {
    let headers = [
        ("x-tollgate-user-id", "a"),
        ("X-Tollgate-User-Id", "b"),
        ("x-api-key", "k3y"),
    ];

    assert_eq!(
        removed(&headers, CredentialSource::ApiKeyHeader),
        ["x-tollgate-user-id", "x-api-key"]
    );
}

#[test]
fn leaves_ordinary_headers_and_cookies_alone() {
    let headers = [
        ("accept", "*/*"),
        ("x-request-id", "r1"),
        ("cookie", "a=b; tollgate_sessionx=1; c=tollgate_session"),
    ];

    assert_eq!(
        scrub(&headers, CredentialSource::ApiKeyHeader),
        Scrub::default()
    );
}

#[test]
fn cuts_the_session_cookie_whatever_authenticated_the_request() {
    let headers = [
        ("x-api-key", "k3y"),
        ("cookie", "theme=dark; tollgate_session=a.b.c; lang=en"),
    ];

    for key_source in [
        CredentialSource::ApiKeyHeader,
        CredentialSource::AuthorizationBearer,
    ] {
        assert_eq!(
            scrub(&headers, key_source).cookie,
            Some(Some("theme=dark; lang=en".to_owned()))
        );
    }
}

#[test]
fn joins_the_other_cookies_of_every_cookie_header() {
    let headers = [
        ("cookie", "theme=dark"),
        ("Cookie", " tollgate_session = a.b.c ;lang=en"),
    ];

    assert_eq!(
        cookie_after(&headers),
        Some(Some("theme=dark; lang=en".to_owned()))
    );
}

#[test]
fn removes_a_cookie_header_that_held_only_the_session() {
    assert_eq!(
        cookie_after(&[("cookie", "tollgate_session=a.b.c")]),
        Some(None)
    );
    assert_eq!(
        cookie_after(&[("cookie", "tollgate_session=a.b.c"), ("cookie", ";")]),
        Some(None)
    );
}
