//! Identifiers: a short type prefix and random characters, e.g. `u_3k9x...`.

use std::fmt;

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

const ID_RANDOM_CHARS: usize = 20;

fn random_lowercase_alphanumeric(len: usize) -> String {
    Alphanumeric
        .sample_string(&mut rand::rng(), len)
        .to_ascii_lowercase()
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random identifier.
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "_{}"), random_lowercase_alphanumeric(ID_RANDOM_CHARS)))
            }

            /// An identifier from outside: this type's prefix, then 1 to 64 lowercase letters
            /// and digits.
            pub fn parse(value: &str) -> Option<Self> {
                let random = value.strip_prefix(concat!($prefix, "_"))?;
                let well_formed = (1..=64).contains(&random.len())
                    && random.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                well_formed.then(|| Self(value.to_string()))
            }

            /// Wraps an identifier read from storage or a request path.
            pub fn from_string(value: String) -> Self {
                Self(value)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// Identifies a user.
    UserId,
    "u"
);
prefixed_id!(
    /// Identifies one API key of a user.
    ApiKeyId,
    "k"
);
prefixed_id!(
    /// Identifies a login session (the `sid` claim of its tokens).
    SessionId,
    "s"
);
prefixed_id!(
    /// Identifies a session signing key (the `kid` of its tokens).
    SigningKeyId,
    "sk"
);
prefixed_id!(
    /// Identifies a group.
    GroupId,
    "g"
);
prefixed_id!(
    /// Identifies an upstream backend.
    BackendId,
    "b"
);
prefixed_id!(
    /// Identifies a control-plane replica that takes a share of the health checks, for as
    /// long as the process runs.
    CheckerId,
    "hc"
);
prefixed_id!(
    /// Identifies an audit log entry.
    AuditId,
    "a"
);
prefixed_id!(
    /// Identifies a quota allowance granted to one Envoy worker.
    AllowanceId,
    "al"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_differ() {
        let a = UserId::generate();
        let b = UserId::generate();
        assert!(a.as_str().starts_with("u_"));
        assert_eq!(a.as_str().len(), 2 + ID_RANDOM_CHARS);
        assert_ne!(a, b);
        assert!(ApiKeyId::generate().as_str().starts_with("k_"));
    }

    #[test]
    fn parsing_checks_the_prefix_and_the_characters() {
        let id = UserId::generate();
        assert_eq!(UserId::parse(id.as_str()), Some(id));
        for bad in ["", "u_", "k_abc", "u_ABC", "u_a b", "u_abc\n"] {
            assert_eq!(UserId::parse(bad), None, "{bad:?}");
        }
    }
}
