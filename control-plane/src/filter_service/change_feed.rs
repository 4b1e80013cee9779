//! `WatchChanges`: the long poll that tells every Envoy which cached principals are stale, and
//! hands it the signing keys and the deployment's limits.
use std::time::Duration;

use sha2::{Digest, Sha256};
use tonic::Status;

use super::limit_settings::limit_settings;
use super::{unavailable, FilterApi};
use crate::changes::feed::{Change, Stale};
use crate::identity::signing::{PublicJwk, SigningKeyRecord};
use crate::proto::v1::{self, invalidation, WatchChangesRequest, WatchChangesResponse};
use crate::store::StoreError;

/// The longest a watch may be held open.
const MAX_WATCH: Duration = Duration::from_secs(30);
/// How often a held watch looks for changes other replicas wrote.
const STORE_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The most changes one answer carries; the watcher asks again for the rest.
const MAX_CHANGES_PER_ANSWER: u64 = 1000;

impl FilterApi {
    pub(super) async fn watch_changes(
        &self,
        request: WatchChangesRequest,
    ) -> Result<WatchChangesResponse, Status> {
        let _open = self.open_watches.open(&request.node_id);
        let wait = Duration::from_millis(request.wait_ms.into()).min(MAX_WATCH);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register before looking, so an announcement in between is not missed.
            let announced = self.changes.announced();
            if let Some(answer) = self.changes_after(&request).await.map_err(unavailable)? {
                metrics::counter!("tollgate_change_feed_answers_total", "kind" => "changes")
                    .increment(1);
                return Ok(answer);
            }
            let next_poll = tokio::time::Instant::now() + STORE_POLL_INTERVAL;
            if next_poll >= deadline {
                tokio::time::sleep_until(deadline).await;
                break;
            }
            tokio::select! {
                () = announced => {}
                () = tokio::time::sleep_until(next_poll) => {}
            }
        }
        metrics::counter!("tollgate_change_feed_answers_total", "kind" => "idle").increment(1);
        let (published, version) = self.signing_keys();
        Ok(WatchChangesResponse {
            cursor: request.since,
            reset: false,
            invalidations: Vec::new(),
            signing_keys: published.iter().filter_map(signing_key).collect(),
            session_issuer: self.tokens.policy().issuer.clone(),
            session_audience: self.tokens.policy().audience.clone(),
            signing_keys_version: version,
            limits: Some(limit_settings(&self.limits.get())),
        })
    }

    /// The answer for everything after the request's cursor, or `None` when nothing changed.
    async fn changes_after(
        &self,
        request: &WatchChangesRequest,
    ) -> Result<Option<WatchChangesResponse>, StoreError> {
        let since = request.since;
        let latest = self.store.latest_change().await?;
        let (published, version) = self.signing_keys();
        let history_lost = latest < since;
        let fresh_start = request.initial || history_lost;
        if !fresh_start && latest == since && version == request.signing_keys_version {
            return Ok(None);
        }
        let invalidations = if fresh_start {
            // Nothing of the watcher's cache can be trusted against this feed; revoked
            // sessions must still be refused wherever their tokens turn up.
            let now = crate::domain::now().timestamp();
            self.store.live_session_revocations(now).await?
        } else {
            self.store
                .changes_since(since, MAX_CHANGES_PER_ANSWER)
                .await?
        };
        let cursor = if fresh_start {
            latest
        } else {
            invalidations.last().map_or(since, |change| change.cursor)
        };
        Ok(Some(WatchChangesResponse {
            cursor,
            reset: history_lost,
            invalidations: invalidations.iter().map(invalidation).collect(),
            signing_keys: published.iter().filter_map(signing_key).collect(),
            session_issuer: self.tokens.policy().issuer.clone(),
            session_audience: self.tokens.policy().audience.clone(),
            signing_keys_version: version,
            limits: Some(limit_settings(&self.limits.get())),
        }))
    }

    fn signing_keys(&self) -> (Vec<SigningKeyRecord>, String) {
        let published = self.tokens.published();
        let mut hash = Sha256::new();
        for key in &published {
            hash.update(key.kid.as_bytes());
            hash.update([0]);
        }
        (published, hex::encode(&hash.finalize()[..8]))
    }
}

fn invalidation(change: &Change) -> v1::Invalidation {
    let (subject, session_expires_at) = match &change.stale {
        Stale::User(id) => (invalidation::Subject::UserId(id.to_string()), 0),
        Stale::Key(id) => (invalidation::Subject::KeyId(id.to_string()), 0),
        Stale::Session {
            id,
            tokens_expire_at,
        } => (
            invalidation::Subject::SessionId(id.to_string()),
            *tokens_expire_at,
        ),
    };
    v1::Invalidation {
        cursor: change.cursor,
        subject: Some(subject),
        session_expires_at,
    }
}

fn signing_key(record: &SigningKeyRecord) -> Option<v1::SigningKey> {
    let (first, second) = record.public.decoded()?;
    let mut key = v1::SigningKey {
        kid: record.kid.clone(),
        alg: record.alg.as_str().to_string(),
        ..v1::SigningKey::default()
    };
    match record.public {
        PublicJwk::Okp { .. } => key.ed25519_public_key = first,
        PublicJwk::Rsa { .. } => {
            key.rsa_modulus = first;
            key.rsa_exponent = second;
        }
    }
    Some(key)
}
