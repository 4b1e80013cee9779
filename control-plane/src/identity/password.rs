//! Password hashing with Argon2id (PHC string format, per-password salt, parameters from
//! `passwords.argon2`), verification of the bcrypt hashes an older system may have left, and
//! the bound on how many hashes run at once.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// The share of available memory that hashes running at once may hold.
const HASH_MEMORY_SHARE: u64 = 4;
/// Hashes that may wait for a free slot, per slot; more are refused at once.
const QUEUED_PER_SLOT: usize = 16;
/// How bcrypt hashes begin (`$2b$12$...`); their verifiers are upgraded to Argon2id.
pub const BCRYPT_PREFIXES: [&str; 4] = ["$2a$", "$2b$", "$2x$", "$2y$"];
/// The highest bcrypt cost verified (the usual 10 to 12 are well under it): each step doubles
/// the work, and a verification cannot be stopped once started.
pub const MAX_BCRYPT_COST: u32 = 14;

/// Hashing failed; only happens with parameters out of range.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordHashError(String);

/// The cost of new Argon2id hashes.
#[derive(Debug, Clone)]
pub struct Argon2Settings {
    params: Params,
}

impl Argon2Settings {
    /// `memory_kib` KiB, `iterations` passes, `parallelism` lanes; refused when out of range.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    ) -> Result<Self, PasswordHashError> {
        Params::new(memory_kib, iterations, parallelism, None)
            .map(|params| Self { params })
            .map_err(|e| PasswordHashError(e.to_string()))
    }

    fn hasher(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Memory one hash holds.
    fn memory_bytes(&self) -> u64 {
        u64::from(self.params.m_cost()) * 1024
    }

    /// Whether the Argon2 parameters `hash` names cost no more than these parameters, or than
    /// the defaults where these are cheaper: memory, passes and lanes each.
    fn bounds(&self, hash: &PasswordHash) -> bool {
        let floor = Params::default();
        let within = |name: &str, configured: u32, default: u32| {
            hash.params
                .get_decimal(name)
                .is_some_and(|stored| stored <= configured.max(default))
        };
        within("m", self.params.m_cost(), floor.m_cost())
            && within("t", self.params.t_cost(), floor.t_cost())
            && within("p", self.params.p_cost(), floor.p_cost())
    }

    /// Whether `hash` is an Argon2id hash made with these parameters.
    fn made(&self, hash: &PasswordHash) -> bool {
        let current = |name: &str, value: u32| {
            hash.params
                .get_decimal(name)
                .is_some_and(|stored| stored == value)
        };
        hash.algorithm == Algorithm::Argon2id.ident()
            && hash.version == Some(Version::V0x13.into())
            && current("m", self.params.m_cost())
            && current("t", self.params.t_cost())
            && current("p", self.params.p_cost())
    }
}

impl Default for Argon2Settings {
    /// The argon2 crate's defaults, which follow OWASP: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            params: Params::default(),
        }
    }
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub matches: bool,
    /// The hash is bcrypt, or Argon2 with other parameters than the configured ones: a
    /// successful login stores a new one.
    pub needs_rehash: bool,
}

/// Hashes `password` with Argon2id, `settings` and a random salt.
pub fn hash_password(
    password: &str,
    settings: &Argon2Settings,
) -> Result<String, PasswordHashError> {
    let salt = SaltString::generate(&mut OsRng);
    settings
        .hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordHashError(e.to_string()))
}

/// Checks `password` against `stored`, an Argon2 PHC string or a bcrypt hash (comparison is
/// constant-time inside both crates). Anything else matches nothing, and so does a hash
/// costlier than [`check_hash`] allows (however it reached the database): it is not run.
pub fn verify_password(password: &str, stored: &str, settings: &Argon2Settings) -> Verified {
    let nothing = Verified {
        matches: false,
        needs_rehash: false,
    };
    if let Err(HashRefused::TooCostly) = check_hash(stored, settings) {
        tracing::warn!(
            "a stored password hash costs more than the bounds allow; it matches no password"
        );
        return nothing;
    }
    if is_bcrypt(stored) {
        return Verified {
            matches: bcrypt::verify(password, stored).unwrap_or(false),
            needs_rehash: true,
        };
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Verified {
            // Verification takes the parameters the hash names.
            matches: Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            needs_rehash: !settings.made(&parsed),
        },
        Err(_) => Verified {
            matches: false,
            needs_rehash: false,
        },
    }
}

