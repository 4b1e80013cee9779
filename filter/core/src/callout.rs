//! The lookups the filter sends to the control plane and how their answers are read.

use std::fmt;

use prost::Message;

use crate::cache::CacheEntry;
use crate::digest::KeyDigest;
use crate::local_digest::LocalDigest;
use crate::proto::{LookupKeyRequest, LookupKeyResponse, LookupUserRequest, LookupUserResponse};

/// gRPC service the filter calls.
pub const FILTER_SERVICE: &str = "tollgate.v1.FilterService";
/// gRPC method of the change feed.
pub const WATCH_CHANGES_METHOD: &str = "WatchChanges";
pub const CHECK_LIMITS_METHOD: &str = "CheckLimits";
pub const SYNC_LIMITS_METHOD: &str = "SyncLimits";
pub const REPORT_USAGE_METHOD: &str = "ReportUsage";
pub const ACQUIRE_ALLOWANCES_METHOD: &str = "AcquireAllowances";

const GRPC_STATUS_OK: u32 = 0;

/// Why the control plane gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalloutFailure {
    /// The host refused to start the call, e.g. because the cluster is unknown.
    NotDispatched,
    /// The call ended with this non-OK gRPC status (timeouts included).
    GrpcStatus(u32),
    /// The answer was not the expected message.
    UndecodableAnswer,
}

impl fmt::Display for CalloutFailure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotDispatched => formatter.write_str("the call could not be dispatched"),
            Self::GrpcStatus(status) => write!(formatter, "gRPC status {status}"),
            Self::UndecodableAnswer => formatter.write_str("the answer could not be decoded"),
        }
    }
}

/// What a paused request asks the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The principal of an API key, by the key's SHA-256; the answer is kept in this VM
    /// under its local digest.
    Key {
        digest: KeyDigest,
        local: LocalDigest,
    },
    /// The principal of a session's user, by user id.
    User(String),
}

impl Lookup {
    /// The gRPC method of [`FILTER_SERVICE`] to call.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Key { .. } => "LookupKey",
            Self::User(_) => "LookupUser",
        }
    }

    /// The encoded request message.
    pub fn request(&self) -> Vec<u8> {
        match self {
            Self::Key { digest, .. } => LookupKeyRequest {
                key_digest: digest.as_bytes().to_vec(),
            }
            .encode_to_vec(),
            Self::User(user_id) => LookupUserRequest {
                user_id: user_id.clone(),
            }
            .encode_to_vec(),
        }
    }

    /// The cache entry for the answer of a finished call received at `now_ms`. A missing body
    /// with status OK is an empty message: every field at its default.
    pub fn read_answer(
        &self,
        grpc_status: u32,
        body: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<CacheEntry, CalloutFailure> {
        if grpc_status != GRPC_STATUS_OK {
            return Err(CalloutFailure::GrpcStatus(grpc_status));
        }
        let body = body.unwrap_or_default();
        let (principal, ttl_secs, cursor) = match self {
            Self::Key { .. } => LookupKeyResponse::decode(body)
                .map(|a| (a.principal, a.cache_ttl_seconds, a.cursor)),
            Self::User(_) => LookupUserResponse::decode(body)
                .map(|a| (a.principal, a.cache_ttl_seconds, a.cursor)),
        }
        .map_err(|_| CalloutFailure::UndecodableAnswer)?;
        Ok(CacheEntry::for_answer(principal, ttl_secs, cursor, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local_digest::LocalDigester;
    use crate::proto::Principal;

    fn key_lookup(key: &[u8]) -> Lookup {
        Lookup::Key {
            digest: KeyDigest::of_key(key),
            local: LocalDigester::new([1; 16]).digest(key),
        }
    }

    fn alice() -> Principal {
        Principal {
            user_id: "u_alice".to_owned(),
            ..Principal::default()
        }
    }

    #[test]
    fn key_lookups_carry_the_digest() {
        let lookup = key_lookup(b"k3y");
        let request = LookupKeyRequest::decode(lookup.request().as_slice()).expect("decodes");
        assert_eq!(
            request.key_digest,
            KeyDigest::of_key(b"k3y").as_bytes().to_vec()
        );
        assert_eq!(lookup.method(), "LookupKey");
    }

    #[test]
    fn user_lookups_carry_the_user_id() {
        let lookup = Lookup::User("u_alice".to_owned());
        let request = LookupUserRequest::decode(lookup.request().as_slice()).expect("decodes");
        assert_eq!(request.user_id, "u_alice");
        assert_eq!(lookup.method(), "LookupUser");
    }

    #[test]
    fn reads_an_ok_answer_into_a_cache_entry() {
        let answer = LookupKeyResponse {
            principal: Some(alice()),
            cache_ttl_seconds: 30,
            cursor: 9,
        };
        let entry = key_lookup(b"k")
            .read_answer(0, Some(&answer.encode_to_vec()), 1_000)
            .expect("answer");
        assert_eq!(entry, CacheEntry::for_answer(Some(alice()), 30, 9, 1_000));
    }

    #[test]
    fn ok_without_a_body_is_a_negative_answer() {
        let entry = Lookup::User("u".to_owned())
            .read_answer(0, None, 0)
            .expect("answer");
        assert_eq!(entry.principal, None);
    }

    #[test]
    fn non_ok_status_and_garbage_are_failures() {
        let lookup = key_lookup(b"k");
        // 4 is DEADLINE_EXCEEDED, 14 is UNAVAILABLE.
        for status in [4, 14] {
            assert_eq!(
                lookup.read_answer(status, None, 0),
                Err(CalloutFailure::GrpcStatus(status))
            );
        }
        assert_eq!(
            lookup.read_answer(0, Some(&[0x0a, 0x7f, 0x01]), 0),
            Err(CalloutFailure::UndecodableAnswer)
        );
    }
}
