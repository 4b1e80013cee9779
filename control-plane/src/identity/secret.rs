//! Server secrets: configured, or generated once into the data dir. The key-hash secret keys
//! API-key hashes; the Envoy credential is what every Envoy presents on the gRPC port.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

const SECRET_FILE: &str = "key-hash.secret";
const ENVOY_CREDENTIAL_FILE: &str = "envoy.credential";
const GENERATED_SECRET_BYTES: usize = 32;

/// The secret could not be read or created.
#[derive(Debug, thiserror::Error)]
#[error("key hash secret {path}: {problem}")]
pub struct SecretError {
    path: PathBuf,
    problem: String,
}

/// Returns the configured secret, or the one in `data_dir`, creating it (mode 0600) if absent.
pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<Vec<u8>, SecretError> {
    if let Some(secret) = configured {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join(SECRET_FILE);
    let text = hex_text_or_generate(&path)?;
    hex::decode(&text).map_err(|e| SecretError {
        path,
        problem: format!("not hex: {e}"),
    })
}

/// Returns the configured Envoy credential, or the one in `data_dir`, creating it (mode 0600)
/// if absent. Envoys present it as it is written in that file.
pub fn envoy_credential(configured: Option<&str>, data_dir: &Path) -> Result<String, SecretError> {
    match configured {
        Some(credential) => Ok(credential.to_string()),
        None => hex_text_or_generate(&data_dir.join(ENVOY_CREDENTIAL_FILE)),
    }
}

/// The hex text of the secret at `path`, written with fresh random bytes when missing.
fn hex_text_or_generate(path: &Path) -> Result<String, SecretError> {
    let error = |problem: String| SecretError {
        path: path.to_path_buf(),
        problem,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim().to_string();
            let bytes = hex::decode(&text).map_err(|e| error(format!("not hex: {e}")))?;
            if bytes.len() < GENERATED_SECRET_BYTES {
                return Err(error("shorter than 32 bytes".into()));
            }
            Ok(text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; GENERATED_SECRET_BYTES];
            rand::rng().fill_bytes(&mut secret);
            let text = hex::encode(&secret);
            write_private(path, text.as_bytes()).map_err(|e| error(e.to_string()))?;
            Ok(text)
        }
        Err(e) => Err(error(e.to_string())),
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_is_kept_across_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(None, dir.path()).expect("create");
        let second = load_or_create(None, dir.path()).expect("reload");
        assert_eq!(first, second);
        assert_eq!(first.len(), GENERATED_SECRET_BYTES);
    }

    #[test]
    fn a_configured_secret_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = load_or_create(Some("x".repeat(40).as_str()), dir.path()).expect("configured");
        assert_eq!(secret, "x".repeat(40).into_bytes());
        assert!(!dir.path().join(SECRET_FILE).exists());
    }

    #[test]
    fn a_generated_envoy_credential_is_the_text_of_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = envoy_credential(None, dir.path()).expect("create");
        let file = fs::read_to_string(dir.path().join(ENVOY_CREDENTIAL_FILE)).expect("file");
        assert_eq!(first, file);
        assert_eq!(first.len(), 2 * GENERATED_SECRET_BYTES);
        assert_eq!(envoy_credential(None, dir.path()).expect("reload"), first);
        assert_eq!(
            envoy_credential(Some("set"), dir.path()).expect("configured"),
            "set"
        );
    }
}
