//! The change feed as the data plane holds it: one [`SyncState`] per Envoy, written by the
//! syncer that follows the control plane and read by every worker, which turns it into its
//! own [`crate::freshness::Freshness`].

use prost::Message;

use crate::proto::{invalidation, Invalidation, LimitSettings, SigningKey, WatchChangesResponse};

/// The shared-data key of the Envoy-wide [`SyncState`].
pub const SYNC_STATE_KEY: &str = "tollgate:sync";

/// The most user and key invalidations kept; older ones are folded into
/// `trusted_from_cursor`, which makes older cache entries refetch.
pub const MAX_RECENT_INVALIDATIONS: usize = 4096;

/// What one Envoy knows of the change feed.
#[derive(Clone, PartialEq, Message)]
pub struct SyncState {
    /// The feed position applied so far.
    #[prost(uint64, tag = "1")]
    pub cursor: u64,
    /// Cache entries fetched before this position cannot be checked against the
    /// invalidations kept here, so they count as stale.
    #[prost(uint64, tag = "2")]
    pub trusted_from_cursor: u64,
    /// Users and keys that became stale after `trusted_from_cursor`, oldest first.
    #[prost(message, repeated, tag = "3")]
    pub invalidations: Vec<Invalidation>,
    /// Ended sessions whose tokens have not expired yet.
    #[prost(message, repeated, tag = "4")]
    pub revoked_sessions: Vec<Invalidation>,
    #[prost(message, repeated, tag = "5")]
    pub signing_keys: Vec<SigningKey>,
    #[prost(string, tag = "6")]
    pub session_issuer: String,
    #[prost(string, tag = "7")]
    pub session_audience: String,
    #[prost(string, tag = "8")]
    pub signing_keys_version: String,
    /// The deployment's address and route limits.
    #[prost(message, optional, tag = "9")]
    pub limits: Option<LimitSettings>,
}

impl SyncState {
    /// Folds in the answer to a watch; `initial` when the watch asked for the starting state.
    pub fn apply(&mut self, initial: bool, answer: WatchChangesResponse, now_secs: i64) {
        let starts_over = initial || answer.reset;
        if starts_over {
            self.invalidations.clear();
            self.revoked_sessions.clear();
            self.trusted_from_cursor = answer.cursor;
            self.cursor = answer.cursor;
        }
        for change in answer.invalidations {
            match change.subject {
                Some(invalidation::Subject::SessionId(_)) => self.revoked_sessions.push(change),
                Some(_) => self.invalidations.push(change),
                None => {}
            }
        }
        if self.invalidations.len() > MAX_RECENT_INVALIDATIONS {
            let excess = self.invalidations.len() - MAX_RECENT_INVALIDATIONS;
            let dropped: Vec<Invalidation> = self.invalidations.drain(..excess).collect();
            if let Some(newest_dropped) = dropped.last() {
                self.trusted_from_cursor = self.trusted_from_cursor.max(newest_dropped.cursor);
            }
        }
        self.revoked_sessions
            .retain(|revoked| revoked.session_expires_at > now_secs);
        self.cursor = self.cursor.max(answer.cursor);
        self.signing_keys = answer.signing_keys;
        self.session_issuer = answer.session_issuer;
        self.session_audience = answer.session_audience;
        self.signing_keys_version = answer.signing_keys_version;
        if answer.limits.is_some() {
            self.limits = answer.limits;
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Bytes that do not decode count as no state at all.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Self::decode(bytes).ok()
    }
}

/// States as the filter holds them after a few answers, for the tests of what reads them.
#[cfg(test)]
impl SyncState {
    /// A first answer at cursor 10 with nothing in it, then `next`, both at `now_secs`.
    pub(crate) fn after_first_answer_then(next: WatchChangesResponse, now_secs: i64) -> Self {
        let mut state = Self::default();
        let first = WatchChangesResponse {
            cursor: 10,
            ..WatchChangesResponse::default()
        };
        state.apply(true, first, now_secs);
        state.apply(false, next, now_secs);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(cursor: u64, id: &str) -> Invalidation {
        Invalidation {
            cursor,
            subject: Some(invalidation::Subject::UserId(id.to_owned())),
            session_expires_at: 0,
        }
    }

    fn session(cursor: u64, id: &str, expires: i64) -> Invalidation {
        Invalidation {
            cursor,
            subject: Some(invalidation::Subject::SessionId(id.to_owned())),
            session_expires_at: expires,
        }
    }

    fn answer(cursor: u64, invalidations: Vec<Invalidation>) -> WatchChangesResponse {
        WatchChangesResponse {
            cursor,
            invalidations,
            ..WatchChangesResponse::default()
        }
    }

    #[test]
    fn a_first_answer_trusts_only_what_comes_after_it() {
        let mut state = SyncState::default();
        state.apply(true, answer(41, vec![session(7, "s_old", 1_000)]), 500);
        assert_eq!(state.cursor, 41);
        assert_eq!(state.trusted_from_cursor, 41);
        assert!(state.invalidations.is_empty());
        assert_eq!(state.revoked_sessions.len(), 1);
    }

    #[test]
    fn later_answers_append_and_sessions_expire() {
        let mut state = SyncState::default();
        state.apply(true, answer(10, vec![]), 500);
        state.apply(
            false,
            answer(12, vec![user(11, "u_a"), session(12, "s_1", 600)]),
            500,
        );
        assert_eq!(state.invalidations, vec![user(11, "u_a")]);
        assert_eq!(state.revoked_sessions, vec![session(12, "s_1", 600)]);
        state.apply(false, answer(12, vec![]), 601);
        assert!(
            state.revoked_sessions.is_empty(),
            "expired tokens need no revocation"
        );
        assert_eq!(state.trusted_from_cursor, 10);
    }

    #[test]
    fn a_reset_forgets_history_and_an_overflow_raises_the_trusted_cursor() {
        let mut state = SyncState::default();
        state.apply(true, answer(1, vec![]), 0);
        let many: Vec<Invalidation> = (2..=(MAX_RECENT_INVALIDATIONS as u64 + 11))
            .map(|c| user(c, "u"))
            .collect();
        state.apply(false, answer(MAX_RECENT_INVALIDATIONS as u64 + 11, many), 0);
        assert_eq!(state.invalidations.len(), MAX_RECENT_INVALIDATIONS);
        assert_eq!(state.trusted_from_cursor, 11);

        let reset = WatchChangesResponse {
            reset: true,
            ..answer(3, vec![])
        };
        state.apply(false, reset, 0);
        assert_eq!(state.cursor, 3, "a reset moves the cursor back");
        assert_eq!(state.trusted_from_cursor, 3);
        assert!(state.invalidations.is_empty());
    }

    #[test]
    fn state_survives_encoding_and_garbage_is_none() {
        let mut state = SyncState::default();
        state.apply(true, answer(9, vec![session(3, "s", 99)]), 0);
        assert_eq!(SyncState::from_bytes(&state.to_bytes()), Some(state));
        assert_eq!(SyncState::from_bytes(&[0xff, 0xff]), None);
    }
}
