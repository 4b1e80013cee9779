//! Which client headers must not reach the upstream.

use crate::credential::CredentialSource;

const IDENTITY_HEADER_PREFIX: &str = "x-tollgate-";

/// Lowercase names of the request headers to remove before forwarding an allowed request:
/// `x-api-key`, `authorization` when it carried the key, and every `x-tollgate-*` header the
/// client sent (only the filter may set those). Each name is listed once, in request order.
pub fn headers_to_remove<N, V>(headers: &[(N, V)], key_source: CredentialSource) -> Vec<String>
where
    N: AsRef<str>,
{
    let mut names: Vec<String> = Vec::new();
    for (name, _) in headers {
        let name = name.as_ref();
        let carries_the_key = name.eq_ignore_ascii_case("x-api-key")
            || (name.eq_ignore_ascii_case("authorization")
                && key_source == CredentialSource::AuthorizationBearer);
        let forged_identity = name
            .get(..IDENTITY_HEADER_PREFIX.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(IDENTITY_HEADER_PREFIX));
        if carries_the_key || forged_identity {
            let name = name.to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remove(headers: &[(&str, &str)], key_source: CredentialSource) -> Vec<String> {
        headers_to_remove(headers, key_source)
    }

    #[test]
    fn removes_the_api_key_header() {
        let headers = [("x-api-key", "k3y"), ("accept", "*/*")];

        assert_eq!(
            remove(&headers, CredentialSource::ApiKeyHeader),
            ["x-api-key"]
        );
    }

    #[test]
    fn removes_authorization_when_it_carried_the_key() {
        let headers = [("authorization", "Bearer k3y"), ("accept", "*/*")];

        assert_eq!(
            remove(&headers, CredentialSource::AuthorizationBearer),
            ["authorization"]
        );
    }

    #[test]
    fn keeps_authorization_when_the_key_came_from_x_api_key() {
        let headers = [("x-api-key", "k3y"), ("authorization", "Bearer other")];

        assert_eq!(
            remove(&headers, CredentialSource::ApiKeyHeader),
            ["x-api-key"]
        );
    }

    #[test]
    fn removes_every_client_sent_tollgate_header_in_any_case() {
        let headers = [
            ("X-Tollgate-User-Id", "u_admin"),
            ("x-tollgate-groups", "g_admins"),
            ("x-tollgate-anything-else", "1"),
            ("x-tollgateway", "not ours"),
            ("x-api-key", "k3y"),
        ];

        assert_eq!(
            remove(&headers, CredentialSource::ApiKeyHeader),
            [
                "x-tollgate-user-id",
                "x-tollgate-groups",
                "x-tollgate-anything-else",
                "x-api-key"
            ]
        );
    }

    #[test]
    fn lists_a_repeated_header_once() {
        let headers = [
            ("x-tollgate-user-id", "a"),
            ("X-Tollgate-User-Id", "b"),
            ("x-api-key", "k3y"),
        ];

        assert_eq!(
            remove(&headers, CredentialSource::ApiKeyHeader),
            ["x-tollgate-user-id", "x-api-key"]
        );
    }

    #[test]
    fn leaves_ordinary_headers_alone() {
        let headers = [("accept", "*/*"), ("x-request-id", "r1"), ("cookie", "a=b")];

        assert!(remove(&headers, CredentialSource::ApiKeyHeader).is_empty());
    }
}
