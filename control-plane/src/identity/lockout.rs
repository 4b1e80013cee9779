//! Locking an account after repeated failed logins, alike on every replica: the failures are
//! kept in the database under a keyed hash of the login name, for names that match no user as
//! well, so that a lock tells nothing about whether an account exists.
//!
//! An attempt is counted before its password is checked, so that concurrent guesses cannot
//! overshoot the limit, and a successful login forgets the account's failures. Past a few
//! failures each further attempt waits twice as long as the one before (backoff), and past
//! the limit the account is locked. A waiting or locked account is answered before any
//! password work, whatever the password. Names are compared whatever their case, as
//! usernames are.

use std::sync::Arc;

use chrono::Duration;
use sha2::{Digest, Sha256};

use crate::accounts::api_key::{KeyDigest, KeyHasher, StoredKeyHash};
use crate::domain::at_most_every::AtMostEvery;
use crate::domain::live::Live;
use crate::domain::{now, Timestamp};
use crate::store::{Store, StoreError};

/// The key space of password logins' failures.
const PASSWORD_KEY_SPACE: &str = "password";
/// How often forgotten failures are removed from the database.
const PRUNE_INTERVAL_SECS: i64 = 600;
/// How often an attempt tries to count itself while other attempts at the same name keep
/// writing first.
const WRITE_TRIES: usize = 4;

/// When an account is locked, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    /// Failed attempts in a row after which the next attempt locks the account.
    pub max_failures: u32,
    /// The first lock; each further lock in a row lasts twice the one before.
    pub lockout: Duration,
    /// The longest lock. Failures are forgotten once this long passes without an attempt
    /// after the last one or the end of its lock, whichever is later.
    pub max_lockout: Duration,
    /// Failed attempts in a row after which each next attempt waits (0: never)...
    pub backoff_after: u32,
    /// ...this long after the one before, doubled for every further failure, at most
    /// `max_lockout`.
    pub backoff: Duration,
}

/// What is kept about one login name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    /// Attempts since the last lock that have not succeeded, the ones being checked included.
    pub failures: u32,
    /// Locks in a row.
    pub lockouts: u32,
    pub locked_until: Option<Timestamp>,
    pub last_attempt_at: Timestamp,
}

/// Whether an attempt may check its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Check,
    /// Refused without looking at the password (locked, or backing off); a retry may
    /// succeed at `until`.
    Locked {
        until: Timestamp,
    },
}

impl LockoutPolicy {
    /// The answer to one more attempt at `now` given what is `kept`, and what to keep then
    /// (`None`: nothing changes).
    pub fn attempt(
        &self,
        kept: Option<&FailureRecord>,
        now: Timestamp,
    ) -> (Admission, Option<FailureRecord>) {
        let current = kept.filter(|record| !self.forgotten(record, now));
        if let Some(until) = current
            .and_then(|record| record.locked_until)
            .filter(|until| *until > now)
        {
            return (Admission::Locked { until }, None);
        }
        let (failures, lockouts) = current.map_or((0, 0), |r| (r.failures, r.lockouts));
        if failures < self.max_failures {
            if let Some(until) = current
                .and_then(|record| self.backoff_until(record))
                .filter(|until| *until > now)
            {
                return (Admission::Locked { until }, None);
            }
        }
        if failures >= self.max_failures {
            let until = now + self.lock_length(lockouts);
            let locked = FailureRecord {
                failures: 0,
                lockouts: lockouts.saturating_add(1),
                locked_until: Some(until),
                last_attempt_at: now,
            };
            return (Admission::Locked { until }, Some(locked));
        }
        let counted = FailureRecord {
            failures: failures + 1,
            lockouts,
            locked_until: None,
            last_attempt_at: now,
        };
        (Admission::Check, Some(counted))
    }

    /// When the attempt after `record`'s last one may check its password, once the failures
    /// in a row call for backoff.
    fn backoff_until(&self, record: &FailureRecord) -> Option<Timestamp> {
        let beyond = record
            .failures
            .checked_sub(self.backoff_after)
            .filter(|_| self.backoff_after > 0)?;
        let wait = 2_i32
            .checked_pow(beyond)
            .and_then(|factor| self.backoff.checked_mul(factor))
            .map_or(self.max_lockout, |wait| wait.min(self.max_lockout));
        Some(record.last_attempt_at + wait)
    }

