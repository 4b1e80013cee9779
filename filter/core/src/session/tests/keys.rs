//! Building a key set: every key parsed and checked once, up front.

use rsa::traits::PublicKeyParts;

use super::fixtures::*;
use crate::session::{verify, KeySet, KeySetError, VerificationKey};

fn rsa_key(modulus: Vec<u8>, exponent: Vec<u8>) -> VerificationKey {
    VerificationKey::Rs256 {
        kid: "rsa-x".to_owned(),
        modulus,
        exponent,
    }
}

/// An odd modulus of exactly `bits` bits; RSA public key checks cannot tell it is not a
/// product of two primes, which is all these tests need.
fn odd_modulus(bits: usize) -> Vec<u8> {
    let len = bits.div_ceil(8);
    let mut modulus = vec![0xff; len];
    if let Some(first) = modulus.first_mut() {
        *first = 0xff >> (8 * len - bits);
    }
    modulus
}

const F4: [u8; 3] = [0x01, 0x00, 0x01];

fn error_of(keys: Vec<VerificationKey>) -> Option<KeySetError> {
    KeySet::new(keys).err()
}

#[test]
fn accepts_ed25519_and_rsa_keys() {
    assert!(KeySet::new(vec![ed_verification_key(), rsa_verification_key()]).is_ok());
}

#[test]
fn accepts_an_empty_set() {
    assert!(KeySet::new(Vec::new()).is_ok());
}

#[test]
fn refuses_a_repeated_kid() {
    let twin = VerificationKey::Ed25519 {
        kid: ED_KID.to_owned(),
        public_key: stranger_ed_signing_key().verifying_key().to_bytes(),
    };

    assert_eq!(
        error_of(vec![ed_verification_key(), twin]),
        Some(KeySetError::DuplicateKid(ED_KID.to_owned()))
    );
}

#[test]
fn refuses_the_same_kid_across_key_types() {
    let rsa_named_like_ed = match rsa_verification_key() {
        VerificationKey::Rs256 {
            modulus, exponent, ..
        } => VerificationKey::Rs256 {
            kid: ED_KID.to_owned(),
            modulus,
            exponent,
        },
        other => other,
    };

    assert_eq!(
        error_of(vec![ed_verification_key(), rsa_named_like_ed]),
        Some(KeySetError::DuplicateKid(ED_KID.to_owned()))
    );
}

#[test]
fn refuses_an_empty_kid() {
    let key = VerificationKey::Ed25519 {
        kid: String::new(),
        public_key: ed_signing_key().verifying_key().to_bytes(),
    };

    assert_eq!(error_of(vec![key]), Some(KeySetError::EmptyKid));
}

#[test]
fn refuses_ed25519_bytes_that_are_not_a_point_or_a_point_of_small_order() {
    // y = 2 has no x on the curve: 2^2 - 1 over 1 + d * 2^2 is not a square mod p.
    let not_a_point = 2;
    // The identity (y = 1): any signature would verify under it without `verify_strict`.
    let identity = 1;
    for y in [not_a_point, identity] {
        let mut public_key = [0; 32];
        public_key[0] = y;
        let key = VerificationKey::Ed25519 {
            kid: "ed-x".to_owned(),
            public_key,
        };

        assert_eq!(
            error_of(vec![key]),
            Some(KeySetError::InvalidEd25519Key("ed-x".to_owned())),
            "for y = {y}"
        );
    }
}

#[test]
fn refuses_an_rsa_modulus_below_2048_bits() {
    for bits in [512, 1024, 2047] {
        assert_eq!(
            error_of(vec![rsa_key(odd_modulus(bits), F4.to_vec())]),
            Some(KeySetError::RsaKeyTooSmall {
                kid: "rsa-x".to_owned(),
                bits
            }),
            "for {bits} bits"
        );
    }
}

#[test]
fn an_empty_modulus_is_too_small() {
    assert_eq!(
        error_of(vec![rsa_key(Vec::new(), F4.to_vec())]),
        Some(KeySetError::RsaKeyTooSmall {
            kid: "rsa-x".to_owned(),
            bits: 0
        })
    );
}

#[test]
fn counts_modulus_bits_without_leading_zero_bytes() {
    let mut padded = vec![0, 0];
    padded.extend(odd_modulus(2040));

    assert!(matches!(
        error_of(vec![rsa_key(padded, F4.to_vec())]),
        Some(KeySetError::RsaKeyTooSmall { bits: 2040, .. })
    ));
}

#[test]
fn a_key_sent_with_leading_zero_bytes_still_verifies() {
    let VerificationKey::Rs256 {
        kid,
        modulus,
        exponent,
    } = rsa_verification_key()
    else {
        panic!("the RSA test key is an RSA key");
    };
    let padded = VerificationKey::Rs256 {
        kid,
        modulus: [vec![0], modulus].concat(),
        exponent: [vec![0, 0], exponent].concat(),
    };
    let keys = KeySet::new(vec![padded]).expect("a padded key is valid");

    assert_eq!(
        verify(&rsa_token(&claims()), &keys, &expectations(), NOW),
        Ok(alice())
    );
}

#[test]
fn accepts_rsa_moduli_from_2048_to_4096_bits() {
    for bits in [2048, 3072, 4096] {
        assert!(
            KeySet::new(vec![rsa_key(odd_modulus(bits), F4.to_vec())]).is_ok(),
            "for {bits} bits"
        );
    }
}

#[test]
fn refuses_unusable_rsa_parameters() {
    let public_key = rsa_private_key().to_public_key();
    let modulus = public_key.n_bytes().to_vec();
    let mut even_modulus = modulus.clone();
    if let Some(last) = even_modulus.last_mut() {
        *last &= 0xfe;
    }
    let cases = [
        ("even modulus", even_modulus, F4.to_vec()),
        ("modulus over 4096 bits", odd_modulus(4097), F4.to_vec()),
        ("exponent 1", modulus.clone(), vec![1]),
        ("even exponent", modulus.clone(), vec![0x01, 0x00, 0x00]),
        ("empty exponent", modulus.clone(), Vec::new()),
        ("huge exponent", modulus.clone(), vec![0xff; 16]),
    ];
    for (case, modulus, exponent) in cases {
        assert_eq!(
            error_of(vec![rsa_key(modulus, exponent)]),
            Some(KeySetError::InvalidRsaKey("rsa-x".to_owned())),
            "for {case}"
        );
    }
}

#[test]
fn one_bad_key_refuses_the_whole_set() {
    let bad = rsa_key(odd_modulus(1024), F4.to_vec());

    assert!(KeySet::new(vec![ed_verification_key(), bad, rsa_verification_key()]).is_err());
}

#[test]
fn errors_name_the_key() {
    let error = KeySetError::RsaKeyTooSmall {
        kid: "rsa-x".to_owned(),
        bits: 1024,
    };

    assert_eq!(
        error.to_string(),
        "verification key \"rsa-x\" has a 1024-bit modulus; at least 2048 bits are required"
    );
}

#[test]
fn debug_output_lists_the_kids_only() {
    assert_eq!(
        format!("{:?}", key_set()),
        format!("KeySet {{ kids: [{ED_KID:?}, {RSA_KID:?}] }}")
    );
}
