//! Tamper evidence for the audit log. Every entry takes the next place (`seq`) in one chain and
//! carries a keyed hash (HMAC-SHA256 under a key derived from the server secret) of its stored
//! columns and the hash of the entry before it. Without the secret, nobody who can write to the
//! database can alter, remove or insert an entry, or cut the chain's end, without
//! [`verify`] naming the first place where the chain breaks.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::domain::derived_key::derive_key;

/// Separates this key from every other one derived from the server secret.
const KEY_CONTEXT: &[u8] = b"tollgate audit chain v1";

/// An entry's columns as stored: what its hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainedColumns {
    pub seq: i64,
    pub id: String,
    pub at: String,
    pub actor_user_id: Option<String>,
    pub action: String,
    pub target: String,
    /// The details as stored (JSON text), not re-encoded.
    pub details: String,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
    pub tenant_id: Option<String>,
}

impl ChainedColumns {
    fn has_request_context(&self) -> bool {
        self.client_address.is_some() || self.user_agent.is_some() || self.correlation_id.is_some()
    }
}

/// Computes and checks the entries' hashes.
#[derive(Clone)]
pub struct AuditChainKey {
    key: [u8; 32],
}

impl AuditChainKey {
    pub fn new(server_secret: &[u8]) -> Self {
        Self {
            key: derive_key(server_secret, KEY_CONTEXT),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }

    /// The hash of `columns` following an entry whose hash is `previous` (`""` for the first).
    pub fn link(&self, previous: &str, columns: &ChainedColumns) -> String {
        let mut mac = self.mac();
        mac.update(previous.as_bytes());
        mac.update(b"\n");
        // A JSON array: no field can run into the next.
        let stored = (
            columns.seq,
            &columns.id,
            &columns.at,
            &columns.actor_user_id,
            &columns.action,
            &columns.target,
            &columns.details,
        );
        // An entry without a request context or a tenant (every one written before they were
        // recorded) hashes as it always did, so older entries still verify; each part an entry
        // has is covered, and the arrays' lengths tell the four shapes apart.
        let context = (
            &columns.client_address,
            &columns.user_agent,
            &columns.correlation_id,
        );
        let encoded = match (columns.has_request_context(), &columns.tenant_id) {
            (false, None) => serde_json::to_vec(&stored),
            (false, Some(tenant)) => serde_json::to_vec(&(stored, tenant)),
            (true, None) => serde_json::to_vec(&(stored, context.0, context.1, context.2)),
            (true, Some(tenant)) => {
                serde_json::to_vec(&(stored, context.0, context.1, context.2, tenant))
            }
        }
        .unwrap_or_else(|_| unreachable!("strings and numbers serialize"));
        mac.update(&encoded);
        hex::encode(mac.finalize().into_bytes())
    }
}

impl AuditChainKey {
    /// The keyed hash that vouches for the chain's recorded end: place `seq`, hash `head`.
    pub fn seal_end(&self, seq: i64, head: &str) -> String {
        let mut mac = self.mac();
        mac.update(format!("end\n{seq}\n{head}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `seal` vouches for the end `seq`, `head` (compared in constant time).
    pub fn end_is_sealed(&self, seq: i64, head: &str, seal: &str) -> bool {
        bool::from(self.seal_end(seq, head).as_bytes().ct_eq(seal.as_bytes()))
    }

    /// The keyed hash that vouches for a pruning's checkpoint: the last pruned entry was at
    /// place `seq` with hash `hash`, so the kept chain goes on from there.
    pub fn seal_checkpoint(&self, seq: i64, hash: &str) -> String {
        let mut mac = self.mac();
        mac.update(format!("checkpoint\n{seq}\n{hash}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `seal` vouches for the checkpoint `seq`, `hash` (compared in constant time).
    pub fn checkpoint_is_sealed(&self, seq: i64, hash: &str, seal: &str) -> bool {
        bool::from(
            self.seal_checkpoint(seq, hash)
                .as_bytes()
                .ct_eq(seal.as_bytes()),
        )
    }
}

/// An entry as read back for verification.
#[derive(Debug, Clone)]
pub struct ChainedEntry {
    pub columns: ChainedColumns,
    pub hash: String,
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {id} (place {seq}) was altered: its hash does not match its columns")]
    Altered { seq: i64, id: String },
    #[error("entries are missing before entry {id}: place {expected} is absent, {seq} follows")]
    Removed { expected: i64, seq: i64, id: String },
    #[error("entry {id} is outside the chain: it was inserted without the chain")]
    Inserted { id: String },
    #[error("the chain ends at place {found}, but its recorded end is place {recorded}: the last entries were removed")]
    Truncated { found: i64, recorded: i64 },
    #[error("the chain's recorded end (place {recorded}) was altered: entries after it were removed or cut off")]
    EndAltered { recorded: i64 },
    #[error("entry {id} lies beyond the chain's recorded end: it was inserted without the chain")]
    BeyondEnd { id: String },
    #[error("the checkpoint of pruned entries (place {recorded}) was altered")]
    CheckpointAltered { recorded: i64 },
}

/// Checks entries, walked in `seq` order from the chain's start, one at a time.
pub struct ChainWalk<'a> {
    key: &'a AuditChainKey,
    previous: String,
    next_seq: i64,
    walked: i64,
}

impl<'a> ChainWalk<'a> {
    pub fn new(key: &'a AuditChainKey) -> Self {
        Self::after(key, 0, String::new())
    }

    /// A walk of the entries kept after a checkpoint: the last pruned one was at place `seq`
    /// with hash `hash`.
    pub fn after(key: &'a AuditChainKey, seq: i64, hash: String) -> Self {
        Self {
            key,
            previous: hash,
            next_seq: seq + 1,
            walked: 0,
        }
    }

    /// Checks the next entry of the chain.
    pub fn step(&mut self, entry: &ChainedEntry) -> Result<(), ChainBreak> {
        let seq = entry.columns.seq;
        if seq != self.next_seq {
            return Err(ChainBreak::Removed {
                expected: self.next_seq,
                seq,
                id: entry.columns.id.clone(),
            });
        }
        let expected = self.key.link(&self.previous, &entry.columns);
        if !bool::from(expected.as_bytes().ct_eq(entry.hash.as_bytes())) {
            return Err(ChainBreak::Altered {
                seq,
                id: entry.columns.id.clone(),
            });
        }
        self.previous = expected;
        self.next_seq = seq + 1;
        self.walked += 1;
        Ok(())
    }

    /// Checks that the walk reached the recorded end of the chain (`seq` and hash); the
    /// number of entries walked.
    pub fn finish(&self, recorded_seq: i64, recorded_head: &str) -> Result<i64, ChainBreak> {
        let found = self.next_seq - 1;
        if found != recorded_seq
            || !bool::from(self.previous.as_bytes().ct_eq(recorded_head.as_bytes()))
        {
            return Err(ChainBreak::Truncated {
                found,
                recorded: recorded_seq,
            });
        }
        Ok(self.walked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(key: &AuditChainKey, count: i64) -> Vec<ChainedEntry> {
        let mut previous = String::new();
        (1..=count)
            .map(|seq| {
                let columns = ChainedColumns {
                    seq,
                    id: format!("a_{seq}"),
                    at: "2026-12-07T17:00:00Z".into(),
                    actor_user_id: None,
                    action: "user.created".into(),
                    target: "u_1".into(),
                    details: "{}".into(),
                    client_address: None,
                    user_agent: None,
                    correlation_id: None,
                    tenant_id: None,
                };
                let hash = key.link(&previous, &columns);
                previous.clone_from(&hash);
                ChainedEntry { columns, hash }
            })
            .collect()
    }

    fn walk(key: &AuditChainKey, entries: &[ChainedEntry]) -> Result<i64, ChainBreak> {
        let mut walk = ChainWalk::new(key);
        for entry in entries {
            walk.step(entry)?;
        }
        let last = entries.last().map_or((0, String::new()), |entry| {
            (entry.columns.seq, entry.hash.clone())
        });
        walk.finish(last.0, &last.1)
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_named() {
        let key = AuditChainKey::new(b"server secret");
        let entries = chain(&key, 4);
        assert_eq!(walk(&key, &entries), Ok(4));

        let mut altered = entries.clone();
        altered[1].columns.details = r#"{"role":"admin"}"#.into();
        assert_eq!(
            walk(&key, &altered),
            Err(ChainBreak::Altered {
                seq: 2,
                id: "a_2".into()
            })
        );

        let mut removed = entries.clone();
        removed.remove(2);
        assert!(matches!(
            walk(&key, &removed),
            Err(ChainBreak::Removed {
                expected: 3,
                seq: 4,
                ..
            })
        ));

        let mut walk_all = ChainWalk::new(&key);
        for entry in &entries[..3] {
            walk_all.step(entry).expect("intact");
        }
        assert_eq!(
            walk_all.finish(4, &entries[3].hash),
            Err(ChainBreak::Truncated {
                found: 3,
                recorded: 4
            })
        );

        let forged_elsewhere = AuditChainKey::new(b"a guessed secret");
        assert!(walk(&forged_elsewhere, &entries).is_err());
    }

    #[test]
    fn an_entry_without_request_context_hashes_as_before_it_was_recorded() {
        let key = AuditChainKey::new(b"server secret");
        let columns = &chain(&key, 1)[0].columns;
        let mut mac = key.mac();
        mac.update(b"\n");
        mac.update(br#"[1,"a_1","2026-12-07T17:00:00Z",null,"user.created","u_1","{}"]"#);
        assert_eq!(
            key.link("", columns),
            hex::encode(mac.finalize().into_bytes())
        );
    }

    #[test]
    fn a_request_context_is_covered_by_the_hash() {
        let key = AuditChainKey::new(b"server secret");
        let mut entries = chain(&key, 2);
        entries[1].columns.correlation_id = Some("req-1".into());
        entries[1].columns.client_address = Some("192.0.2.7".into());
        entries[1].hash = key.link(&entries[0].hash, &entries[1].columns);
        assert_eq!(walk(&key, &entries), Ok(2));

        for strip in [
            |columns: &mut ChainedColumns| columns.correlation_id = None,
            |columns: &mut ChainedColumns| columns.client_address = Some("198.51.100.1".into()),
            |columns: &mut ChainedColumns| columns.user_agent = Some("curl/8".into()),
        ] {
            let mut altered = entries.clone();
            strip(&mut altered[1].columns);
            assert_eq!(
                walk(&key, &altered),
                Err(ChainBreak::Altered {
                    seq: 2,
                    id: "a_2".into()
                })
            );
        }
    }
}
