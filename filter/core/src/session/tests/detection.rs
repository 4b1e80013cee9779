//! Telling a session token from an API key in `Authorization: Bearer`.

use super::fixtures::*;
use crate::session::{looks_like_jwt, MAX_TOKEN_BYTES};

#[test]
fn signed_tokens_look_like_jwts() {
    assert!(looks_like_jwt(ed_token(&claims()).as_bytes()));
    assert!(looks_like_jwt(rsa_token(&claims()).as_bytes()));
}

#[test]
fn any_object_header_with_two_dots_looks_like_a_jwt() {
    // `e30` is `{}`: the shape is enough, verification refuses the rest.
    assert!(looks_like_jwt(b"e30.."));
    assert!(looks_like_jwt(b"e30.x.y"));
}

#[test]
fn api_keys_do_not_look_like_jwts() {
    for key in [
        &b"tg_u1_0123456789abcdefghijklmnopqrstuv"[..],
        b"legacy-0001",
        b"AKIA/with+symbols=",
        b"",
    ] {
        assert!(!looks_like_jwt(key), "for {key:?}");
    }
}

#[test]
fn other_dot_counts_do_not_look_like_jwts() {
    let token = ed_token(&claims());
    let one_dot = token.rsplit_once('.').map_or("", |(input, _)| input);
    for credential in [
        one_dot.to_owned(),
        format!("{token}.x"),
        format!("{token}."),
    ] {
        assert!(!looks_like_jwt(credential.as_bytes()), "for {credential:?}");
    }
}

#[test]
fn a_first_segment_that_is_not_an_object_does_not_look_like_a_jwt() {
    for header in ["[]", "\"JWT\"", "1", "null", "{", "not json"] {
        let credential = format!("{}.x.y", b64(header));

        assert!(!looks_like_jwt(credential.as_bytes()), "for {header:?}");
    }
}

#[test]
fn a_first_segment_that_is_not_base64url_does_not_look_like_a_jwt() {
    for credential in [
        &b"e30=.x.y"[..],
        b"{}.x.y",
        b"e3 0.x.y",
        b"\xffe30.x.y",
        b"..",
        b"a.b.c",
    ] {
        assert!(!looks_like_jwt(credential), "for {credential:?}");
    }
}

#[test]
fn a_credential_over_the_size_limit_does_not_look_like_a_jwt() {
    let credential = format!("e30.{}.x", "x".repeat(MAX_TOKEN_BYTES));

    assert!(!looks_like_jwt(credential.as_bytes()));
}
