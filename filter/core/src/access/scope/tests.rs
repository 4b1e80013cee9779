use super::*;

fn scopes(list: &[&str]) -> Scopes {
    let list: Vec<String> = list.iter().map(|scope| (*scope).to_owned()).collect();
    Scopes::parse(&list).expect("valid scopes")
}

fn problem_of(scope: &str) -> Option<ScopeProblem> {
    match Scopes::parse(&[scope.to_owned()]) {
        Err(ScopeError::Invalid { problem, .. }) => Some(problem),
        Err(ScopeError::TooMany { .. }) | Ok(_) => None,
    }
}

#[test]
fn no_scopes_permit_everything() {
    let none = scopes(&[]);

    assert!(none.permits("GET", "/anything"));
    assert!(none.permits("DELETE", "/admin/../etc"));
    assert!(none.permits("OPTIONS", "*"));
}

#[test]
fn a_prefix_matches_on_segment_boundaries() {
    let images = scopes(&["/v1/images"]);

    for path in [
        "/v1/images",
        "/v1/images/",
        "/v1/images/123",
        "/v1/images/123/thumbnail",
        "/v1/images?x=1",
        "/v1/images/?x=1",
    ] {
        assert!(images.permits("GET", path), "for {path:?}");
    }
    for path in [
        "/v1/imagesX",
        "/v1/images-old",
        "/v1/images.json",
        "/v1/image",
        "/v1",
        "/",
        "/v2/images",
        "/V1/images",
        "/x/v1/images",
    ] {
        assert!(!images.permits("GET", path), "for {path:?}");
    }
}

#[test]
fn a_prefix_ending_in_a_slash_matches_what_starts_with_it() {
    let under = scopes(&["/v1/images/"]);

    assert!(under.permits("GET", "/v1/images/"));
    assert!(under.permits("GET", "/v1/images/123"));
    assert!(!under.permits("GET", "/v1/images"));
    assert!(!under.permits("GET", "/v1/imagesX"));
}

#[test]
fn the_root_prefix_matches_every_normal_path() {
    let root = scopes(&["/"]);

    for path in ["/", "/v1", "/v1/images/123", "/?q=1"] {
        assert!(root.permits("PATCH", path), "for {path:?}");
    }
}

#[test]
fn the_query_string_is_not_matched() {
    let images = scopes(&["/v1/images"]);

    assert!(!images.permits("GET", "/v1/other?next=/v1/images"));
    assert!(images.permits("GET", "/v1/images?redirect=/admin/../x"));
    assert!(!images.permits("GET", "/v1/imagesX?/v1/images"));
}

#[test]
fn a_method_restricts_the_scope_to_that_method() {
    let read_only = scopes(&["GET /v1/images"]);

    assert!(read_only.permits("GET", "/v1/images/1"));
    assert!(!read_only.permits("POST", "/v1/images/1"));
    assert!(!read_only.permits("HEAD", "/v1/images/1"));
    assert!(!read_only.permits("get", "/v1/images/1"));
}

#[test]
fn a_star_or_no_method_allows_every_method() {
    for scope in ["* /v1/images", "/v1/images"] {
        let any = scopes(&[scope]);

        for method in ["GET", "POST", "DELETE", "PROPFIND", "M-SEARCH"] {
            assert!(any.permits(method, "/v1/images"), "{scope:?} {method}");
        }
    }
}

#[test]
fn any_matching_scope_permits() {
    let mixed = scopes(&["GET /v1/images", "POST /v1/uploads/", "/v1/public"]);

    assert!(mixed.permits("GET", "/v1/images/1"));
    assert!(mixed.permits("POST", "/v1/uploads/a"));
    assert!(mixed.permits("DELETE", "/v1/public/x"));
    assert!(!mixed.permits("POST", "/v1/images/1"));
    assert!(!mixed.permits("GET", "/v1/uploads/a"));
    assert!(!mixed.permits("GET", "/v1/admin"));
}

