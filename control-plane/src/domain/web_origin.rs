//! Where a web page comes from, as browsers name it in the `Origin` header.

use url::Url;

/// An `http` or `https` origin in its serialised form: `https://admin.example.com`,
/// `http://127.0.0.1:8090` (lower-case host, default port left out, no path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin(String);

impl WebOrigin {
    /// The origin of a URL or origin; `None` for anything but `http` and `https`, `null`
    /// included.
    pub fn parse(text: &str) -> Option<Self> {
        let url = Url::parse(text).ok()?;
        matches!(url.scheme(), "http" | "https").then(|| Self(url.origin().ascii_serialization()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same scheme with another host and port (`authority`, as in a `Host` header).
    pub fn with_authority(&self, authority: &str) -> Option<Self> {
        let (scheme, _) = self.0.split_once("://")?;
        Self::parse(&format!("{scheme}://{authority}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_in_their_serialised_form() {
        let origin = WebOrigin::parse("HTTPS://Admin.Example.com:443").expect("origin");
        assert_eq!(origin.as_str(), "https://admin.example.com");
        assert_eq!(
            origin.with_authority("admin.example.com"),
            Some(origin.clone())
        );
        assert_ne!(
            origin.with_authority("admin.example.com:8443"),
            Some(origin)
        );
        for refused in ["null", "file:///etc", "admin.example.com", ""] {
            assert_eq!(WebOrigin::parse(refused), None, "{refused}");
        }
    }
}
