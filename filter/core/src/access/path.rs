//! Paths that could name one resource to a prefix check and another to the upstream.

use std::fmt;

/// Why a path is not in normal form. Scopes containing one are refused when parsed; requests
/// containing one are refused by [`super::Scopes::permits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathFlaw {
    /// A `.` or `..` segment, plain or percent-encoded (`%2e`), also with a `;` parameter
    /// (`..;`, which some servers strip before resolving): the upstream resolves it against the
    /// segments before it, escaping the prefix that was checked.
    DotSegment,
    /// An empty segment (`//`), which many servers merge away.
    EmptySegment,
    /// `%2F` or `%5C` in any case: a slash or backslash that a server may decode after the check.
    EncodedSeparator,
    /// A raw backslash, which some servers read as `/`.
    Backslash,
}

impl fmt::Display for PathFlaw {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::DotSegment => "contains a `.` or `..` segment",
            Self::EmptySegment => "contains an empty segment (`//`)",
            Self::EncodedSeparator => "contains an encoded slash or backslash (`%2F`, `%5C`)",
            Self::Backslash => "contains a backslash",
        })
    }
}

/// The first flaw of `path`, which starts with `/` and has no query string; `None` when it is in
/// normal form. A trailing `/` is normal.
///
/// One pass over the bytes, since this runs on every request of a scoped key.
pub(super) fn find_flaw(path: &str) -> Option<PathFlaw> {
    let bytes = path.as_bytes();
    let mut segment_start = 1;
    for (index, &byte) in bytes.iter().enumerate().skip(1) {
        match byte {
            b'/' => {
                let segment = bytes.get(segment_start..index).unwrap_or_default();
                if let Some(flaw) = segment_flaw(segment, false) {
                    return Some(flaw);
                }
                segment_start = index + 1;
            }
            b'%' if is_encoded_separator(bytes.get(index + 1..index + 3)) => {
                return Some(PathFlaw::EncodedSeparator);
            }
            b'\\' => return Some(PathFlaw::Backslash),
            _ => {}
        }
    }
    segment_flaw(bytes.get(segment_start..).unwrap_or_default(), true)
}

/// Judges a segment by its name, the part before any `;` parameters.
fn segment_flaw(segment: &[u8], is_last: bool) -> Option<PathFlaw> {
    let name = segment
        .split(|&byte| byte == b';')
        .next()
        .unwrap_or_default();
    if name.is_empty() && !is_last {
        Some(PathFlaw::EmptySegment)
    } else if is_dot_segment(name) {
        Some(PathFlaw::DotSegment)
    } else {
        None
    }
}

fn is_encoded_separator(hex: Option<&[u8]>) -> bool {
    matches!(hex, Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C']))
}

/// `.` or `..`, each dot possibly written as `%2e` or `%2E`.
fn is_dot_segment(mut name: &[u8]) -> bool {
    let mut dots = 0;
    while !name.is_empty() {
        if let Some(rest) = name.strip_prefix(b".") {
            name = rest;
        } else if name
            .get(..3)
            .is_some_and(|encoded| encoded.eq_ignore_ascii_case(b"%2e"))
        {
            name = &name[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_have_no_flaw() {
        for path in [
            "/",
            "/v1",
            "/v1/",
            "/v1/images/123",
            "/v1/images/...",
            "/v1/.well-known/x",
            "/v1/a..b",
            "/v1/%2e%2e%2e",
            "/v1/images;v=2",
            "/v1/%41%20",
            "/v1/images/%2",
        ] {
            assert_eq!(find_flaw(path), None, "for {path:?}");
        }
    }

    #[test]
    fn finds_dot_segments_plain_encoded_or_with_parameters() {
        for path in [
            "/v1/../admin",
            "/v1/./admin",
            "/v1/images/..",
            "/v1/images/.",
            "/..",
            "/v1/%2e%2e/admin",
            "/v1/%2E%2E/admin",
            "/v1/.%2e/admin",
            "/v1/%2e./admin",
            "/v1/%2e/admin",
            "/v1/..;/admin",
            "/v1/..;jsessionid=1/admin",
        ] {
            assert_eq!(find_flaw(path), Some(PathFlaw::DotSegment), "for {path:?}");
        }
    }

    #[test]
    fn finds_empty_segments_but_allows_a_trailing_slash() {
        for path in ["//", "//admin", "/v1//admin", "/v1/;/admin"] {
            assert_eq!(
                find_flaw(path),
                Some(PathFlaw::EmptySegment),
                "for {path:?}"
            );
        }
        assert_eq!(find_flaw("/v1/images/"), None);
    }

    #[test]
    fn finds_encoded_separators_in_any_case() {
        for path in [
            "/v1/images%2f..%2fadmin",
            "/v1/images%2F",
            "/v1%5cadmin",
            "/v1%5Cadmin",
        ] {
            assert_eq!(
                find_flaw(path),
                Some(PathFlaw::EncodedSeparator),
                "for {path:?}"
            );
        }
    }

    #[test]
    fn finds_backslashes() {
        assert_eq!(
            find_flaw("/v1/images\\..\\admin"),
            Some(PathFlaw::Backslash)
        );
    }
}