#[test]
fn traversal_attempts_are_refused_even_when_a_prefix_matches() {
    let images = scopes(&["/v1/images"]);

    for path in [
        "/v1/images/../admin",
        "/v1/images/./../admin",
        "/v1/images/..",
        "/v1/images/%2e%2e/admin",
        "/v1/images/%2E./admin",
        "/v1/images/..;/admin",
        "/v1/images//admin",
        "/v1/images/..%2fadmin",
        "/v1/images%2F..%2Fadmin",
        "/v1/images/%5c..%5cadmin",
        "/v1/images/\\..\\admin",
        "/v1/images/../admin?x=1",
    ] {
        assert!(!images.permits("GET", path), "for {path:?}");
    }
}

#[test]
fn flawed_paths_are_refused_even_under_the_root_prefix() {
    let root = scopes(&["/"]);

    for path in ["//admin", "/./admin", "/a/../b", "/a%2fb"] {
        assert!(!root.permits("GET", path), "for {path:?}");
    }
}

#[test]
fn paths_not_starting_with_a_slash_are_refused() {
    let root = scopes(&["/"]);

    for path in ["", "*", "v1/images", "http://example.com/v1", "?x=/"] {
        assert!(!root.permits("OPTIONS", path), "for {path:?}");
    }
}

#[test]
fn accepts_method_tokens_in_upper_case() {
    for scope in [
        "GET /v1",
        "DELETE /v1/",
        "M-SEARCH /",
        "PROPFIND /dav",
        "X_CUSTOM1 /v1",
    ] {
        assert_eq!(problem_of(scope), None, "for {scope:?}");
    }
}

#[test]
fn refuses_lower_case_or_invalid_methods() {
    for scope in [
        "get /v1",
        "Get /v1",
        "GE(T /v1",
        "GET, /v1",
        " /v1",
        "GET:POST /v1",
    ] {
        assert_eq!(
            problem_of(scope),
            Some(ScopeProblem::InvalidMethod),
            "for {scope:?}"
        );
    }
}

#[test]
fn refuses_an_empty_scope() {
    assert_eq!(problem_of(""), Some(ScopeProblem::Empty));
}

#[test]
fn refuses_a_prefix_without_a_leading_slash() {
    for scope in [
        "v1/images",
        "GET",
        "GET v1/images",
        "GET  /v1",
        "GET\t/v1",
        "*",
        "* ",
    ] {
        assert_eq!(
            problem_of(scope),
            Some(ScopeProblem::MissingLeadingSlash),
            "for {scope:?}"
        );
    }
}

#[test]
fn refuses_whitespace_and_invisible_characters_in_the_prefix() {
    for scope in [
        "/v1/ images",
        "GET /v1 /x",
        "/v1/\timages",
        "/v1/images ",
        "/v1/\u{0}",
        "/v1/bilder/ä",
        "/v1/\u{a0}",
    ] {
        assert_eq!(
            problem_of(scope),
            Some(ScopeProblem::NotVisibleAscii),
            "for {scope:?}"
        );
    }
}

#[test]
fn refuses_queries_and_fragments_in_the_prefix() {
    for scope in ["/v1/images?x=1", "/v1#top"] {
        assert_eq!(
            problem_of(scope),
            Some(ScopeProblem::QueryOrFragment),
            "for {scope:?}"
        );
    }
}

#[test]
fn refuses_unsafe_prefixes() {
    for (scope, flaw) in [
        ("/v1/../admin", PathFlaw::DotSegment),
        ("GET /v1/images/..", PathFlaw::DotSegment),
        ("/v1/./x", PathFlaw::DotSegment),
        ("/v1/%2e%2e/", PathFlaw::DotSegment),
        ("/v1//x", PathFlaw::EmptySegment),
        ("/v1/a%2fb", PathFlaw::EncodedSeparator),
        ("/v1/a%2Fb", PathFlaw::EncodedSeparator),
        ("/v1\\x", PathFlaw::Backslash),
    ] {
        assert_eq!(
            problem_of(scope),
            Some(ScopeProblem::UnsafePath(flaw)),
            "for {scope:?}"
        );
    }
}

#[test]
fn refuses_a_scope_longer_than_200_characters() {
    let at_limit = format!("/{}", "a".repeat(MAX_SCOPE_CHARS - 1));
    let over_limit = format!("/{}", "a".repeat(MAX_SCOPE_CHARS));

    assert_eq!(problem_of(&at_limit), None);
    assert_eq!(problem_of(&over_limit), Some(ScopeProblem::TooLong));
}

