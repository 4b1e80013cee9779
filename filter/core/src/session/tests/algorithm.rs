//! Algorithms, keys and signatures: a token verifies only with the key its `kid` names, under
//! that key's own algorithm, and only as it was signed.

use hmac::{Hmac, Mac};
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::json;
use sha2::Sha256;

use super::fixtures::*;
use crate::session::SessionError;

fn hs256(key: &[u8], signing_input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(mac.finalize().into_bytes()))
}

/// `token` with the character at `index` of its payload segment replaced.
fn with_payload_char(token: &str, index: usize, replacement: char) -> String {
    let segments: Vec<&str> = token.split('.').collect();
    let payload: String = segments[1]
        .chars()
        .enumerate()
        .map(|(at, original)| if at == index { replacement } else { original })
        .collect();
    format!("{}.{payload}.{}", segments[0], segments[2])
}

/// `token` with its payload replaced and its original signature kept.
fn with_claims(token: &str, claims: &serde_json::Value) -> String {
    let segments: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        segments[0],
        b64(claims.to_string()),
        segments[2]
    )
}

/// `token` with one bit of its decoded signature flipped.
fn with_signature_bit_flipped(token: &str, byte: usize) -> String {
    let (signing_input, signature) = token.rsplit_once('.').expect("a compact JWS");
    let mut signature = base64_decode(signature);
    signature[byte] ^= 0x01;
    format!("{signing_input}.{}", b64(signature))
}

fn base64_decode(segment: &str) -> Vec<u8> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.decode(segment).expect("base64url")
}

#[test]
fn accepts_a_valid_eddsa_token() {
    assert_eq!(check(&ed_token(&claims())), Ok(alice()));
}

#[test]
fn accepts_a_valid_rs256_token() {
    assert_eq!(check(&rsa_token(&claims())), Ok(alice()));
}

#[test]
fn refuses_alg_none_in_any_case_with_an_empty_signature() {
    for header in [
        json!({ "alg": "none", "kid": ED_KID, "typ": "JWT" }),
        json!({ "alg": "none", "kid": RSA_KID, "typ": "JWT" }),
        json!({ "alg": "None", "kid": ED_KID }),
        json!({ "alg": "NONE", "kid": ED_KID }),
        json!({ "alg": "nOnE", "kid": ED_KID }),
    ] {
        let input = signing_input(&header.to_string(), &claims().to_string());

        assert_eq!(
            check(&format!("{input}.")),
            Err(SessionError::UnsupportedAlgorithm),
            "for {header}"
        );
    }
}

#[test]
fn refuses_hs256_signed_with_the_rsa_public_key() {
    let public_key = rsa_private_key().to_public_key();
    let pem = public_key
        .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
        .expect("the public key encodes");
    let der = public_key
        .to_public_key_der()
        .expect("the public key encodes");
    let input = signing_input(&header("HS256", RSA_KID).to_string(), &claims().to_string());
    for hmac_key in [pem.as_bytes(), der.as_bytes(), &public_key.n_bytes()] {
        assert_eq!(
            check(&hs256(hmac_key, &input)),
            Err(SessionError::UnsupportedAlgorithm)
        );
    }
}

#[test]
fn refuses_every_hmac_algorithm() {
    for alg in ["HS256", "HS384", "HS512"] {
        for kid in [ED_KID, RSA_KID] {
            let input = signing_input(&header(alg, kid).to_string(), &claims().to_string());

            assert_eq!(
                check(&hs256(b"secret", &input)),
                Err(SessionError::UnsupportedAlgorithm),
                "for {alg} with kid {kid}"
            );
        }
    }
}

#[test]
fn refuses_rs256_on_the_ed25519_key() {
    let input = signing_input(&header("RS256", ED_KID).to_string(), &claims().to_string());

    assert_eq!(
        check(&rsa_sign(&input)),
        Err(SessionError::UnsupportedAlgorithm)
    );
}

#[test]
fn refuses_eddsa_on_the_rsa_key() {
    let token = ed_token_with(&header("EdDSA", RSA_KID), &claims());

    assert_eq!(check(&token), Err(SessionError::UnsupportedAlgorithm));
}

#[test]
fn refuses_other_algorithms_and_other_spellings() {
    for alg in [
        "ES256", "ES384", "PS256", "RS384", "RS512", "Ed25519", "eddsa", "EDDSA", "rs256",
        "RS256 ", "",
    ] {
        let token = ed_token_with(&header(alg, ED_KID), &claims());

        assert_eq!(
            check(&token),
            Err(SessionError::UnsupportedAlgorithm),
            "for {alg:?}"
        );
    }
}