    /// Until when `record` makes attempts wait at `now` (a lock or a backoff), if it does.
    pub fn waiting_until(&self, record: &FailureRecord, now: Timestamp) -> Option<Timestamp> {
        if self.forgotten(record, now) {
            return None;
        }
        record
            .locked_until
            .filter(|until| *until > now)
            .or_else(|| self.backoff_until(record).filter(|until| *until > now))
    }

    /// Whether `record` no longer counts at `now`.
    pub fn forgotten(&self, record: &FailureRecord, now: Timestamp) -> bool {
        let quiet_since = record.locked_until.map_or(record.last_attempt_at, |until| {
            until.max(record.last_attempt_at)
        });
        quiet_since + self.max_lockout <= now
    }

    /// Records whose last attempt came before this are forgotten at `now`, whatever their
    /// lock (which ends at most the longest lock after that attempt).
    pub fn forgotten_before(&self, now: Timestamp) -> Timestamp {
        now - self.max_lockout - self.max_lockout
    }

    /// The lock that follows `earlier` locks in a row.
    fn lock_length(&self, earlier: u32) -> Duration {
        2_i32
            .checked_pow(earlier)
            .and_then(|factor| self.lockout.checked_mul(factor))
            .map_or(self.max_lockout, |length| length.min(self.max_lockout))
    }
}

/// What an admin sees of a login name's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockState {
    /// Failed attempts since the last lock or success.
    pub failures: u32,
    /// Until when attempts are refused (locked or backing off).
    pub waiting_until: Option<Timestamp>,
}

/// The failed logins of every login name, in the store.
#[derive(Clone)]
pub struct AccountLockout {
    policy: Live<LockoutPolicy>,
    store: Arc<dyn Store>,
    hasher: KeyHasher,
    /// Prefixed to every name, so that the failures of another kind of attempt (second
    /// factors) are kept apart from those of logins; empty for logins.
    key_space: &'static str,
    /// Turns at removing forgotten failures.
    pruning: Arc<AtMostEvery>,
}

impl AccountLockout {
    pub fn new(policy: Live<LockoutPolicy>, store: Arc<dyn Store>, hasher: KeyHasher) -> Self {
        Self {
            policy,
            store,
            hasher,
            key_space: PASSWORD_KEY_SPACE,
            pruning: Arc::new(AtMostEvery::new(PRUNE_INTERVAL_SECS)),
        }
    }

    /// The same policy and store for another kind of attempt, whose failures are counted
    /// apart: every name is stored behind its key space and a NUL, so no typed name reaches
    /// another space's.
    pub fn in_key_space(&self, key_space: &'static str) -> Self {
        Self {
            key_space,
            ..self.clone()
        }
    }

    /// Counts an attempt to log in as `login_name`, and says whether its password may be
    /// checked.
    pub async fn attempt(&self, login_name: &str) -> Result<Admission, StoreError> {
        let account = self.account(login_name);
        for _ in 0..WRITE_TRIES {
            let kept = self.store.login_failures(&account).await?;
            let at = now();
            let (admission, next) = self
                .policy
                .get()
                .attempt(kept.as_ref().map(|kept| &kept.record), at);
            let Some(next) = next else {
                return Ok(admission);
            };
            let version = kept.map(|kept| kept.version);
            if self
                .store
                .keep_login_failures(&account, &next, version)
                .await?
            {
                if next.locked_until.is_some() {
                    metrics::counter!("tollgate_login_lockouts_total").increment(1);
                }
                self.prune(at).await;
                return Ok(admission);
            }
        }
        // Other attempts at the same name keep counting first: it is being flooded.
        Ok(Admission::Locked {
            until: now() + Duration::seconds(1),
        })
    }

    /// The login as `login_name` succeeded, or an admin unlocked it: its failures are
    /// forgotten.
    pub async fn forget(&self, login_name: &str) -> Result<(), StoreError> {
        self.store
            .forget_login_failures(&self.account(login_name))
            .await
    }

    /// The failures of `login_name` that still count, and until when they make attempts wait.
    pub async fn state(&self, login_name: &str) -> Result<LockState, StoreError> {
        let at = now();
        let policy = self.policy.get();
        let kept = self
            .store
            .login_failures(&self.account(login_name))
            .await?
            .map(|kept| kept.record)
            .filter(|record| !policy.forgotten(record, at));
        Ok(LockState {
            failures: kept.as_ref().map_or(0, |record| record.failures),
            waiting_until: kept
                .as_ref()
                .and_then(|record| policy.waiting_until(record, at)),
        })
    }