#[test]
fn refuses_more_than_50_scopes() {
    let at_limit: Vec<String> = (0..MAX_SCOPES).map(|n| format!("/v{n}")).collect();
    let over_limit: Vec<String> = (0..=MAX_SCOPES).map(|n| format!("/v{n}")).collect();

    assert!(Scopes::parse(&at_limit).is_ok());
    assert_eq!(
        Scopes::parse(&over_limit),
        Err(ScopeError::TooMany { count: 51 })
    );
}

#[test]
fn the_error_names_the_first_bad_scope() {
    let list = ["/ok".to_owned(), "get /v1".to_owned(), "nope".to_owned()];

    let error = Scopes::parse(&list).expect_err("a bad scope");

    assert_eq!(
        error.to_string(),
        r#"scope "get /v1": the method must be `*` or an upper-case HTTP method"#
    );
}

#[test]
fn error_messages_escape_and_shorten_the_scope() {
    let error = Scopes::parse(&["/a\nb".to_owned()]).expect_err("newline");
    assert_eq!(
        error.to_string(),
        r#"scope "/a\nb": the path prefix must be visible ASCII (no whitespace; percent-encode the rest)"#
    );

    let long = format!("/{}", "a".repeat(500));
    let message = Scopes::parse(&[long]).expect_err("too long").to_string();
    assert!(message.len() < 150, "{message}");
    assert!(
        message.ends_with("is longer than 200 characters"),
        "{message}"
    );
}

#[test]
fn the_admin_api_scope_permits_no_route_behind_envoy() {
    let admin_only = scopes(&[ADMIN_API_SCOPE]);

    assert!(!admin_only.is_unrestricted());
    for path in ["/", "/v1/images", "/api/v1/users"] {
        assert!(!admin_only.permits("GET", path), "for {path:?}");
    }
    assert!(scopes(&[ADMIN_API_SCOPE, "/v1/images"]).permits("GET", "/v1/images/1"));
}

#[test]
fn the_admin_api_is_reached_by_its_scope_or_a_prefix_covering_the_call() {
    let calls = [("GET", "/api/v1/users"), ("POST", "/api/v1/users/u_1/keys")];
    for list in [
        &[][..],
        &[ADMIN_API_SCOPE][..],
        &["/api/v1/"][..],
        &["* /api/"][..],
    ] {
        let granted = scopes(list);
        for (method, path) in calls {
            assert!(
                granted.permits_admin_api(method, path),
                "{list:?} for {method} {path}"
            );
        }
    }
    let readonly = scopes(&["GET /api/v1/users"]);
    assert!(readonly.permits_admin_api("GET", "/api/v1/users"));
    assert!(!readonly.permits_admin_api("POST", "/api/v1/users/u_1/keys"));
    let data_plane = scopes(&["GET /v1/reports"]);
    for (method, path) in calls {
        assert!(
            !data_plane.permits_admin_api(method, path),
            "{method} {path}"
        );
    }
}

#[test]
fn scopes_cover_only_what_they_permit_themselves() {
    let broad = scopes(&["GET /v1/", "/v2/images", ADMIN_API_SCOPE]);

    for narrower in [
        &["GET /v1/reports"][..],
        &["GET /v1/"][..],
        &["/v2/images/1", "GET /v2/images"][..],
        &["/v2/images/"][..],
        &[ADMIN_API_SCOPE][..],
    ] {
        assert!(broad.covers(&scopes(narrower)), "{narrower:?}");
    }
    for wider in [
        &[][..],
        &["/v1/reports"][..],
        &["* /v1/reports"][..],
        &["POST /v1/reports"][..],
        &["GET /v1"][..],
        &["/v2/imagesX"][..],
        &["/v2/"][..],
        &["GET /v1/reports", "/v3"][..],
    ] {
        assert!(!broad.covers(&scopes(wider)), "{wider:?}");
    }
    assert!(!scopes(&["/"]).covers(&scopes(&[ADMIN_API_SCOPE])));
    assert!(scopes(&[]).covers(&scopes(&[])));
    assert!(scopes(&[]).covers(&scopes(&[ADMIN_API_SCOPE, "/x"])));
}
