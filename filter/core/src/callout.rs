//! The `LookupKey` call to the control plane: what is sent and how the answer is read.

use std::fmt;

use prost::Message;

use crate::digest::KeyDigest;
use crate::proto::{LookupKeyRequest, LookupKeyResponse};

/// gRPC service the filter calls.
pub const FILTER_SERVICE: &str = "tollgate.v1.FilterService";
/// gRPC method resolving a key digest to a principal.
pub const LOOKUP_KEY_METHOD: &str = "LookupKey";

const GRPC_STATUS_OK: u32 = 0;

/// Why the control plane gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalloutFailure {
    /// The host refused to start the call, e.g. because the cluster is unknown.
    NotDispatched,
    /// The call ended with this non-OK gRPC status (timeouts included).
    GrpcStatus(u32),
    /// The answer was not a `LookupKeyResponse`.
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

/// The encoded `LookupKeyRequest` for `digest`.
pub fn lookup_key_request(digest: &KeyDigest) -> Vec<u8> {
    LookupKeyRequest {
        key_digest: digest.as_bytes().to_vec(),
    }
    .encode_to_vec()
}

/// Reads the answer of a finished call. A missing body with status OK is an empty message,
/// which is how an answer with every field at its default is encoded.
pub fn decode_lookup_answer(
    grpc_status: u32,
    body: Option<&[u8]>,
) -> Result<LookupKeyResponse, CalloutFailure> {
    if grpc_status != GRPC_STATUS_OK {
        return Err(CalloutFailure::GrpcStatus(grpc_status));
    }
    LookupKeyResponse::decode(body.unwrap_or_default())
        .map_err(|_| CalloutFailure::UndecodableAnswer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Principal;

    #[test]
    fn request_carries_the_digest() {
        let digest = KeyDigest::of_key(b"k3y");

        let request =
            LookupKeyRequest::decode(lookup_key_request(&digest).as_slice()).expect("decodes");

        assert_eq!(request.key_digest, digest.as_bytes().to_vec());
    }

    #[test]
    fn reads_an_ok_answer() {
        let answer = LookupKeyResponse {
            principal: Some(Principal {
                user_id: "u_alice".to_owned(),
                ..Principal::default()
            }),
            cache_ttl_seconds: 30,
            cursor: 0,
        };

        assert_eq!(
            decode_lookup_answer(0, Some(&answer.encode_to_vec())),
            Ok(answer)
        );
    }

    #[test]
    fn ok_without_a_body_is_an_empty_answer() {
        assert_eq!(
            decode_lookup_answer(0, None),
            Ok(LookupKeyResponse::default())
        );
    }

    #[test]
    fn non_ok_status_is_a_failure() {
        // 4 is DEADLINE_EXCEEDED, 14 is UNAVAILABLE.
        for status in [4, 14] {
            assert_eq!(
                decode_lookup_answer(status, None),
                Err(CalloutFailure::GrpcStatus(status))
            );
        }
    }

    #[test]
    fn garbage_body_is_a_failure() {
        assert_eq!(
            decode_lookup_answer(0, Some(&[0x0a, 0x7f, 0x01])),
            Err(CalloutFailure::UndecodableAnswer)
        );
    }
}
