//! First start: make sure an `admin` user exists and can be reached with a key, and
//! that sessions have a signing key.

use serde_json::json;

use crate::accounts::api_key::{ApiKey, KeyHasher, PlainApiKey};
use crate::accounts::user::{Role, User};
use crate::changes::audit::AuditEntry;
use crate::domain::ids::UserId;
use crate::domain::now;
use crate::identity::sealing::Sealer;
use crate::identity::signing::{SigningAlgorithm, SigningKeyRecord};
use crate::identity::tokens::SessionTokens;
use crate::store::{Store, StoreError};

const ADMIN_USERNAME: &str = "admin";
/// A configured admin key shorter than this draws a warning at start.
const RECOMMENDED_ADMIN_KEY_CHARS: usize = 32;

/// What bootstrapping did, for the operator.
pub enum AdminBootstrap {
    /// Nothing to do: the admin exists and any configured key is known.
    Unchanged,
    /// The configured key was imported for the admin.
    ImportedKey,
    /// A new admin was created with this generated key, to be shown once.
    GeneratedKey(PlainApiKey),
}

/// Warns when the configured admin key is short enough to be guessed.
pub fn warn_if_weak(configured_key: Option<&str>) {
    let chars = configured_key.map_or(usize::MAX, |key| key.chars().count());
    if chars < RECOMMENDED_ADMIN_KEY_CHARS {
        tracing::warn!(
            chars,
            "`bootstrap.admin_api_key` is shorter than {RECOMMENDED_ADMIN_KEY_CHARS} characters \
             and may be guessed; replace it with a long random key"
        );
    }
}

/// Creates the `admin` user if missing; imports `configured_key` when it is not yet
/// known (in any state, so a revoked bootstrap key stays revoked), or generates a key
/// for a brand-new admin when none is configured.
pub async fn ensure_admin(
    store: &dyn Store,
    hasher: &KeyHasher,
    key_prefix: &str,
    configured_key: Option<&str>,
) -> Result<AdminBootstrap, StoreError> {
    let (admin, created) = match store.user_by_username(ADMIN_USERNAME).await {
        Ok(user) => (user, false),
        Err(StoreError::NotFound) => (create_admin(store).await?, true),
        Err(other) => return Err(other),
    };
    match configured_key {
        Some(key) => {
            let plain = PlainApiKey::from_client(key.to_string());
            match store.key_by_hash(&hasher.hash(&plain.digest())).await {
                Ok(_) => Ok(AdminBootstrap::Unchanged),
                Err(StoreError::NotFound) => {
                    add_key(store, hasher, &admin, &plain, "imported").await?;
                    Ok(AdminBootstrap::ImportedKey)
                }
                Err(other) => Err(other),
            }
        }
        None if created => {
            let plain = PlainApiKey::generate(key_prefix, &admin.id);
            add_key(store, hasher, &admin, &plain, "generated").await?;
            Ok(AdminBootstrap::GeneratedKey(plain))
        }
        None => Ok(AdminBootstrap::Unchanged),
    }
}

async fn create_admin(store: &dyn Store) -> Result<User, StoreError> {
    let admin = User {
        name: Some("Administrator".to_string()),
        ..User::new(
            UserId::generate(),
            ADMIN_USERNAME.to_string(),
            Role::Admin,
            now(),
        )
    };
    let audit = AuditEntry::new(
        None,
        "user.created",
        admin.id.as_str(),
        json!({"bootstrap": true}),
    );
    store.create_user(&admin, &audit).await?;
    Ok(admin)
}

async fn add_key(
    store: &dyn Store,
    hasher: &KeyHasher,
    admin: &User,
    plain: &PlainApiKey,
    origin: &str,
) -> Result<(), StoreError> {
    let key = ApiKey::new(
        admin.id.clone(),
        format!("bootstrap ({origin})"),
        plain,
        hasher,
        None,
        Vec::new(),
    );
    let audit = AuditEntry::new(
        None,
        "api_key.created",
        key.id.as_str(),
        json!({"user_id": admin.id, "bootstrap": origin}),
    );
    store.create_key(&key, &audit).await
}

/// Loads the signing keys; creates one that signs at once when none can (first start).
pub async fn ensure_signing_key(
    store: &dyn Store,
    tokens: &SessionTokens,
    sealer: &Sealer,
    algorithm: SigningAlgorithm,
) -> anyhow::Result<()> {
    tokens.load(store.signing_keys().await?, sealer)?;
    let at = now();
    if tokens.has_usable_key(at) {
        return Ok(());
    }
    let sealer_for_generation = sealer.clone();
    let key = tokio::task::spawn_blocking(move || {
        SigningKeyRecord::generate(algorithm, &sealer_for_generation, at, at)
    })
    .await??;
    let audit = AuditEntry::new(
        None,
        "signing_key.created",
        &key.kid,
        json!({"alg": key.alg.as_str(), "bootstrap": true}),
    );
    store.add_signing_key(&key, None, &audit).await?;
    tokens.load(store.signing_keys().await?, sealer)?;
    Ok(())
}