/// Why a hash is not one this module verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashRefused {
    /// Neither a bcrypt hash (see [`BCRYPT_PREFIXES`]) nor an Argon2id PHC string.
    Unknown,
    /// A bcrypt cost above [`MAX_BCRYPT_COST`], or Argon2id memory, passes or lanes above the
    /// configured ones (or above the defaults, where the configured ones are lower).
    TooCostly,
}

/// Whether `hash` is a hash this module verifies: Argon2id, or bcrypt to be upgraded, at a
/// cost within the bounds.
pub fn check_hash(hash: &str, settings: &Argon2Settings) -> Result<(), HashRefused> {
    if is_bcrypt(hash) {
        let parts = hash
            .parse::<bcrypt::HashParts>()
            .map_err(|_| HashRefused::Unknown)?;
        return if parts.get_cost() <= MAX_BCRYPT_COST {
            Ok(())
        } else {
            Err(HashRefused::TooCostly)
        };
    }
    let parsed = PasswordHash::new(hash).map_err(|_| HashRefused::Unknown)?;
    if parsed.algorithm != Algorithm::Argon2id.ident() || Params::try_from(&parsed).is_err() {
        return Err(HashRefused::Unknown);
    }
    if settings.bounds(&parsed) {
        Ok(())
    } else {
        Err(HashRefused::TooCostly)
    }
}

fn is_bcrypt(hash: &str) -> bool {
    BCRYPT_PREFIXES
        .iter()
        .any(|prefix| hash.starts_with(prefix))
}

/// Every Argon2id hash goes through here: at most one per core runs at once (each is CPU-bound
/// and holds the configured memory), a bounded number wait, and the rest are refused, so a flood of logins
/// can exhaust neither memory nor the blocking threads, and the rest of the API keeps answering.
#[derive(Clone)]
pub struct PasswordWork {
    /// Running and waiting hashes.
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    settings: Arc<Argon2Settings>,
    /// A hash of a random password, verified against when a login names no user (or one
    /// without a password), so that every refusal costs the same Argon2id work.
    decoy: Arc<OnceLock<String>>,
}

/// Too many hashes are running and waiting; the caller should retry shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are in progress")]
pub struct PasswordWorkBusy;

