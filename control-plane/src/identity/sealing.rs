//! Sealing secrets at rest (signing keys) with a key derived from the server secret,
//! so a copy of the database alone reveals no private key.

use crate::domain::derived_key::derive_key;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const NONCE_BYTES: usize = 24;
const DERIVATION_LABEL: &[u8] = b"tollgate signing-key seal v1";

/// A sealed value could not be opened (wrong secret, or tampered data).
#[derive(Debug, thiserror::Error)]
#[error("sealed data cannot be opened with this server secret")]
pub struct UnsealError;

/// XChaCha20-Poly1305 under a key derived from the server secret.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    pub fn new(server_secret: &[u8]) -> Self {
        let key = derive_key(server_secret, DERIVATION_LABEL);
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Seals `plaintext`, bound to `context` (which must be given again to open it).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .unwrap_or_else(|_| unreachable!("encryption fails only past 256 GiB"));
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, UnsealError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| UnsealError)?;
        if bytes.len() < NONCE_BYTES {
            return Err(UnsealError);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| UnsealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_secret_and_context() {
        let sealer = Sealer::new(b"secret one");
        let sealed = sealer.seal(b"private key", b"kid-1");
        assert_eq!(
            sealer.open(&sealed, b"kid-1").expect("open"),
            b"private key"
        );
        assert!(sealer.open(&sealed, b"kid-2").is_err());
        assert!(Sealer::new(b"secret two").open(&sealed, b"kid-1").is_err());
        assert!(sealer.open("not base64!", b"kid-1").is_err());
        assert_ne!(
            sealed,
            sealer.seal(b"private key", b"kid-1"),
            "nonces differ"
        );
    }
}
