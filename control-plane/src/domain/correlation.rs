//! The correlation id that ties one request's log lines, callouts and audit entries together:
//! Envoy's `x-request-id` when it is usable, else a fresh UUID.

use std::fmt;

/// The header that carries the correlation id, on HTTP requests and responses and as gRPC
/// metadata.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest correlation id taken from a client; a longer one is replaced.
pub const MAX_CORRELATION_ID_BYTES: usize = 128;

/// A request's correlation id: 1 to [`MAX_CORRELATION_ID_BYTES`] printable ASCII characters
/// other than space, so it is safe in logs, headers and audit entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(String);

impl CorrelationId {
    /// The id a client sent, if it is well formed.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let well_formed = (1..=MAX_CORRELATION_ID_BYTES).contains(&value.len())
            && value.iter().all(u8::is_ascii_graphic);
        well_formed.then(|| Self(String::from_utf8_lossy(value).into_owned()))
    }

    /// A fresh random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The id a client sent when it is well formed, else a fresh one.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        value.and_then(Self::parse).unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_bounded_ids_are_kept_and_others_replaced() {
        let envoy = b"4b1d7c0e-3f3a-4f5e-9a51-0a2d6a2b7d11";
        assert_eq!(
            CorrelationId::from_header(Some(envoy)).as_str().as_bytes(),
            envoy
        );
        for bad in [
            &b""[..],
            b"has space",
            b"line\nbreak",
            "caf\u{e9}".as_bytes(),
            &[b'a'; MAX_CORRELATION_ID_BYTES + 1],
        ] {
            let replaced = CorrelationId::from_header(Some(bad));
            assert!(uuid::Uuid::parse_str(replaced.as_str()).is_ok(), "{bad:?}");
        }
        assert_ne!(CorrelationId::generate(), CorrelationId::generate());
    }
}