    /// The name as stored: lowercased in ASCII only, as usernames (ASCII) compare on every
    /// database, behind its key space, and keyed, so that the database holds no names that
    /// users typed (which are sometimes passwords).
    fn account(&self, login_name: &str) -> StoredKeyHash {
        let name = format!("{}\0{}", self.key_space, login_name.to_ascii_lowercase());
        self.hasher
            .hash(&KeyDigest(Sha256::digest(name.as_bytes()).into()))
    }

    /// Removes forgotten failures, at most once per interval; a failure waits for the next
    /// attempt.
    async fn prune(&self, at: Timestamp) {
        if !self.pruning.take_turn(at) {
            return;
        }
        if let Err(error) = self
            .store
            .prune_login_failures(self.policy.get().forgotten_before(at))
            .await
        {
            tracing::warn!(%error, "cannot remove forgotten login failures");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        max_failures: 3,
        lockout: Duration::minutes(15),
        max_lockout: Duration::minutes(45),
        backoff_after: 0,
        backoff: Duration::seconds(1),
    };

    const BACKING_OFF: LockoutPolicy = LockoutPolicy {
        max_failures: 6,
        backoff_after: 2,
        ..POLICY
    };

    /// Makes `count` attempts at `at`, keeping what the policy says.
    fn attempts(kept: &mut Option<FailureRecord>, at: Timestamp, count: u32) -> Vec<Admission> {
        (0..count)
            .map(|_| {
                let (admission, next) = POLICY.attempt(kept.as_ref(), at);
                if next.is_some() {
                    *kept = next;
                }
                admission
            })
            .collect()
    }

    #[test]
    fn the_attempt_after_the_last_allowed_failure_locks() {
        let start = now();
        let mut kept = None;
        assert_eq!(attempts(&mut kept, start, 3), vec![Admission::Check; 3]);
        let until = start + Duration::minutes(15);
        assert_eq!(
            attempts(&mut kept, start, 2),
            vec![Admission::Locked { until }; 2]
        );
        let just_before = until - Duration::milliseconds(1);
        assert_eq!(
            attempts(&mut kept, just_before, 1),
            vec![Admission::Locked { until }]
        );
        assert_eq!(attempts(&mut kept, until, 1), vec![Admission::Check]);
    }

    #[test]
    fn locks_in_a_row_double_up_to_the_longest() {
        let mut at = now();
        let mut kept = None;
        for expected in [15, 30, 45, 45] {
            attempts(&mut kept, at, 3);
            let until = at + Duration::minutes(expected);
            assert_eq!(
                attempts(&mut kept, at, 1),
                vec![Admission::Locked { until }]
            );
            at = until;
        }
    }

    #[test]
    fn failures_are_forgotten_the_longest_lock_after_the_lock_ends() {
        let start = now();
        let mut kept = None;
        attempts(&mut kept, start, 3);
        attempts(&mut kept, start, 1);
        let later = start + Duration::minutes(15 + 45);
        assert!(!POLICY.forgotten(
            kept.as_ref().expect("kept"),
            later - Duration::milliseconds(1)
        ));
        assert!(kept.as_ref().expect("kept").last_attempt_at > POLICY.forgotten_before(later));
        assert_eq!(attempts(&mut kept, later, 3), vec![Admission::Check; 3]);
        let until = later + Duration::minutes(15);
        assert_eq!(
            attempts(&mut kept, later, 1),
            vec![Admission::Locked { until }],
            "the first lock's length again"
        );
    }

    #[test]
    fn past_the_backoff_each_attempt_waits_twice_as_long_until_the_lock() {
        let start = now();
        let mut kept = None;
        let mut attempt = |at: Timestamp| {
            let (admission, next) = BACKING_OFF.attempt(kept.as_ref(), at);
            if next.is_some() {
                kept = next;
            }
            admission
        };
        assert_eq!(attempt(start), Admission::Check);
        assert_eq!(attempt(start), Admission::Check);
        let mut at = start;
        for wait_secs in [1, 2, 4, 8] {
            let until = at + Duration::seconds(wait_secs);
            assert_eq!(
                attempt(until - Duration::milliseconds(1)),
                Admission::Locked { until }
            );
            assert_eq!(attempt(until), Admission::Check, "after {wait_secs} s");
            at = until;
        }
        let (admission, _) = BACKING_OFF.attempt(kept.as_ref(), at + Duration::seconds(16));
        assert_eq!(
            admission,
            Admission::Locked {
                until: at + Duration::seconds(16) + Duration::minutes(15)
            },
            "the sixth failure locks"
        );
    }
}