impl PasswordWork {
    /// `running` hashes at once (at least one), and `queued` more waiting, made with
    /// `settings`.
    pub fn new(running: usize, queued: usize, settings: Argon2Settings) -> Self {
        let running = running.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(running + queued)),
            running: Arc::new(Semaphore::new(running)),
            settings: Arc::new(settings),
            decoy: Arc::new(OnceLock::new()),
        }
    }

    /// Sized from this machine: one hash per core, fewer when memory is short.
    pub fn for_this_machine(settings: Argon2Settings) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let per_hash = settings.memory_bytes().max(1);
        let by_memory = available_memory_bytes().map_or(usize::MAX, |bytes| {
            usize::try_from(bytes / HASH_MEMORY_SHARE / per_hash).unwrap_or(usize::MAX)
        });
        let running = cores.min(by_memory).max(1);
        Self::new(running, running * QUEUED_PER_SLOT, settings)
    }

    /// Whether `hash` is one [`verify_password`] runs with the configured parameters.
    pub fn check_hash(&self, hash: &str) -> Result<(), HashRefused> {
        check_hash(hash, &self.settings)
    }

    /// Checks `password` against `stored`; with no stored hash, or one costlier than the bounds,
    /// against a decoy made with the configured parameters, so that the answer takes as long
    /// and matches nothing.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, PasswordWorkBusy> {
        let work = self.clone();
        self.run(move || {
            metrics::counter!("tollgate_password_verifications_total").increment(1);
            // A hash too costly to run is not run, but the decoy is, so the answer takes as
            // long as any other refusal.
            let runnable = stored.filter(|stored| {
                let bounded = check_hash(stored, &work.settings) != Err(HashRefused::TooCostly);
                if !bounded {
                    tracing::warn!(
                        "a stored password hash costs more than the bounds allow; it matches \
                         no password"
                    );
                }
                bounded
            });
            match runnable {
                Some(stored) => verify_password(&password, &stored, &work.settings),
                None => {
                    verify_password(&password, work.decoy_hash(), &work.settings);
                    Verified {
                        matches: false,
                        needs_rehash: false,
                    }
                }
            }
        })
        .await
        .map(|verified| {
            verified.unwrap_or(Verified {
                matches: false,
                needs_rehash: false,
            })
        })
    }

    /// Hashes `password` for storage; `None` when the hashing task failed.
    pub async fn hash(
        &self,
        password: String,
    ) -> Result<Option<Result<String, PasswordHashError>>, PasswordWorkBusy> {
        let settings = Arc::clone(&self.settings);
        self.run(move || hash_password(&password, &settings)).await
    }

    /// The decoy, made on first use (on a blocking thread: it costs one hash).
    fn decoy_hash(&self) -> &str {
        self.decoy.get_or_init(|| {
            use rand::distr::{Alphanumeric, SampleString};
            let random = Alphanumeric.sample_string(&mut rand::rng(), 32);
            hash_password(&random, &self.settings).unwrap_or_default()
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_password() {
        let settings = Argon2Settings::default();
        let stored = hash_password("correct horse", &settings).expect("hash");
        assert!(stored.starts_with("$argon2id$"));
        assert_eq!(check_hash(&stored, &settings), Ok(()));
        let right = verify_password("correct horse", &stored, &settings);
        assert_eq!(
            right,
            Verified {
                matches: true,
                needs_rehash: false
            }
        );
        assert!(!verify_password("wrong horse", &stored, &settings).matches);
        assert!(!verify_password("correct horse", "not a phc string", &settings).matches);
        assert_eq!(
            check_hash("not a phc string", &settings),
            Err(HashRefused::Unknown)
        );
    }

    #[test]
    fn bcrypt_and_other_argon2_parameters_verify_and_ask_for_a_new_hash() {
        let settings = Argon2Settings::default();
        let imported = bcrypt::hash("correct horse", 4).expect("bcrypt");
        assert_eq!(check_hash(&imported, &settings), Ok(()));
        let verified = verify_password("correct horse", &imported, &settings);
        assert!(verified.matches && verified.needs_rehash);
        assert!(!verify_password("wrong horse", &imported, &settings).matches);

        let cheaper = Argon2Settings::new(8192, 1, 1).expect("parameters");
        let old = hash_password("correct horse", &cheaper).expect("hash");
        let verified = verify_password("correct horse", &old, &settings);
        assert!(verified.matches && verified.needs_rehash);
        assert!(!verify_password("correct horse", &old, &cheaper).needs_rehash);
    }

    #[test]
    fn hashes_costlier_than_the_bounds_are_refused_and_match_nothing() {
        let settings = Argon2Settings::new(8192, 1, 1).expect("parameters");
        let defaults = Argon2Settings::default();
        // Hashes of the defaults verify under cheaper settings; more than both does not.
        let default_hash = hash_password("pw", &defaults).expect("hash");
        assert_eq!(check_hash(&default_hash, &settings), Ok(()));
        let bigger = default_hash.replacen("m=19456", "m=4194304", 1);
        assert_eq!(check_hash(&bigger, &settings), Err(HashRefused::TooCostly));
        assert!(!verify_password("pw", &bigger, &settings).matches);
        for costly in [
            default_hash.replacen("t=2", "t=1000", 1),
            default_hash.replacen("p=1", "p=64", 1),
        ] {
            assert_eq!(check_hash(&costly, &settings), Err(HashRefused::TooCostly));
        }
        let salt = "$2b$31$......................21jzCB1r6pN6rp5O2Ev0ejjTAboskKm";
        assert_eq!(check_hash(salt, &settings), Err(HashRefused::TooCostly));
        assert!(!verify_password("pw", salt, &settings).matches);
        let cost_14 = salt.replacen("$31$", "$14$", 1);
        assert_eq!(check_hash(&cost_14, &settings), Ok(()));
    }

    #[tokio::test]
    async fn hashes_beyond_the_running_and_queued_ones_are_refused_at_once() {
        let work = PasswordWork::new(1, 1, Argon2Settings::default());
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
        let work = PasswordWork::for_this_machine(Argon2Settings::default());
        assert!(work.running.available_permits() >= 1);
        assert!(work.admitted.available_permits() > work.running.available_permits());
    }
}
