//! Session signing keys: generation, storage form, and the JWKS they publish.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::sealing::{Sealer, UnsealError};
use crate::domain::Timestamp;

const RSA_KEY_BITS: usize = 2048;

/// The signature algorithm, pinned to each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    EdDSA,
    RS256,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "EdDSA" => Some(Self::EdDSA),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

/// The public half of a signing key, in JWK form (`kty`, `crv`/`x` or `n`/`e`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kty")]
pub enum PublicJwk {
    #[serde(rename = "OKP")]
    Okp { crv: String, x: String },
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
}

impl PublicJwk {
    /// Raw bytes of the key material: Ed25519 `x`, or RSA `(n, e)`.
    pub fn decoded(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        match self {
            Self::Okp { x, .. } => Some((URL_SAFE_NO_PAD.decode(x).ok()?, Vec::new())),
            Self::Rsa { n, e } => Some((
                URL_SAFE_NO_PAD.decode(n).ok()?,
                URL_SAFE_NO_PAD.decode(e).ok()?,
            )),
        }
    }
}

/// A signing key as stored. The private key is sealed and bound to the kid.
#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: SigningAlgorithm,
    pub sealed_private_key: String,
    pub public: PublicJwk,
    pub created_at: Timestamp,
    /// Published before it signs, so every Envoy knows it first.
    pub activates_at: Timestamp,
    /// After this nothing it signed is valid any more; dropped from the JWKS.
    pub retires_at: Option<Timestamp>,
}

/// A key could not be generated or opened.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("cannot generate a signing key: {0}")]
    Generate(String),
    #[error(transparent)]
    Unseal(#[from] UnsealError),
}

impl SigningKeyRecord {
    /// A new key pair, its private half sealed.
    pub fn generate(
        alg: SigningAlgorithm,
        sealer: &Sealer,
        created_at: Timestamp,
        activates_at: Timestamp,
    ) -> Result<Self, SigningKeyError> {
        let kid = crate::domain::ids::SigningKeyId::generate().to_string();
        let (private_pem, public) = match alg {
            SigningAlgorithm::EdDSA => generate_ed25519()?,
            SigningAlgorithm::RS256 => generate_rsa()?,
        };
        Ok(Self {
            sealed_private_key: sealer.seal(private_pem.as_bytes(), kid.as_bytes()),
            kid,
            alg,
            public,
            created_at,
            activates_at,
            retires_at: None,
        })
    }

    /// The private key in PEM, unsealed.
    pub fn private_pem(&self, sealer: &Sealer) -> Result<Vec<u8>, SigningKeyError> {
        Ok(sealer.open(&self.sealed_private_key, self.kid.as_bytes())?)
    }

    /// This key as a JWKS entry.
    pub fn jwk(&self) -> serde_json::Value {
        let mut jwk = serde_json::to_value(&self.public).unwrap_or_default();
        if let Some(fields) = jwk.as_object_mut() {
            fields.insert("kid".into(), self.kid.clone().into());
            fields.insert("alg".into(), self.alg.as_str().into());
            fields.insert("use".into(), "sig".into());
        }
        jwk
    }
}

fn generate_ed25519() -> Result<(String, PublicJwk), SigningKeyError> {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use rand::RngCore;

    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| SigningKeyError::Generate(e.to_string()))?;
    let public = PublicJwk::Okp {
        crv: "Ed25519".into(),
        x: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
    };
    Ok((pem.to_string(), public))
}

fn generate_rsa() -> Result<(String, PublicJwk), SigningKeyError> {
    use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
    use rsa::traits::PublicKeyParts;

    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_KEY_BITS)
        .map_err(|e| SigningKeyError::Generate(e.to_string()))?;
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| SigningKeyError::Generate(e.to_string()))?;
    let public = PublicJwk::Rsa {
        n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    };
    Ok((pem.to_string(), public))
}
