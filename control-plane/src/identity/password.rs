//! Password hashing with Argon2id (PHC string format, per-password salt), and the bound on how
//! many hashes run at once.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// Memory one Argon2id hash holds with the default parameters (m = 19 MiB).
const HASH_MEMORY_BYTES: u64 = 19 * 1024 * 1024;
/// The share of available memory that hashes running at once may hold.
const HASH_MEMORY_SHARE: u64 = 4;
/// Hashes that may wait for a free slot, per slot; more are refused at once.
const QUEUED_PER_SLOT: usize = 16;

/// Hashing failed; only happens with parameters out of range.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordHashError(String);

/// Hashes `password` with Argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordHashError(e.to_string()))
}

/// Whether `password` matches `stored` (comparison is constant-time inside argon2).
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Every Argon2id hash goes through here: at most one per core runs at once (each is CPU-bound
/// and holds 19 MiB), a bounded number wait, and the rest are refused, so a flood of logins
/// can exhaust neither memory nor the blocking threads, and the rest of the API keeps answering.
#[derive(Clone)]
pub struct PasswordWork {
    /// Running and waiting hashes.
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// Too many hashes are running and waiting; the caller should retry shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are in progress")]
pub struct PasswordWorkBusy;

impl PasswordWork {
    /// `running` hashes at once (at least one), and `queued` more waiting.
    pub fn new(running: usize, queued: usize) -> Self {
        let running = running.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(running + queued)),
            running: Arc::new(Semaphore::new(running)),
        }
    }

    /// Sized from this machine: one hash per core, fewer when memory is short.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let by_memory = available_memory_bytes().map_or(usize::MAX, |bytes| {
            usize::try_from(bytes / HASH_MEMORY_SHARE / HASH_MEMORY_BYTES).unwrap_or(usize::MAX)
        });
        let running = cores.min(by_memory).max(1);
        Self::new(running, running * QUEUED_PER_SLOT)
    }

    /// Whether `password` matches `stored`.
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, PasswordWorkBusy> {
        self.run(move || {
            metrics::counter!("tollgate_password_verifications_total").increment(1);
            verify_password(&password, &stored)
        })
        .await
        .map(|matched| matched.unwrap_or(false))
    }

    /// Hashes `password` for storage; `None` when the hashing task failed.
    pub async fn hash(
        &self,
        password: String,
    ) -> Result<Option<Result<String, PasswordHashError>>, PasswordWorkBusy> {
        self.run(move || hash_password(&password)).await
    }

    /// Runs `work` on a blocking thread once a slot is free; `Ok(None)` when the task panicked.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<Option<T>, PasswordWorkBusy> {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| PasswordWorkBusy)?;
        let _running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordWorkBusy)?;
        Ok(tokio::task::spawn_blocking(work).await.ok())
    }
}

/// `MemAvailable` from /proc/meminfo, where there is one.
fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A hash of a random password, verified against when a login names no user (or one
/// without a password), so that every refusal costs the same Argon2id work.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: String = {
            use rand::distr::{Alphanumeric, SampleString};
            Alphanumeric.sample_string(&mut rand::rng(), 32)
        };
        hash_password(&random).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_password() {
        let stored = hash_password("correct horse").expect("hash");
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("wrong horse", &stored));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[tokio::test]
    async fn hashes_beyond_the_running_and_queued_ones_are_refused_at_once() {
        let work = PasswordWork::new(1, 1);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let blocked = {
            let work = work.clone();
            tokio::spawn(async move { work.run(move || hold.recv().is_ok()).await })
        };
        while work.running.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let work = work.clone();
            tokio::spawn(async move { work.run(|| true).await })
        };
        while work.admitted.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(work.run(|| true).await, Err(PasswordWorkBusy));
        release.send(()).expect("the first hash is waiting");
        assert_eq!(blocked.await.expect("joined"), Ok(Some(true)));
        assert_eq!(queued.await.expect("joined"), Ok(Some(true)));
        assert_eq!(work.run(|| true).await, Ok(Some(true)));
    }

    #[test]
    fn this_machine_runs_at_least_one_hash() {
        let work = PasswordWork::for_this_machine();
        assert!(work.running.available_permits() >= 1);
        assert!(work.admitted.available_permits() > work.running.available_permits());
    }
}
