//! API keys: generation, the keyed hash that is stored instead of the key, and state.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tollgate_filter_core::gate::key_expired;

use crate::domain::ids::{ApiKeyId, UserId};
use crate::domain::Timestamp;
use crate::limits::rate_limits::RateLimits;

/// Characters of CSPRNG output in a generated key (alphanumeric, ~238 bits).
const KEY_RANDOM_CHARS: usize = 40;

/// A key in clear. Shown once at creation and never stored or logged.
pub struct PlainApiKey(String);

impl PlainApiKey {
    /// A new key `<prefix>_<user_id>_<random>`.
    pub fn generate(prefix: &str, user_id: &UserId) -> Self {
        let random = Alphanumeric.sample_string(&mut rand::rng(), KEY_RANDOM_CHARS);
        Self(format!("{prefix}_{user_id}_{random}"))
    }

    /// A key supplied from outside (an imported key or a request's credential).
    pub fn from_client(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The SHA-256 digest the data plane computes and sends; the raw key never leaves Envoy.
    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The last four characters, shown in listings to tell keys apart.
    pub fn last4(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    }

    /// The visible prefix, e.g. `tg` for `tg_u_..._...`; imported keys may have none.
    pub fn display_prefix(&self) -> String {
        match self.0.split_once('_') {
            Some((prefix, _)) if !prefix.is_empty() && prefix.len() <= 16 => prefix.to_string(),
            _ => String::new(),
        }
    }
}

impl fmt::Debug for PlainApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainApiKey(<redacted>)")
    }
}

/// SHA-256 of a raw key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
}

/// The digest the filter's credential parser computes, which is this same SHA-256.
impl From<tollgate_filter_core::digest::KeyDigest> for KeyDigest {
    fn from(digest: tollgate_filter_core::digest::KeyDigest) -> Self {
        Self(*digest.as_bytes())
    }
}

/// What storage keeps: HMAC-SHA256 of the key digest under the server's secret, hex.
/// A copy of the database alone cannot be used to check guesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKeyHash(String);

impl StoredKeyHash {
    pub fn from_string(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Computes [`StoredKeyHash`]es with the deployment's secret.
#[derive(Clone)]
pub struct KeyHasher {
    secret: Vec<u8>,
}

impl KeyHasher {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    pub fn hash(&self, digest: &KeyDigest) -> StoredKeyHash {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(&digest.0);
        StoredKeyHash(hex::encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(<secret>)")
    }
}

/// Whether a key may still authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// Whether a key authenticates at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Usable,
    Expired,
    Revoked,
}

/// An API key as stored: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub last4: String,
    #[serde(skip)]
    pub hash: StoredKeyHash,
    pub status: KeyStatus,
    pub scopes: Vec<String>,
    /// The key's own limits; unset fields fall back to the deployment's key defaults.
    pub rate_limits: RateLimits,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub expires_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-01-31T09:30:00Z")]
    pub revoked_at: Option<Timestamp>,
    /// The key a rotation put in its place; this one works on until `expires_at`.
    pub replaced_by: Option<ApiKeyId>,
}

impl ApiKey {
    /// A new active key record for `plain`, owned by `user_id`.
    pub fn new(
        user_id: UserId,
        name: String,
        plain: &PlainApiKey,
        hasher: &KeyHasher,
        expires_at: Option<Timestamp>,
        scopes: Vec<String>,
    ) -> Self {
        Self {
            id: ApiKeyId::generate(),
            user_id,
            name,
            prefix: plain.display_prefix(),
            last4: plain.last4(),
            hash: hasher.hash(&plain.digest()),
            status: KeyStatus::Active,
            scopes,
            rate_limits: RateLimits::default(),
            expires_at,
            created_at: crate::domain::now(),
            revoked_at: None,
            replaced_by: None,
        }
    }

    /// The key as revoking it at `at` leaves it.
    pub fn revoked(&self, at: Timestamp) -> Self {
        Self {
            status: KeyStatus::Revoked,
            revoked_at: Some(at),
            ..self.clone()
        }
    }

