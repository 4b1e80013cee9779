//! What one worker knows of the change feed: which cached entries became stale, which
//! sessions ended, and the keys that verify session tokens.

use std::collections::HashMap;

use crate::limits::plan::RouteLimits;
use crate::proto::{invalidation, LimitSettings, SigningKey};
use crate::session::{Expectations, KeySet, VerificationKey};
use crate::sync::SyncState;

/// Seconds of clock skew tolerated on session token times.
const SESSION_LEEWAY_SECS: i64 = 30;

/// A worker's view of the [`SyncState`], indexed for per-request checks.
#[derive(Default)]
pub struct Freshness {
    trusted_from_cursor: u64,
    stale_users: HashMap<String, u64>,
    stale_keys: HashMap<String, u64>,
    revoked_sessions: HashMap<String, i64>,
    sessions: Option<SessionVerification>,
    limits: LimitSettings,
    route_limits: RouteLimits,
}

/// How to verify session tokens: the published keys and what tokens must claim.
pub struct SessionVerification {
    pub keys: KeySet,
    pub expect: Expectations,
    pub keys_version: String,
}

impl Freshness {
    /// Indexes `state`. Session verification is rebuilt only when the keys changed; a key set
    /// that cannot be built leaves sessions unverifiable (refused) rather than half-checked.
    pub fn from_state(state: &SyncState, previous: Option<SessionVerification>) -> Self {
        let mut stale_users = HashMap::new();
        let mut stale_keys = HashMap::new();
        for change in &state.invalidations {
            match &change.subject {
                Some(invalidation::Subject::UserId(id)) => {
                    stale_users.insert(id.clone(), change.cursor);
                }
                Some(invalidation::Subject::KeyId(id)) => {
                    stale_keys.insert(id.clone(), change.cursor);
                }
                _ => {}
            }
        }
        let revoked_sessions = state
            .revoked_sessions
            .iter()
            .filter_map(|change| match &change.subject {
                Some(invalidation::Subject::SessionId(id)) => {
                    Some((id.clone(), change.session_expires_at))
                }
                _ => None,
            })
            .collect();
        let expect = Expectations {
            issuer: state.session_issuer.clone(),
            audience: state.session_audience.clone(),
            leeway_secs: SESSION_LEEWAY_SECS,
        };
        let sessions = match previous {
            Some(kept)
                if kept.keys_version == state.signing_keys_version && kept.expect == expect =>
            {
                Some(kept)
            }
            _ => KeySet::new(
                state
                    .signing_keys
                    .iter()
                    .filter_map(verification_key)
                    .collect(),
            )
            .ok()
            .filter(|_| !state.signing_keys.is_empty())
            .map(|keys| SessionVerification {
                keys,
                expect,
                keys_version: state.signing_keys_version.clone(),
            }),
        };
        let limits = state.limits.clone().unwrap_or_default();
        Self {
            trusted_from_cursor: state.trusted_from_cursor,
            stale_users,
            stale_keys,
            revoked_sessions,
            sessions,
            route_limits: RouteLimits::from_settings(&limits),
            limits,
        }
    }

    /// Whether an entry fetched at `fetched_cursor` about this user (and key, if any) still holds.
    pub fn is_current(&self, fetched_cursor: u64, user_id: &str, key_id: &str) -> bool {
        if fetched_cursor < self.trusted_from_cursor {
            return false;
        }
        let stale_after = |map: &HashMap<String, u64>, id: &str| {
            !id.is_empty() && map.get(id).is_some_and(|&cursor| cursor > fetched_cursor)
        };
        !stale_after(&self.stale_users, user_id) && !stale_after(&self.stale_keys, key_id)
    }

    /// Whether the session was ended (its tokens are refused until they expire anyway).
    pub fn session_revoked(&self, session_id: &str) -> bool {
        self.revoked_sessions.contains_key(session_id)
    }

    /// How to verify session tokens; `None` until the control plane has sent its keys.
    pub fn sessions(&self) -> Option<&SessionVerification> {
        self.sessions.as_ref()
    }

    /// The deployment's address limits and failure policy for `exact` limits.
    pub fn limits(&self) -> &LimitSettings {
        &self.limits
    }

    pub fn route_limits(&self) -> &RouteLimits {
        &self.route_limits
    }

    /// Hands the session verification over, to be kept by the next [`Freshness`].
    pub fn take_sessions(&mut self) -> Option<SessionVerification> {
        self.sessions.take()
    }
}

fn verification_key(key: &SigningKey) -> Option<VerificationKey> {
    match key.alg.as_str() {
        "EdDSA" => Some(VerificationKey::Ed25519 {
            kid: key.kid.clone(),
            public_key: key.ed25519_public_key.as_slice().try_into().ok()?,
        }),
        "RS256" => Some(VerificationKey::Rs256 {
            kid: key.kid.clone(),
            modulus: key.rsa_modulus.clone(),
            exponent: key.rsa_exponent.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Invalidation, WatchChangesResponse};

    fn change(cursor: u64, subject: invalidation::Subject, expires: i64) -> Invalidation {
        Invalidation {
            cursor,
            subject: Some(subject),
            session_expires_at: expires,
        }
    }

    fn state_after(changes: Vec<Invalidation>) -> SyncState {
        let next = WatchChangesResponse {
            cursor: 20,
            invalidations: changes,
            ..Default::default()
        };
        SyncState::after_first_answer_then(next, 0)
    }

    #[test]
    fn entries_fetched_before_an_invalidation_are_stale() {
        let state = state_after(vec![
            change(12, invalidation::Subject::UserId("u_a".into()), 0),
            change(15, invalidation::Subject::KeyId("k_b".into()), 0),
        ]);
        let freshness = Freshness::from_state(&state, None);
        assert!(
            !freshness.is_current(11, "u_a", "k_x"),
            "user changed after fetch"
        );
        assert!(
            freshness.is_current(12, "u_a", "k_x"),
            "fetched at the change"
        );
        assert!(
            !freshness.is_current(14, "u_c", "k_b"),
            "key revoked after fetch"
        );
        assert!(freshness.is_current(14, "u_c", ""), "sessions have no key");
        assert!(
            !freshness.is_current(9, "u_z", "k_z"),
            "older than the trusted history"
        );
    }

    #[test]
    fn revoked_sessions_are_known() {
        let state = state_after(vec![change(
            13,
            invalidation::Subject::SessionId("s_1".into()),
            1_000,
        )]);
        let freshness = Freshness::from_state(&state, None);
        assert!(freshness.session_revoked("s_1"));
        assert!(!freshness.session_revoked("s_2"));
    }

    #[test]
    fn before_any_sync_everything_cached_holds_and_sessions_cannot_verify() {
        let freshness = Freshness::default();
        assert!(freshness.is_current(0, "u", "k"));
        assert!(freshness.sessions().is_none());
    }

    #[test]
    fn an_ed25519_key_makes_sessions_verifiable() {
        let mut state = state_after(vec![]);
        state.signing_keys = vec![SigningKey {
            kid: "sk_1".into(),
            alg: "EdDSA".into(),
            // The Ed25519 base point: a valid public key.
            ed25519_public_key: vec![
                0x58, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
                0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
                0x66, 0x66, 0x66, 0x66,
            ],
            ..SigningKey::default()
        }];
        state.signing_keys_version = "v1".into();
        state.session_issuer = "tollgate".into();
        state.session_audience = "tollgate".into();
        let mut freshness = Freshness::from_state(&state, None);
        assert!(freshness.sessions().is_some());
        let kept = freshness.take_sessions();
        assert!(Freshness::from_state(&state, kept).sessions().is_some());
    }
}
