//! Search filters written by the operator with one placeholder, filled with a value escaped
//! for LDAP filters, so no value can change the filter's structure (no LDAP injection).

use ldap3::ldap_escape;

/// A filter with one placeholder such as `{username}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterTemplate {
    text: String,
    placeholder: &'static str,
}

impl FilterTemplate {
    /// `text` must hold `placeholder`, no other `{...}`, and be a filter once filled.
    pub fn new(text: &str, placeholder: &'static str) -> Result<Self, String> {
        if !text.contains(placeholder) {
            return Err(format!("must contain {placeholder}"));
        }
        let rest = text.replace(placeholder, "sample");
        if rest.contains(['{', '}']) {
            return Err(format!("may contain no placeholder but {placeholder}"));
        }
        check_filter(&rest)?;
        Ok(Self {
            text: text.to_string(),
            placeholder,
        })
    }

    /// The filter with every placeholder replaced by `value`, escaped.
    pub fn render(&self, value: &str) -> String {
        self.text.replace(self.placeholder, &ldap_escape(value))
    }
}

/// Whether `filter` parses as an LDAP filter.
pub fn check_filter(filter: &str) -> Result<(), String> {
    ldap3::parse_filter(filter)
        .map(drop)
        .map_err(|()| "is not an LDAP search filter".to_string())
}

/// A DN as compared here: lowercase, without spaces around its components.
pub fn normalized_dn(dn: &str) -> String {
    dn.split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_so_they_cannot_change_the_filter() {
        let template = FilterTemplate::new("(&(objectClass=person)(uid={username}))", "{username}")
            .expect("valid");
        assert_eq!(
            template.render("*)(uid=*"),
            "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a))"
        );
        assert_eq!(
            template.render("alice"),
            "(&(objectClass=person)(uid=alice))"
        );
        assert_eq!(
            template.render("a\\b\0{username}"),
            "(&(objectClass=person)(uid=a\\5cb\\00{username}))"
        );
    }

    #[test]
    fn templates_need_their_placeholder_and_a_valid_filter() {
        assert!(FilterTemplate::new("(uid=alice)", "{username}").is_err());
        assert!(FilterTemplate::new("(uid={username})(", "{username}").is_err());
        assert!(FilterTemplate::new("(&(uid={username})(cn={dn}))", "{username}").is_err());
        assert!(FilterTemplate::new("(member={dn})", "{dn}").is_ok());
    }

    #[test]
    fn dns_compare_without_case_or_spaces() {
        assert_eq!(
            normalized_dn("CN=Admins, OU=Groups,dc=Example"),
            "cn=admins,ou=groups,dc=example"
        );
    }
}
