//! The control plane's token verification keys, each pinned to one signature algorithm.

use std::collections::HashMap;
use std::fmt;

use ed25519_dalek::Signature as Ed25519Signature;
use rsa::pkcs1v15::{Signature as RsaSignature, VerifyingKey as RsaVerifyingKey};
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use rsa::{BoxedUint, PublicKey as RsaPublicKey};

/// Smaller RSA moduli are refused: 2048 bits is the floor of current guidance for RS256.
const MIN_RSA_MODULUS_BITS: usize = 2048;
/// Larger moduli are refused: each doubling of the modulus makes a verification ~4x slower.
const MAX_RSA_MODULUS_BITS: usize = 4096;

/// A public key as the control plane sends it, named by its `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationKey {
    /// An Ed25519 key; verifies only `alg: EdDSA` tokens.
    Ed25519 {
        /// The key id tokens name in their `kid` header.
        kid: String,
        /// The 32-byte compressed Edwards point (the JWK `x`).
        public_key: [u8; 32],
    },
    /// An RSA key; verifies only `alg: RS256` tokens.
    Rs256 {
        /// The key id tokens name in their `kid` header.
        kid: String,
        /// The modulus `n`, big-endian (the JWK `n`).
        modulus: Vec<u8>,
        /// The public exponent `e`, big-endian (the JWK `e`).
        exponent: Vec<u8>,
    },
}

/// Why a set of keys was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySetError {
    /// A key has an empty `kid`.
    EmptyKid,
    /// Two keys share a `kid`, so a token could not name one of them.
    DuplicateKid(String),
    /// The Ed25519 bytes are not a point on the curve, or a point of small order.
    InvalidEd25519Key(String),
    /// The RSA modulus and exponent do not form a usable public key (modulus even or over
    /// 4096 bits, exponent even, below 3 or above 2^33 - 1).
    InvalidRsaKey(String),
    /// The RSA modulus is shorter than 2048 bits.
    RsaKeyTooSmall {
        /// The key's id.
        kid: String,
        /// The modulus length in bits.
        bits: usize,
    },
}

impl fmt::Display for KeySetError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyKid => formatter.write_str("a verification key has an empty kid"),
            Self::DuplicateKid(kid) => write!(formatter, "verification key id {kid:?} is repeated"),
            Self::InvalidEd25519Key(kid) => {
                write!(
                    formatter,
                    "verification key {kid:?} is not a valid Ed25519 key"
                )
            }
            Self::InvalidRsaKey(kid) => {
                write!(formatter, "verification key {kid:?} is not a valid RSA key")
            }
            Self::RsaKeyTooSmall { kid, bits } => write!(
                formatter,
                "verification key {kid:?} has a {bits}-bit modulus; at least \
                 {MIN_RSA_MODULUS_BITS} bits are required"
            ),
        }
    }
}

impl std::error::Error for KeySetError {}

/// A JWS `alg` this filter can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    EdDSA,
    Rs256,
}

impl Algorithm {
    /// The algorithm named by a JWS `alg` header; `None` for every other name, `none` and
    /// `HS*` included. Names are case-sensitive (RFC 7515, section 4.1.1).
    pub(super) fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" => Some(Self::EdDSA),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

/// A key parsed once when the set is built, ready to verify.
enum PinnedKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Rs256(RsaVerifyingKey<Sha256>),
}

impl PinnedKey {
    fn parse(key: &VerificationKey) -> Result<Self, KeySetError> {
        match key {
            VerificationKey::Ed25519 { kid, public_key } => {
                ed25519_dalek::VerifyingKey::from_bytes(public_key)
                    .ok()
                    .filter(|key| !key.is_weak())
                    .map(Self::Ed25519)
                    .ok_or_else(|| KeySetError::InvalidEd25519Key(kid.clone()))
            }
            VerificationKey::Rs256 {
                kid,
                modulus,
                exponent,
            } => {
                let modulus = BoxedUint::from_be_slice_vartime(without_leading_zeros(modulus));
                let bits = modulus.bit_width_vartime() as usize;
                if bits < MIN_RSA_MODULUS_BITS {
                    return Err(KeySetError::RsaKeyTooSmall {
                        kid: kid.clone(),
                        bits,
                    });
                }
                RsaPublicKey::new_with_size_limits(
                    modulus,
                    BoxedUint::from_be_slice_vartime(without_leading_zeros(exponent)),
                    MIN_RSA_MODULUS_BITS..=MAX_RSA_MODULUS_BITS,
                )
                .map(|public_key| Self::Rs256(RsaVerifyingKey::new(public_key)))
                .map_err(|_| KeySetError::InvalidRsaKey(kid.clone()))
            }
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::EdDSA,
            Self::Rs256(_) => Algorithm::Rs256,
        }
    }
}

/// The significant bytes of a big-endian integer, so that its precision is its length.
fn without_leading_zeros(big_endian: &[u8]) -> &[u8] {
    let first = big_endian
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(big_endian.len());
    big_endian.get(first..).unwrap_or_default()
}

/// The keys session tokens may be signed with, by `kid`.
pub struct KeySet {
    keys: HashMap<String, PinnedKey>,
}

impl KeySet {
    /// Parses and checks every key up front, so that verifying a token does no key parsing.
    ///
    /// One bad key refuses the whole set: a control plane that sends a broken set is
    /// misconfigured, and the filter should keep its previous set rather than lose a key.
    pub fn new(keys: Vec<VerificationKey>) -> Result<Self, KeySetError> {
        let mut pinned = HashMap::with_capacity(keys.len());
        for key in &keys {
            let kid = match key {
                VerificationKey::Ed25519 { kid, .. } | VerificationKey::Rs256 { kid, .. } => kid,
            };
            if kid.is_empty() {
                return Err(KeySetError::EmptyKid);
            }
            if pinned.contains_key(kid) {
                return Err(KeySetError::DuplicateKid(kid.clone()));
            }
            pinned.insert(kid.clone(), PinnedKey::parse(key)?);
        }
        Ok(Self { keys: pinned })
    }

    /// The algorithm pinned to the key named `kid`.
    pub(super) fn algorithm_of(&self, kid: &str) -> Option<Algorithm> {
        self.keys.get(kid).map(PinnedKey::algorithm)
    }

    /// Whether `signature` is a valid signature of `signing_input` by the key named `kid`.
    /// Unknown keys and signatures of the wrong length do not verify.
    pub(super) fn signature_is_valid(
        &self,
        kid: &str,
        signing_input: &[u8],
        signature: &[u8],
    ) -> bool {
        match self.keys.get(kid) {
            Some(PinnedKey::Ed25519(key)) => Ed25519Signature::from_slice(signature)
                .is_ok_and(|signature| key.verify_strict(signing_input, &signature).is_ok()),
            Some(PinnedKey::Rs256(key)) => RsaSignature::try_from(signature)
                .is_ok_and(|signature| key.verify(signing_input, &signature).is_ok()),
            None => false,
        }
    }
}

/// Lists the key ids only; the keys themselves are not useful in a log.
impl fmt::Debug for KeySet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        formatter
            .debug_struct("KeySet")
            .field("kids", &kids)
            .finish()
    }
}