    /// The key as replacing it by `by` leaves it: revoked at `at` with no grace, else naming
    /// `by` and working until `works_until` (or its own expiry, if sooner).
    pub fn replaced(&self, by: &ApiKeyId, at: Timestamp, works_until: Option<Timestamp>) -> Self {
        match works_until {
            None => self.revoked(at),
            Some(until) => Self {
                expires_at: Some(self.expires_at.map_or(until, |own| own.min(until))),
                replaced_by: Some(by.clone()),
                ..self.clone()
            },
        }
    }

    /// The key's state at `now`, by the filter's rule: a revoked key is revoked whatever its
    /// expiry, and a key expires from the first millisecond of its expiry second on. The admin
    /// API and the filter's `LookupKey` answer both read it, so a key means the same at both.
    pub fn state_at(&self, now: Timestamp) -> KeyState {
        if self.status == KeyStatus::Revoked {
            KeyState::Revoked
        } else if key_expired(self.expires_at_secs(), now.timestamp_millis()) {
            KeyState::Expired
        } else {
            KeyState::Usable
        }
    }

    /// The expiry as the filter receives it: Unix seconds, 0 for a key that never expires.
    pub fn expires_at_secs(&self) -> i64 {
        self.expires_at.map_or(0, |at| at.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_format() {
        let user = UserId::generate();
        let key = PlainApiKey::generate("tg", &user);
        let expected_start = format!("tg_{user}_");
        assert!(key.expose().starts_with(&expected_start));
        let random = &key.expose()[expected_start.len()..];
        assert_eq!(random.len(), KEY_RANDOM_CHARS);
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(key.display_prefix(), "tg");
        assert_eq!(key.last4(), &random[random.len() - 4..]);
    }

    #[test]
    fn the_stored_hash_depends_on_the_secret() {
        let key = PlainApiKey::from_client("legacy-key-123".into());
        let a = KeyHasher::new(b"first secret").hash(&key.digest());
        let b = KeyHasher::new(b"second secret").hash(&key.digest());
        assert_ne!(a, b);
        assert_eq!(a, KeyHasher::new(b"first secret").hash(&key.digest()));
        assert!(!a.as_str().contains("legacy"));
    }

    fn key_expiring_at(expires_at: Option<Timestamp>) -> ApiKey {
        let plain = PlainApiKey::from_client("tg_u_expiring".into());
        let hasher = KeyHasher::new(b"secret");
        ApiKey::new(
            UserId::generate(),
            "k".into(),
            &plain,
            &hasher,
            expires_at,
            Vec::new(),
        )
    }

    fn at_millis(millis: i64) -> Timestamp {
        Timestamp::from_timestamp_millis(millis).expect("a time")
    }

    #[test]
    fn a_key_expires_at_the_start_of_its_expiry_second_as_the_filter_has_it() {
        let key = key_expiring_at(Some(at_millis(10_500)));
        assert_eq!(key.expires_at_secs(), 10);
        assert_eq!(key.state_at(at_millis(9_999)), KeyState::Usable);
        assert_eq!(key.state_at(at_millis(10_000)), KeyState::Expired);
        assert!(key_expired(key.expires_at_secs(), 10_000));
        assert_eq!(
            key_expiring_at(None).state_at(at_millis(4_102_444_800_000)),
            KeyState::Usable
        );
    }

    #[test]
    fn a_revoked_key_is_revoked_whether_or_not_it_expired() {
        let key = ApiKey {
            status: KeyStatus::Revoked,
            ..key_expiring_at(Some(at_millis(10_000)))
        };
        assert_eq!(key.state_at(at_millis(5_000)), KeyState::Revoked);
        assert_eq!(key.state_at(at_millis(20_000)), KeyState::Revoked);
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = PlainApiKey::from_client("supersecret".into());
        assert!(!format!("{key:?}").contains("supersecret"));
    }
}
