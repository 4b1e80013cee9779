//! What the filter remembers about a key between requests, and how it is stored in Envoy's
//! shared data.

use prost::Message;

use crate::digest::KeyDigest;
use crate::proto::{LookupKeyResponse, Principal};

const MILLIS_PER_SECOND: i64 = 1000;

/// The control plane's answer for one key, valid until `expires_at_ms`.
#[derive(Clone, PartialEq, Message)]
pub struct CacheEntry {
    /// Who the key authenticates; `None` for a key that must be refused (a negative entry).
    #[prost(message, optional, tag = "1")]
    pub principal: Option<Principal>,
    /// Unix milliseconds after which the entry counts as a miss.
    #[prost(int64, tag = "2")]
    pub expires_at_ms: i64,
}

impl CacheEntry {
    /// The entry to remember for a control plane answer received at `now_ms`; `None` when the
    /// answer must not be cached (a TTL of 0).
    pub fn for_answer(answer: &LookupKeyResponse, now_ms: i64) -> Option<Self> {
        let ttl_ms = i64::from(answer.cache_ttl_seconds) * MILLIS_PER_SECOND;
        (ttl_ms > 0).then(|| Self {
            principal: answer.principal.clone(),
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        })
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

/// The shared-data key under which the entry for `digest` is kept: `tollgate:key:<hex digest>`.
pub fn shared_data_key(digest: &KeyDigest) -> String {
    format!("tollgate:key:{}", hex::encode(digest.as_bytes()))
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
        };

        assert_eq!(CacheEntry::from_bytes(&entry.to_bytes()), Some(entry));
    }

    #[test]
    fn negative_entry_survives_encoding() {
        let entry = CacheEntry {
            principal: None,
            expires_at_ms: 1_767_225_600_000,
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
        };

        assert!(entry.is_fresh(1_999));
        assert!(!entry.is_fresh(2_000));
        assert!(!entry.is_fresh(3_000));
    }

    #[test]
    fn answer_is_cached_for_its_ttl() {
        let answer = LookupKeyResponse {
            principal: Some(alice()),
            cache_ttl_seconds: 30,
            cursor: 0,
        };

        assert_eq!(
            CacheEntry::for_answer(&answer, 1_000),
            Some(CacheEntry {
                principal: Some(alice()),
                expires_at_ms: 31_000,
            })
        );
    }

    #[test]
    fn negative_answer_is_cached_as_a_negative_entry() {
        let answer = LookupKeyResponse {
            principal: None,
            cache_ttl_seconds: 5,
            cursor: 0,
        };

        assert_eq!(
            CacheEntry::for_answer(&answer, 1_000),
            Some(CacheEntry {
                principal: None,
                expires_at_ms: 6_000,
            })
        );
    }

    #[test]
    fn answer_with_zero_ttl_is_not_cached() {
        let answer = LookupKeyResponse {
            principal: Some(alice()),
            cache_ttl_seconds: 0,
            cursor: 0,
        };

        assert_eq!(CacheEntry::for_answer(&answer, 1_000), None);
    }

    #[test]
    fn shared_data_key_is_the_hex_digest_under_the_tollgate_prefix() {
        assert_eq!(
            shared_data_key(&KeyDigest::of_key(b"abc")),
            "tollgate:key:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
