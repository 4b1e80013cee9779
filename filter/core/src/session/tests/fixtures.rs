//! Keys, expectations and token builders shared by the session tests.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey};
use rsa::pkcs1v15::SigningKey as RsaSigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer as _};
use rsa::traits::PublicKeyParts;
use rsa::PrivateKey as RsaPrivateKey;
use serde_json::{json, Value};

use crate::session::{verify, Expectations, KeySet, SessionClaims, SessionError, VerificationKey};

/// A fixed RSA-2048 key made for these tests only: generating one in a debug build takes
/// seconds.
const RSA_TEST_KEY_PEM: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/rsa-2048-test-key.pem"
));

pub const ED_KID: &str = "ed-1";
pub const RSA_KID: &str = "rsa-1";
pub const ISSUER: &str = "https://tollgate.test";
pub const AUDIENCE: &str = "tollgate-filter";
pub const LEEWAY_SECS: i64 = 30;
/// 2026-01-01T00:00:00Z.
pub const NOW: i64 = 1_767_225_600;

pub fn ed_signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// An Ed25519 key that is not in the key set.
pub fn stranger_ed_signing_key() -> SigningKey {
    SigningKey::from_bytes(&[9; 32])
}

pub fn rsa_private_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        RsaPrivateKey::from_pkcs8_pem(RSA_TEST_KEY_PEM).expect("the RSA test key parses")
    })
}

pub fn ed_verification_key() -> VerificationKey {
    VerificationKey::Ed25519 {
        kid: ED_KID.to_owned(),
        public_key: ed_signing_key().verifying_key().to_bytes(),
    }
}

pub fn rsa_verification_key() -> VerificationKey {
    let public_key = rsa_private_key().to_public_key();
    VerificationKey::Rs256 {
        kid: RSA_KID.to_owned(),
        modulus: public_key.n_bytes().to_vec(),
        exponent: public_key.e_bytes().to_vec(),
    }
}

/// The key set of the tests, built once: deriving an Ed25519 public key is slow in debug builds.
pub fn key_set() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        KeySet::new(vec![ed_verification_key(), rsa_verification_key()])
            .expect("the test keys are valid")
    })
}

pub fn expectations() -> Expectations {
    Expectations {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        leeway_secs: LEEWAY_SECS,
    }
}

/// Claims the control plane would issue to alice at [`NOW`] for 15 minutes.
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW,
        "exp": NOW + 900,
        "sub": "u_alice",
        "sid": "s_1",
        "tid": "t_acme",
        "groups": ["g_eng", "g_ops"],
        "role": "user",
    })
}

/// [`claims`] with `changes` applied: a `null` removes the claim.
pub fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    if let (Some(claims), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
        for (name, value) in changes {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
    }
    claims
}

pub fn header(alg: &str, kid: &str) -> Value {
    json!({ "alg": alg, "kid": kid, "typ": "JWT" })
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `<header>.<payload>` from raw JSON text, so tests can send JSON that `json!` cannot build.
pub fn signing_input(header_json: &str, claims_json: &str) -> String {
    format!("{}.{}", b64(header_json), b64(claims_json))
}

pub fn ed_sign(key: &SigningKey, signing_input: &str) -> String {
    format!(
        "{signing_input}.{}",
        b64(key.sign(signing_input.as_bytes()).to_bytes())
    )
}

pub fn rsa_sign(signing_input: &str) -> String {
    let key = RsaSigningKey::<Sha256>::new(rsa_private_key().clone());
    format!(
        "{signing_input}.{}",
        b64(key.sign(signing_input.as_bytes()).to_bytes())
    )
}

/// A token signed with the EdDSA key of the set, with any header and claims.
pub fn ed_token_with(header: &Value, claims: &Value) -> String {
    ed_sign(
        &ed_signing_key(),
        &signing_input(&header.to_string(), &claims.to_string()),
    )
}

/// A valid EdDSA token carrying `claims`.
pub fn ed_token(claims: &Value) -> String {
    ed_token_with(&header("EdDSA", ED_KID), claims)
}

/// A valid RS256 token carrying `claims`.
pub fn rsa_token(claims: &Value) -> String {
    rsa_sign(&signing_input(
        &header("RS256", RSA_KID).to_string(),
        &claims.to_string(),
    ))
}

/// Verifies `token` against the test key set and expectations at [`NOW`].
pub fn check(token: &str) -> Result<SessionClaims, SessionError> {
    verify(token, key_set(), &expectations(), NOW)
}

/// Verifies `token` at `now`.
pub fn check_at(token: &str, now: i64) -> Result<SessionClaims, SessionError> {
    verify(token, key_set(), &expectations(), now)
}

/// The claims [`claims`] stands for.
pub fn alice() -> SessionClaims {
    SessionClaims {
        user_id: "u_alice".to_owned(),
        session_id: "s_1".to_owned(),
        tenant_id: Some("t_acme".to_owned()),
        groups: vec!["g_eng".to_owned(), "g_ops".to_owned()],
        role: Some("user".to_owned()),
        expires_at: NOW + 900,
    }
}
