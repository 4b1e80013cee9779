//! Why a session token was refused.

use std::fmt;

const SESSION_EXPIRED_CODE: &str = "session_expired";
const INVALID_SESSION_CODE: &str = "invalid_session";

/// Why [`verify`](super::verify) refused a token.
///
/// The variants are for logs and metrics; clients only ever see [`SessionError::code`], so a
/// caller cannot learn which check failed beyond "expired" or "invalid".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Not a compact JWS within the size limit, or its header or claims are not the expected
    /// JSON (wrong types, `crit`, `typ` other than JWT).
    Malformed,
    /// `alg` is not the algorithm pinned to the key named by `kid` (`none` and `HS*` never are).
    UnsupportedAlgorithm,
    /// `kid` names no key of the key set.
    UnknownKey,
    /// The signature does not verify with the key.
    BadSignature,
    /// `iss` is missing or is another issuer.
    WrongIssuer,
    /// `aud` is missing or does not name this audience.
    WrongAudience,
    /// `exp` has passed, leeway included.
    Expired,
    /// `nbf` is still in the future, leeway included.
    NotYetValid,
    /// A required claim is missing or empty; holds the claim's name.
    MissingClaim(&'static str),
}

impl SessionError {
    /// The public error code of the 401 answer: `session_expired` for an expired token, so that
    /// clients know to refresh, and `invalid_session` for everything else.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired => SESSION_EXPIRED_CODE,
            _ => INVALID_SESSION_CODE,
        }
    }
}

/// A short explanation for logs; it never contains the token or any part of it.
impl fmt::Display for SessionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => formatter.write_str("session token is malformed"),
            Self::UnsupportedAlgorithm => {
                formatter.write_str("session token algorithm is not the key's algorithm")
            }
            Self::UnknownKey => formatter.write_str("session token names an unknown key"),
            Self::BadSignature => formatter.write_str("session token signature is invalid"),
            Self::WrongIssuer => formatter.write_str("session token has another issuer"),
            Self::WrongAudience => formatter.write_str("session token is for another audience"),
            Self::Expired => formatter.write_str("session token has expired"),
            Self::NotYetValid => formatter.write_str("session token is not valid yet"),
            Self::MissingClaim(claim) => {
                write!(formatter, "session token lacks the `{claim}` claim")
            }
        }
    }
}

impl std::error::Error for SessionError {}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [SessionError; 9] = [
        SessionError::Malformed,
        SessionError::UnsupportedAlgorithm,
        SessionError::UnknownKey,
        SessionError::BadSignature,
        SessionError::WrongIssuer,
        SessionError::WrongAudience,
        SessionError::Expired,
        SessionError::NotYetValid,
        SessionError::MissingClaim("sub"),
    ];

    #[test]
    fn only_an_expired_token_has_its_own_code() {
        for error in ALL {
            let expected = if error == SessionError::Expired {
                "session_expired"
            } else {
                "invalid_session"
            };
            assert_eq!(error.code(), expected, "for {error:?}");
        }
    }

    #[test]
    fn messages_are_distinct() {
        let mut messages: Vec<String> = ALL.iter().map(ToString::to_string).collect();
        messages.sort();
        messages.dedup();

        assert_eq!(messages.len(), ALL.len());
    }

    #[test]
    fn missing_claim_message_names_the_claim() {
        assert_eq!(
            SessionError::MissingClaim("sid").to_string(),
            "session token lacks the `sid` claim"
        );
    }
}
