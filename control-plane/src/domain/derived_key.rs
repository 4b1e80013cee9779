//! Keys derived from the server secret, one per purpose, so that no two uses share a key.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The 32-byte key for the purpose `label`: HMAC-SHA256 of the label under the secret.
pub fn derive_key(server_secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(server_secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(label);
    mac.finalize().into_bytes().into()
}
