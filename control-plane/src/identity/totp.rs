//! Time-based one-time passwords (RFC 6238) as authenticator apps compute them, and the
//! one-time backup codes that stand in for the app: secrets sealed at rest, `otpauth://`
//! URIs with their QR code, and codes checked within one time step of clock skew.

use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Totp};

use super::sealing::{Sealer, UnsealError};
use crate::accounts::api_key::{KeyDigest, KeyHasher, StoredKeyHash};
use crate::domain::ids::UserId;
use crate::domain::Timestamp;

/// 160 bits, as RFC 4226 recommends.
const SECRET_BYTES: usize = 20;
const DIGITS: u8 = 6;
const STEP_SECS: u64 = 30;
/// Steps accepted either side of the current one: clocks that differ by up to 30 s.
const SKEW_STEPS: u16 = 1;
/// How many backup codes a confirmation hands out.
pub const BACKUP_CODES: usize = 10;
/// Characters of a backup code: ten of 31 unambiguous letters and digits, about 50 bits.
const BACKUP_CODE_CHARS: usize = 10;
const BACKUP_CODE_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
const SEAL_CONTEXT: &str = "tollgate totp secret v1";
const BACKUP_CODE_LABEL: &str = "tollgate backup code v1:";

/// A user's TOTP authenticator as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    pub user_id: UserId,
    /// The shared secret, sealed and bound to the user (see [`TotpSecret::seal`]).
    pub sealed_secret: String,
    pub created_at: Timestamp,
    /// When a first code confirmed it; until then it is pending and guards no login.
    pub confirmed_at: Option<Timestamp>,
    /// The last time step a code was accepted for.
    pub last_used_step: Option<u64>,
}

/// Why a TOTP could not be set up or checked.
#[derive(Debug, thiserror::Error)]
pub enum TotpFailure {
    #[error(transparent)]
    Unseal(#[from] UnsealError),
    #[error("the authenticator cannot be described: {0}")]
    Invalid(String),
}

/// A shared secret in clear; never logged or stored unsealed.
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The secret sealed for `user` alone: opened for another user it is refused.
    pub fn seal(&self, sealer: &Sealer, user: &UserId) -> String {
        sealer.seal(&self.0, &seal_context(user))
    }

    pub fn open(sealer: &Sealer, user: &UserId, sealed: &str) -> Result<Self, UnsealError> {
        sealer.open(sealed, &seal_context(user)).map(Self)
    }

    /// The authenticator of `account` (the username) at `issuer`.
    fn totp(&self, issuer: &str, account: &str) -> Result<Totp, TotpFailure> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_step_duration(STEP_SECS)
            .with_skew(SKEW_STEPS)
            .with_secret(self.0.clone())
            .with_account_name(account)
            .with_issuer(Some(issuer))
            .build()
            .map_err(|error| TotpFailure::Invalid(error.to_string()))
    }

    /// The `otpauth://totp/...` URI an authenticator app reads.
    pub fn uri(&self, issuer: &str, account: &str) -> Result<String, TotpFailure> {
        self.totp(issuer, account)?
            .to_url()
            .map_err(|error| TotpFailure::Invalid(error.to_string()))
    }

    /// The time step `code` is valid for at `unix_secs`, within one step either side.
    pub fn matching_step(&self, code: &str, unix_secs: u64) -> Option<u64> {
        // The issuer and account take no part in the codes.
        let totp = self.totp("-", "-").ok()?;
        totp.check(code.trim(), unix_secs)
    }
}

fn seal_context(user: &UserId) -> Vec<u8> {
    format!("{SEAL_CONTEXT} {user}").into_bytes()
}

/// `uri` as a QR code in SVG, for an authenticator app to scan.
pub fn qr_svg(uri: &str) -> Result<String, TotpFailure> {
    let code = qrcode::QrCode::new(uri).map_err(|error| TotpFailure::Invalid(error.to_string()))?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build())
}

/// Fresh backup codes in clear, as shown once (`abcde-fghjk`).
pub fn generate_backup_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..BACKUP_CODES)
        .map(|_| {
            let code: String = (0..BACKUP_CODE_CHARS)
                .map(|_| {
                    char::from(
                        BACKUP_CODE_ALPHABET[rng.random_range(0..BACKUP_CODE_ALPHABET.len())],
                    )
                })
                .collect();
            let (first, second) = code.split_at(BACKUP_CODE_CHARS / 2);
            format!("{first}-{second}")
        })
        .collect()
}

/// The stored form of a backup code: a keyed hash, as for API keys. A code carries about 50 random
/// bits, so a slow hash (Argon2) would add nothing against guessing it from its hash, which
/// cannot even start without the server secret; a keyed hash also lets a login find the code
/// by its hash instead of trying every code of the user. Case, spaces and dashes are ignored.
pub fn backup_code_hash(hasher: &KeyHasher, code: &str) -> StoredKeyHash {
    let normalized: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let digest = Sha256::digest(format!("{BACKUP_CODE_LABEL}{normalized}").as_bytes());
    hasher.hash(&KeyDigest(digest.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_and_the_next_and_previous_only() {
        let secret = TotpSecret::generate();
        let totp = secret.totp("Tollgate", "alice").expect("totp");
        let at = 1_000_000_020;
        let code = totp.generate(at);
        let step = at / STEP_SECS;
        assert_eq!(secret.matching_step(&code.to_string(), at), Some(step));
        assert_eq!(
            secret.matching_step(&code.to_string(), at + STEP_SECS),
            Some(step)
        );
        assert_eq!(
            secret.matching_step(&code.to_string(), at - STEP_SECS),
            Some(step)
        );
        assert_eq!(
            secret.matching_step(&code.to_string(), at + 2 * STEP_SECS),
            None
        );
        assert_eq!(secret.matching_step("not a code", at), None);
    }

    #[test]
    fn a_sealed_secret_opens_for_its_user_only() {
        let sealer = Sealer::new(b"server secret");
        let (alice, bob) = (UserId::generate(), UserId::generate());
        let secret = TotpSecret::generate();
        let sealed = secret.seal(&sealer, &alice);
        assert_eq!(
            TotpSecret::open(&sealer, &alice, &sealed).expect("open").0,
            secret.0
        );
        assert!(TotpSecret::open(&sealer, &bob, &sealed).is_err());
    }

    #[test]
    fn backup_codes_are_distinct_and_hash_alike_however_typed() {
        let codes = generate_backup_codes();
        assert_eq!(codes.len(), BACKUP_CODES);
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), BACKUP_CODES);
        let hasher = KeyHasher::new(b"server secret");
        let code = &codes[0];
        assert_eq!(code.len(), BACKUP_CODE_CHARS + 1);
        let typed = format!(" {} ", code.replace('-', " ").to_uppercase());
        assert_eq!(
            backup_code_hash(&hasher, code),
            backup_code_hash(&hasher, &typed)
        );
        assert_ne!(
            backup_code_hash(&hasher, code),
            backup_code_hash(&hasher, &codes[1])
        );
    }
}
