//! The periodic sync: every `sync_interval_secs`, each active user the directory owns is
//! looked up again; its attributes and mapped groups follow the directory, and a user the
//! directory no longer has, or has disabled (`disabled_filter`), is suspended and its
//! sessions end. A round the directory cannot answer changes nobody.
//!
//! Every replica runs it: each write is idempotent (a field set to the value it has is not
//! written, a membership added twice or a user suspended twice is left as it is), so replicas
//! running the same round at once agree.

use std::sync::Arc;

use super::accounts::{suspend, sync_user};
use super::directory::{Directory, Found, Unavailable};
use super::settings::LdapSettings;
use crate::accounts::user::UserStatus;
use crate::identity::tokens::SessionTokens;
use crate::store::{Store, StoreError};

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub synced: usize,
    pub suspended: usize,
    /// Users the round could not bring up to date (logged).
    pub failed: usize,
}

/// Runs a round every `sync_interval`, the first one interval after start.
pub async fn run(store: Arc<dyn Store>, settings: Arc<LdapSettings>, tokens: SessionTokens) {
    let mut ticks = tokio::time::interval(settings.sync_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match sync_once(store.as_ref(), &settings, &tokens).await {
            Ok(round) => {
                metrics::counter!("tollgate_ldap_sync_rounds_total", "result" => "ok").increment(1);
                tracing::debug!(?round, "LDAP sync round done");
            }
            Err(error) => {
                metrics::counter!("tollgate_ldap_sync_rounds_total", "result" => "unavailable")
                    .increment(1);
                tracing::warn!(%error, "LDAP sync round skipped");
            }
        }
    }
}

/// One round over every linked, active user.
pub async fn sync_once(
    store: &dyn Store,
    settings: &LdapSettings,
    tokens: &SessionTokens,
) -> Result<Round, SyncError> {
    let links = store.ldap_links().await?;
    let mut round = Round::default();
    if links.is_empty() {
        return Ok(round);
    }
    let mut directory = Directory::connect(settings).await?;
    for link in links {
        let user = match store.user(&link.user_id).await {
            Ok(user) if user.status == UserStatus::Active => user,
            Ok(_) | Err(StoreError::NotFound) => continue,
            Err(other) => return Err(other.into()),
        };
        let outcome = match directory.find(&user.username).await? {
            Found::Nobody => Outcome::Suspend("not found in the directory"),
            Found::Several => Outcome::Skip("several directory entries match"),
            Found::One(person) if directory.is_disabled(&person.dn).await? => {
                Outcome::Suspend("disabled in the directory")
            }
            Found::One(person) => match sync_user(store, settings, user.clone(), &person).await {
                Ok(()) => Outcome::Synced,
                Err(error) => {
                    tracing::warn!(%error, user = %user.id, "cannot sync a user from LDAP");
                    Outcome::Failed
                }
            },
        };
        match outcome {
            Outcome::Synced => round.synced += 1,
            Outcome::Failed => round.failed += 1,
            Outcome::Skip(reason) => {
                tracing::warn!(user = %user.id, reason, "LDAP sync left a user unchanged");
                round.failed += 1;
            }
            Outcome::Suspend(reason) => {
                let id = user.id.clone();
                match suspend(store, user, reason, tokens.issued_tokens_expire_at()).await {
                    Ok(()) => {
                        tracing::info!(user = %id, reason, "suspended a user by LDAP sync");
                        round.suspended += 1;
                    }
                    Err(error) => {
                        tracing::warn!(%error, user = %id, "cannot suspend a user by LDAP sync");
                        round.failed += 1;
                    }
                }
            }
        }
    }
    directory.close().await;
    Ok(round)
}

enum Outcome {
    Synced,
    Failed,
    Skip(&'static str),
    Suspend(&'static str),
}

/// Why a round stopped: it changed only the users it reached before.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Directory(#[from] Unavailable),
    #[error("cannot read the users to sync: {0}")]
    Store(#[from] StoreError),
}
