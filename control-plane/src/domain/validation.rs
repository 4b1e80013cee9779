//! Values checked where they enter: a type whose rule a value breaks refuses it with an
//! [`InvalidField`], and the same refusal reaches a JSON body, the YAML configuration and a
//! stored row alike.

use std::cell::RefCell;
use std::fmt::Display;

use serde::de::{Deserialize, Deserializer, Error};

/// A field that failed validation, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct InvalidField {
    pub field: &'static str,
    pub problem: &'static str,
}

thread_local! {
    /// The message of the latest refusal by [`deserialize_checked`] on this thread.
    static LATEST_REFUSAL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Deserializes `Raw` and converts it with `T::try_from`, so a value that breaks `T`'s rule
/// fails deserialization with the rule's own message.
pub fn deserialize_checked<'de, D, Raw, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    Raw: Deserialize<'de>,
    T: TryFrom<Raw>,
    T::Error: Display,
{
    let raw = Raw::deserialize(deserializer)?;
    T::try_from(raw).map_err(|refusal| {
        let message = refusal.to_string();
        LATEST_REFUSAL.with(|latest| latest.replace(Some(message.clone())));
        D::Error::custom(message)
    })
}

/// Runs a deserialization and returns its result with the message of the refusal it met,
/// if one failed it: a value breaking its type's rule, rather than input of the wrong shape.
pub fn with_refusal<T>(deserialize: impl FnOnce() -> T) -> (T, Option<String>) {
    LATEST_REFUSAL.with(|latest| latest.replace(None));
    let result = deserialize();
    (result, LATEST_REFUSAL.with(|latest| latest.replace(None)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::backend::Weight;

    #[test]
    fn a_refused_value_is_told_from_input_of_the_wrong_shape() {
        let (result, refusal) = with_refusal(|| serde_json::from_str::<Weight>("0"));
        assert!(result.is_err());
        assert_eq!(refusal.as_deref(), Some("`weight` must be 1 to 100"));
        let (result, refusal) = with_refusal(|| serde_json::from_str::<Weight>("\"heavy\""));
        assert!(result.is_err());
        assert_eq!(refusal, None);
        let (result, refusal) = with_refusal(|| serde_json::from_str::<Weight>("70"));
        assert_eq!(result.map(Weight::get).ok(), Some(70));
        assert_eq!(refusal, None);
    }
}
