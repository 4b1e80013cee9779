//! The SHA-256 digest that identifies an API key everywhere after the request headers.

use std::fmt;

use sha2::{Digest, Sha256};

/// SHA-256 of an API key exactly as the client sent it.
///
/// The filter keeps, caches and sends only this digest; the raw key never leaves the request
/// headers. `Debug` does not print the bytes, so a digest cannot end up in a log by accident.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Digests the raw bytes of an API key.
    pub fn of_key(raw_key: &[u8]) -> Self {
        Self(Sha256::digest(raw_key).into())
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("KeyDigest(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_sha256_of_the_raw_key() {
        let digest = KeyDigest::of_key(b"abc");

        assert_eq!(
            hex::encode(digest.as_bytes()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_output_hides_the_bytes() {
        let digest = KeyDigest::of_key(b"abc");

        assert_eq!(format!("{digest:?}"), "KeyDigest(<redacted>)");
    }
}
