//! The compact JWS shape and the JOSE header: anything else is refused before any signature
//! work, and no input makes verification panic.

use serde_json::json;

use super::fixtures::*;
use crate::session::{SessionError, MAX_TOKEN_BYTES};

/// Valid EdDSA tokens padded by a claim: the longest within `limit` bytes, and the next one.
fn ed_tokens_around(limit: usize) -> (String, String) {
    let padded = |pad: usize| claims_with(json!({ "pad": "x".repeat(pad) }));
    let unpadded_claims = padded(0).to_string().len();
    let rest = ed_token(&padded(0)).len() - b64(padded(0).to_string()).len();
    let length = |pad: usize| rest + (4 * (unpadded_claims + pad)).div_ceil(3);
    let pad = (0..limit)
        .rev()
        .find(|&pad| length(pad) <= limit)
        .unwrap_or_default();
    (ed_token(&padded(pad)), ed_token(&padded(pad + 1)))
}

#[test]
fn the_size_limit_is_inclusive() {
    let (within, beyond) = ed_tokens_around(MAX_TOKEN_BYTES);

    assert!(within.len() > MAX_TOKEN_BYTES - 4, "{} bytes", within.len());
    assert!(within.len() <= MAX_TOKEN_BYTES);
    assert!(beyond.len() > MAX_TOKEN_BYTES);
    assert_eq!(check(&within), Ok(alice()));
    assert_eq!(check(&beyond), Err(SessionError::Malformed));
}

#[test]
fn refuses_a_huge_token() {
    let huge = format!(
        "{}.{}.{}",
        "e".repeat(1 << 20),
        "e".repeat(1 << 20),
        "e".repeat(1 << 20)
    );

    assert_eq!(check(&huge), Err(SessionError::Malformed));
}

#[test]
fn refuses_other_segment_counts() {
    let token = ed_token(&claims());
    let segments: Vec<&str> = token.split('.').collect();
    for wrong in [
        String::new(),
        segments[0].to_owned(),
        format!("{}.{}", segments[0], segments[1]),
        format!(
            "{}.{}.{}.{}",
            segments[0], segments[1], segments[2], segments[2]
        ),
        format!("{token}."),
        format!(".{token}"),
        format!("{}..{}.{}", segments[0], segments[1], segments[2]),
        "..".to_owned(),
        "....".to_owned(),
    ] {
        assert_eq!(check(&wrong), Err(SessionError::Malformed), "for {wrong:?}");
    }
}

#[test]
fn refuses_base64_padding() {
    let input = signing_input(&header("EdDSA", ED_KID).to_string(), &claims().to_string());
    let token = ed_sign(&ed_signing_key(), &input);
    let segments: Vec<&str> = token.split('.').collect();
    for padded in [
        format!("{}=.{}.{}", segments[0], segments[1], segments[2]),
        format!("{}.{}=.{}", segments[0], segments[1], segments[2]),
        format!("{}.{}.{}==", segments[0], segments[1], segments[2]),
    ] {
        assert_eq!(
            check(&padded),
            Err(SessionError::Malformed),
            "for {padded:?}"
        );
    }
}

#[test]
fn refuses_the_standard_base64_alphabet() {
    // Signature bytes chosen so that their base64url has '-' and '_' to swap for '+' and '/'.
    let input = signing_input(&header("EdDSA", ED_KID).to_string(), &claims().to_string());
    let url_safe = format!("{input}.{}", b64([0xfb_u8; 64]));
    assert!(url_safe.contains('-') && url_safe.contains('_'));
    let standard = url_safe.replace('-', "+").replace('_', "/");

    assert_eq!(check(&url_safe), Err(SessionError::BadSignature));
    assert_eq!(check(&standard), Err(SessionError::Malformed));
}

#[test]
fn refuses_non_canonical_trailing_bits() {
    let token = ed_token(&claims());
    let (input, signature) = token.rsplit_once('.').expect("a compact JWS");
    // 64 bytes end in a 2-character group whose last character carries 4 unused bits.
    let mut altered: Vec<char> = signature.chars().collect();
    if let Some(last) = altered.last_mut() {
        *last = if *last == 'B' { 'C' } else { 'B' };
    }
    let altered: String = altered.into_iter().collect();

    assert_eq!(
        check(&format!("{input}.{altered}")),
        Err(SessionError::Malformed)
    );
}

