//! Strict JSON objects for the JOSE header and the claims.

use serde::de::DeserializeOwned;

/// Parses `json` as `T`, accepting only a JSON object.
///
/// A derived `Deserialize` for a struct also accepts an array of its fields in order, which a
/// JWS header or claims set never is; requiring the opening brace rules that out.
pub(super) fn from_object<T: DeserializeOwned>(json: &[u8]) -> Option<T> {
    if json.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use serde::de::IgnoredAny;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Pair {
        first: String,
        second: u8,
    }

    #[test]
    fn reads_an_object() {
        assert_eq!(
            from_object::<Pair>(br#" {"second": 2, "first": "one"} "#),
            Some(Pair {
                first: "one".to_owned(),
                second: 2
            })
        );
    }

    #[test]
    fn refuses_the_array_form_of_a_struct() {
        assert_eq!(from_object::<Pair>(br#"["one", 2]"#), None);
    }

    #[test]
    fn refuses_anything_but_one_object() {
        for json in [
            &b""[..],
            b"null",
            b"42",
            b"\"{}\"",
            b"{",
            b"{} {}",
            b"{}x",
            b"{\"a\":1,}",
            b"\xef\xbb\xbf{}",
        ] {
            assert!(from_object::<IgnoredAny>(json).is_none(), "for {json:?}");
        }
    }

    #[test]
    fn refuses_a_repeated_field() {
        assert_eq!(
            from_object::<Pair>(br#"{"first": "a", "second": 1, "first": "b"}"#),
            None
        );
    }
}