#[test]
fn refuses_an_unknown_kid() {
    for kid in ["ed-2", "", "ED-1", "ed-1 "] {
        let token = ed_token_with(&header("EdDSA", kid), &claims());

        assert_eq!(check(&token), Err(SessionError::UnknownKey), "for {kid:?}");
    }
}

#[test]
fn refuses_a_token_signed_by_another_key_under_a_known_kid() {
    let input = signing_input(&header("EdDSA", ED_KID).to_string(), &claims().to_string());

    assert_eq!(
        check(&ed_sign(&stranger_ed_signing_key(), &input)),
        Err(SessionError::BadSignature)
    );
}

#[test]
fn ignores_a_key_embedded_in_the_header() {
    let stranger = stranger_ed_signing_key();
    let header = json!({
        "alg": "EdDSA",
        "kid": ED_KID,
        "jwk": { "kty": "OKP", "crv": "Ed25519", "x": b64(stranger.verifying_key().to_bytes()) },
        "jku": "https://attacker.test/jwks.json",
    });
    let input = signing_input(&header.to_string(), &claims().to_string());

    assert_eq!(
        check(&ed_sign(&stranger, &input)),
        Err(SessionError::BadSignature)
    );
}

#[test]
fn refuses_a_changed_claim_under_the_original_signature() {
    let promoted = claims_with(json!({ "sub": "u_admin", "role": "admin" }));
    for token in [ed_token(&claims()), rsa_token(&claims())] {
        assert_eq!(
            check(&with_claims(&token, &promoted)),
            Err(SessionError::BadSignature)
        );
    }
}

#[test]
fn refuses_an_extended_expiry_under_the_original_signature() {
    let expired = claims_with(json!({ "exp": NOW - 3_600 }));
    let extended = claims_with(json!({ "exp": NOW + 3_600 }));
    for token in [ed_token(&expired), rsa_token(&expired)] {
        assert_eq!(check(&token), Err(SessionError::Expired));
        assert_eq!(
            check(&with_claims(&token, &extended)),
            Err(SessionError::BadSignature)
        );
    }
}

#[test]
fn refuses_a_flipped_signature_bit() {
    let ed = ed_token(&claims());
    let rsa = rsa_token(&claims());
    for (token, byte) in [
        (&ed, 0),
        (&ed, 31),
        (&ed, 63),
        (&rsa, 0),
        (&rsa, 128),
        (&rsa, 255),
    ] {
        assert_eq!(
            check(&with_signature_bit_flipped(token, byte)),
            Err(SessionError::BadSignature),
            "byte {byte}"
        );
    }
}

#[test]
fn refuses_a_signature_of_the_wrong_length() {
    for token in [ed_token(&claims()), rsa_token(&claims())] {
        let (input, signature) = token.rsplit_once('.').expect("a compact JWS");
        let signature = base64_decode(signature);
        let mut longer = vec![0];
        longer.extend(&signature);
        let shorter = &signature[1..];
        for wrong in [&longer[..], shorter, &[]] {
            assert_eq!(
                check(&format!("{input}.{}", b64(wrong))),
                Err(SessionError::BadSignature),
                "{} signature bytes",
                wrong.len()
            );
        }
    }
}

#[test]
fn refuses_an_rsa_signature_not_below_the_modulus() {
    let token = rsa_token(&claims());
    let (input, _) = token.rsplit_once('.').expect("a compact JWS");

    assert_eq!(
        check(&format!("{input}.{}", b64([0xff; 256]))),
        Err(SessionError::BadSignature)
    );
}

#[test]
fn refuses_an_ed25519_signature_with_a_non_canonical_scalar() {
    // S + L verifies under lax checks, which makes signatures malleable.
    const GROUP_ORDER_LE: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let token = ed_token(&claims());
    let (input, signature) = token.rsplit_once('.').expect("a compact JWS");
    let mut signature = base64_decode(signature);
    let mut carry = 0_u16;
    for (s, l) in signature[32..].iter_mut().zip(GROUP_ORDER_LE) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum.to_le_bytes()[0];
        carry = sum >> 8;
    }

    assert_eq!(
        check(&format!("{input}.{}", b64(signature))),
        Err(SessionError::BadSignature)
    );
}

#[test]
fn no_single_character_change_of_the_payload_is_accepted() {
    let token = ed_token(&claims());
    let payload = token.split('.').nth(1).unwrap_or_default();
    for (index, original) in payload.chars().enumerate() {
        let replacement = if original == 'A' { 'w' } else { 'A' };

        assert!(
            check(&with_payload_char(&token, index, replacement)).is_err(),
            "payload char {index} -> {replacement}"
        );
    }
}
