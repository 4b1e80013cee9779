//! Quoting untrusted values in error messages.

/// Longest part of a value quoted in an error; headers and configuration entries can be long.
const MAX_EXCERPT_CHARS: usize = 64;

/// The start of `value`, cut at [`MAX_EXCERPT_CHARS`] with `…` marking the cut.
///
/// Errors print the excerpt with `{:?}`, which escapes quotes and control characters, so a
/// client cannot forge log lines through it.
pub(super) fn excerpt(value: &str) -> String {
    match value.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_short_values_whole() {
        assert_eq!(excerpt("10.0.0.1/8"), "10.0.0.1/8");
        assert_eq!(excerpt(""), "");
    }

    #[test]
    fn cuts_long_values_on_a_character_boundary() {
        let long = "é".repeat(100);

        let shown = excerpt(&long);

        assert_eq!(shown.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
