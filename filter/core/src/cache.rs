//! What the filter remembers about a key between requests, and how it is stored in Envoy's
//! shared data.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use prost::Message;

use crate::digest::KeyDigest;
use crate::proto::Principal;

const MILLIS_PER_SECOND: i64 = 1000;

/// The control plane's answer for one key or user, valid until `expires_at_ms`.
#[derive(Clone, PartialEq, Message)]
pub struct CacheEntry {
    /// Who the credential authenticates; `None` for one that must be refused (a negative entry).
    #[prost(message, optional, tag = "1")]
    pub principal: Option<Principal>,
    /// Unix milliseconds after which the entry counts as a miss.
    #[prost(int64, tag = "2")]
    pub expires_at_ms: i64,
    /// The change-feed position the answer reflects; later invalidations make it stale.
    #[prost(uint64, tag = "3")]
    pub fetched_cursor: u64,
}

impl CacheEntry {
    /// The entry for an answer received at `now_ms`. A TTL of 0 counts as 1 s, so the answer
    /// can at least serve the request that asked for it.
    pub fn for_answer(
        principal: Option<Principal>,
        ttl_secs: u32,
        cursor: u64,
        now_ms: i64,
    ) -> Self {
        let ttl_ms = i64::from(ttl_secs.max(1)) * MILLIS_PER_SECOND;
        Self {
            principal,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
            fetched_cursor: cursor,
        }
    }

    /// Whether the entry may still answer at `now_ms`.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        now_ms < self.expires_at_ms
    }

    /// The compact encoding kept in shared data.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Reads an encoded entry; bytes that do not decode are a miss.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Self::decode(bytes).ok()
    }
}

/// Bytes of the SHA-256 that name a key's entry in shared data: 128 bits, so finding another
/// key with the same name as a key one does not know takes 2^128 tries (2^108 against a
/// million cached keys), while the name stays short for the Envoy-wide map that holds one per
/// cached key.
const SHARED_KEY_DIGEST_BYTES: usize = 16;

/// The shared-data key of the entry for `digest`: the first 128 bits of the digest in
/// unpadded base64url, 22 characters. Every other key Tollgate writes starts with `tollgate:`,
/// which base64url never contains.
pub fn shared_data_key(digest: &KeyDigest) -> String {
    URL_SAFE_NO_PAD.encode(&digest.as_bytes()[..SHARED_KEY_DIGEST_BYTES])
}

/// The shared-data key of the entry for a session's user: `tollgate:user:<user id>`.
pub fn shared_user_key(user_id: &str) -> String {
    format!("tollgate:user:{user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            user_id: "u_alice".to_owned(),
            key_id: "k_1".to_owned(),
            ..Principal::default()
        }
    }

    #[test]
    fn positive_entry_survives_encoding() {
        let entry = CacheEntry {
            principal: Some(alice()),
            expires_at_ms: 1_767_225_600_000,
            fetched_cursor: 42,
        };

        assert_eq!(CacheEntry::from_bytes(&entry.to_bytes()), Some(entry));
    }

    #[test]
    fn negative_entry_survives_encoding() {
        let entry = CacheEntry {
            principal: None,
            expires_at_ms: 1_767_225_600_000,
            fetched_cursor: 42,
        };

        assert_eq!(CacheEntry::from_bytes(&entry.to_bytes()), Some(entry));
    }

    #[test]
    fn corrupt_bytes_are_a_miss() {
        for bytes in [
            &[0xff_u8][..],
            &[0x0a, 0x05, 0x0a],
            &[0x12, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(CacheEntry::from_bytes(bytes), None, "for {bytes:?}");
        }
    }

    #[test]
    fn empty_bytes_decode_to_an_entry_that_is_already_stale() {
        let entry = CacheEntry::from_bytes(&[]).expect("empty message decodes");

        assert!(!entry.is_fresh(0));
    }

    #[test]
    fn entry_is_fresh_until_it_expires() {
        let entry = CacheEntry {
            principal: None,
            expires_at_ms: 2_000,
            fetched_cursor: 0,
        };

        assert!(entry.is_fresh(1_999));
        assert!(!entry.is_fresh(2_000));
        assert!(!entry.is_fresh(3_000));
    }

    #[test]
    fn an_answer_is_cached_for_its_ttl_at_its_cursor() {
        assert_eq!(
            CacheEntry::for_answer(Some(alice()), 30, 7, 1_000),
            CacheEntry {
                principal: Some(alice()),
                expires_at_ms: 31_000,
                fetched_cursor: 7,
            }
        );
        assert_eq!(
            CacheEntry::for_answer(None, 5, 0, 1_000).expires_at_ms,
            6_000
        );
    }

    #[test]
    fn a_zero_ttl_still_serves_for_a_second() {
        assert_eq!(
            CacheEntry::for_answer(None, 0, 0, 1_000).expires_at_ms,
            2_000
        );
    }

    #[test]
    fn shared_data_key_is_the_first_128_bits_of_the_digest_in_base64url() {
        // SHA-256("abc") starts ba7816bf 8f01cfea 414140de 5dae2223.
        assert_eq!(
            shared_data_key(&KeyDigest::of_key(b"abc")),
            "ungWv48Bz-pBQUDeXa4iIw"
        );
    }
}
