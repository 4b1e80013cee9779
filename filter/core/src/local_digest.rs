//! The digest that names a credential in one VM's own caches: a keyed 128-bit SipHash-2-4
//! under a secret the VM draws at start and never shares.
//!
//! It costs a few hundred wasm instructions where SHA-256 costs thousands, so a request whose
//! credential this VM already knows never computes SHA-256 at all. Without the secret nobody
//! can compute a digest, let alone aim two credentials at the same one: a collision between a
//! presented credential and a cached one is a 2^-128 chance per pair, as good as SHA-256's here.
//! The SHA-256 digest stays the credential's name everywhere beyond this VM (shared data, the
//! control plane), because those outlive the VM's secret.

use std::fmt;

use siphasher::sip128::SipHasher24;

/// The keyed digest of one credential in this VM; `Debug` hides it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalDigest(u128);

impl fmt::Debug for LocalDigest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("LocalDigest(<redacted>)")
    }
}

/// Computes [`LocalDigest`]s under one VM's secret.
#[derive(Clone)]
pub struct LocalDigester {
    hasher: SipHasher24,
}

impl LocalDigester {
    /// A digester keyed with `secret`, which must come from a cryptographic random source.
    pub fn new(secret: [u8; 16]) -> Self {
        Self {
            hasher: SipHasher24::new_with_key(&secret),
        }
    }

    /// The digest of a credential exactly as the client sent it.
    pub fn digest(&self, credential: &[u8]) -> LocalDigest {
        LocalDigest(self.hasher.hash(credential).as_u128())
    }
}

impl fmt::Debug for LocalDigester {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("LocalDigester(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_credential_under_the_same_secret_has_the_same_digest() {
        let digester = LocalDigester::new([7; 16]);

        assert_eq!(
            digester.digest(b"tg_u1_secret"),
            digester.digest(b"tg_u1_secret")
        );
        assert_ne!(
            digester.digest(b"tg_u1_secret"),
            digester.digest(b"tg_u1_secreu")
        );
    }

    #[test]
    fn another_secret_gives_another_digest() {
        let one = LocalDigester::new([7; 16]);
        let other = LocalDigester::new([8; 16]);

        assert_ne!(one.digest(b"tg_u1_secret"), other.digest(b"tg_u1_secret"));
    }

    #[test]
    fn is_siphash_2_4_128_of_the_reference_vector() {
        // The SipHash authors' 128-bit test vector: key 00..0f, empty message.
        let secret: [u8; 16] = std::array::from_fn(|n| n as u8);

        assert_eq!(
            LocalDigester::new(secret).digest(b"").0.to_le_bytes(),
            [
                0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55,
                0x02, 0x93
            ]
        );
    }

    #[test]
    fn debug_output_hides_the_digest_and_the_secret() {
        let digester = LocalDigester::new([7; 16]);

        assert_eq!(
            format!("{:?}", digester.digest(b"k")),
            "LocalDigest(<redacted>)"
        );
        assert_eq!(format!("{digester:?}"), "LocalDigester(<secret>)");
    }
}