#[test]
fn refuses_whitespace_and_non_ascii() {
    let token = ed_token(&claims());
    let (header, rest) = token.split_once('.').expect("a compact JWS");
    for wrong in [
        format!(" {token}"),
        format!("{token} "),
        format!("{token}\n"),
        format!("{header} .{rest}"),
        format!("{header}\t.{rest}"),
        format!("{header}é.{rest}"),
        format!("{header}.\u{1F600}{rest}"),
        format!("{header}\u{0}.{rest}"),
        format!("Bearer {token}"),
    ] {
        assert_eq!(check(&wrong), Err(SessionError::Malformed), "for {wrong:?}");
    }
}

#[test]
fn refuses_garbage() {
    for garbage in [
        "garbage",
        "a.b.c",
        "eyJ.eyJ.eyJ",
        "{}.{}.{}",
        "\u{0}\u{0}.\u{0}.\u{0}",
        "ключ.ключ.ключ",
        "tg_u1_0123456789abcdefghijklmnopqrstuv",
    ] {
        assert_eq!(
            check(garbage),
            Err(SessionError::Malformed),
            "for {garbage:?}"
        );
    }
}

#[test]
fn no_input_makes_verification_panic() {
    // A fixed xorshift stream: the same inputs on every run.
    let alphabet: Vec<char> = "eyJ0.-_A=+/{}\": \u{e9}\u{0}ab".chars().collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2_000 {
        let len = usize::try_from(next() % 64).unwrap_or_default();
        let input: String = (0..len)
            .map(|_| alphabet[usize::try_from(next()).unwrap_or_default() % alphabet.len()])
            .collect();
        assert!(check(&input).is_err(), "for {input:?}");
    }
}

#[test]
fn refuses_a_header_that_is_not_a_json_object() {
    let claims = claims().to_string();
    for header in [
        "",
        "null",
        "[]",
        r#"["EdDSA", "ed-1"]"#,
        "\"EdDSA\"",
        "{",
        "{}{}",
    ] {
        let token = ed_sign(&ed_signing_key(), &signing_input(header, &claims));

        assert_eq!(
            check(&token),
            Err(SessionError::Malformed),
            "for {header:?}"
        );
    }
}

#[test]
fn refuses_a_header_without_a_string_alg_and_kid() {
    for header in [
        json!({ "kid": ED_KID }),
        json!({ "alg": "EdDSA" }),
        json!({ "alg": null, "kid": ED_KID }),
        json!({ "alg": ["EdDSA"], "kid": ED_KID }),
        json!({ "alg": "EdDSA", "kid": 1 }),
        json!({ "alg": "EdDSA", "kid": null }),
    ] {
        assert_eq!(
            check(&ed_token_with(&header, &claims())),
            Err(SessionError::Malformed),
            "for {header}"
        );
    }
}

#[test]
fn refuses_a_repeated_header_field() {
    let header = format!(r#"{{"alg":"none","kid":"{ED_KID}","alg":"EdDSA"}}"#);
    let token = ed_sign(
        &ed_signing_key(),
        &signing_input(&header, &claims().to_string()),
    );

    assert_eq!(check(&token), Err(SessionError::Malformed));
}

#[test]
fn accepts_typ_jwt_in_any_case_or_absent() {
    for typ in [json!("JWT"), json!("jwt"), json!("Jwt"), json!(null)] {
        let header = json!({ "alg": "EdDSA", "kid": ED_KID, "typ": typ });

        assert_eq!(
            check(&ed_token_with(&header, &claims())),
            Ok(alice()),
            "for {typ}"
        );
    }
    let untyped = json!({ "alg": "EdDSA", "kid": ED_KID });
    assert_eq!(check(&ed_token_with(&untyped, &claims())), Ok(alice()));
}

#[test]
fn refuses_another_typ() {
    for typ in [
        json!("at+jwt"),
        json!("JWS"),
        json!(""),
        json!("JWT "),
        json!(1),
    ] {
        let header = json!({ "alg": "EdDSA", "kid": ED_KID, "typ": typ });

        assert_eq!(
            check(&ed_token_with(&header, &claims())),
            Err(SessionError::Malformed),
            "for {typ}"
        );
    }
}

#[test]
fn refuses_a_crit_header_whatever_its_value() {
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!([]),
        json!(null),
        json!("x"),
    ] {
        let header = json!({ "alg": "EdDSA", "kid": ED_KID, "crit": crit, "b64": false });

        assert_eq!(
            check(&ed_token_with(&header, &claims())),
            Err(SessionError::Malformed),
            "for {crit}"
        );
    }
}

#[test]
fn refuses_a_payload_that_is_not_base64url() {
    let header = b64(header("EdDSA", ED_KID).to_string());
    let input = format!("{header}.not*base64");

    assert_eq!(
        check(&ed_sign(&ed_signing_key(), &input)),
        Err(SessionError::Malformed)
    );
}
