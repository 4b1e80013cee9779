//! What a new password must be (`passwords.*`): long enough, of the required kinds of
//! characters, not one of the most common passwords, and not the account's own name or email.
//! A refusal names the rule it broke.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::accounts::user::User;

/// The 10,000 most common passwords, most common first, lowercased: the head of the list
/// Django ships (compiled by Royce Williams from breach corpora), one a line.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS.lines().collect());

/// The longest password accepted: bounds the work of refusing one.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// Names and emails shorter than this are not looked for inside a password.
const MIN_PERSONAL_CHARS: usize = 3;

/// A kind of character a policy may require at least one of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CharacterClass {
    Lowercase,
    Uppercase,
    Digit,
    Symbol,
}

impl CharacterClass {
    fn contains(self, c: char) -> bool {
        match self {
            Self::Lowercase => c.is_lowercase(),
            Self::Uppercase => c.is_uppercase(),
            Self::Digit => c.is_numeric(),
            Self::Symbol => !c.is_alphanumeric(),
        }
    }

    fn rule(self) -> &'static str {
        match self {
            Self::Lowercase => "lowercase",
            Self::Uppercase => "uppercase",
            Self::Digit => "digit",
            Self::Symbol => "symbol",
        }
    }

    fn described(self) -> &'static str {
        match self {
            Self::Lowercase => "a lowercase letter",
            Self::Uppercase => "an uppercase letter",
            Self::Digit => "a digit",
            Self::Symbol => "a character that is neither a letter nor a digit",
        }
    }
}

/// The rules for new passwords.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    /// Classes of which a password holds at least one character each.
    pub required_classes: Vec<CharacterClass>,
    /// Refuse the most common passwords, whatever their case.
    pub refuse_common: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 8,
            required_classes: Vec::new(),
            refuse_common: true,
        }
    }
}

/// The account a password is for: it may not contain their name or email.
#[derive(Debug, Clone, Copy)]
pub struct PasswordOwner<'a> {
    pub username: &'a str,
    pub email: Option<&'a str>,
}

impl<'a> PasswordOwner<'a> {
    pub fn of(user: &'a User) -> Self {
        Self {
            username: &user.username,
            email: user.email.as_deref(),
        }
    }
}

/// A password a policy refuses: `rule` names the rule, `message` says what it demands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the password breaks the rule {rule}: {message}")]
pub struct PolicyViolation {
    pub rule: &'static str,
    pub message: String,
}

impl PolicyViolation {
    fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

impl PasswordPolicy {
    /// The first rule `password` breaks for `owner`, if any.
    pub fn check(&self, password: &str, owner: PasswordOwner) -> Result<(), PolicyViolation> {
        let chars = password.chars().count();
        if chars < self.min_length {
            return Err(PolicyViolation::new(
                "min_length",
                format!("must be at least {} characters", self.min_length),
            ));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(PolicyViolation::new(
                "max_length",
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        if let Some(missing) = self
            .required_classes
            .iter()
            .find(|class| !password.chars().any(|c| class.contains(c)))
        {
            return Err(PolicyViolation::new(
                missing.rule(),
                format!("must contain {}", missing.described()),
            ));
        }
        let lowered = password.to_lowercase();
        if self.refuse_common && COMMON.contains(lowered.as_str()) {
            return Err(PolicyViolation::new(
                "common",
                "is one of the most common passwords; choose another",
            ));
        }
        if contains_personal(&lowered, owner.username) {
            return Err(PolicyViolation::new(
                "not_username",
                "must not contain the username",
            ));
        }
        let email = owner.email.unwrap_or_default();
        let local_part = email.split('@').next().unwrap_or_default();
        if contains_personal(&lowered, email) || contains_personal(&lowered, local_part) {
            return Err(PolicyViolation::new(
                "not_email",
                "must not contain the email address",
            ));
        }
        Ok(())
    }
}

fn contains_personal(lowered_password: &str, personal: &str) -> bool {
    personal.chars().count() >= MIN_PERSONAL_CHARS
        && lowered_password.contains(&personal.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: PasswordOwner = PasswordOwner {
        username: "alice",
        email: Some("a.liddell@example.com"),
    };

    fn rule(policy: &PasswordPolicy, password: &str) -> Option<&'static str> {
        policy
            .check(password, ALICE)
            .err()
            .map(|broken| broken.rule)
    }

    #[test]
    fn the_bundled_list_holds_ten_thousand_common_passwords() {
        assert_eq!(COMMON.len(), 10_000);
        assert!(COMMON.contains("password1"));
    }

    #[test]
    fn each_rule_is_named_when_broken() {
        let strict = PasswordPolicy {
            min_length: 10,
            required_classes: vec![
                CharacterClass::Lowercase,
                CharacterClass::Uppercase,
                CharacterClass::Digit,
                CharacterClass::Symbol,
            ],
            refuse_common: true,
        };
        assert_eq!(rule(&strict, "Sh0rt!"), Some("min_length"));
        assert_eq!(rule(&strict, &"a".repeat(1025)), Some("max_length"));
        assert_eq!(rule(&strict, "ALL CAPS 123"), Some("lowercase"));
        assert_eq!(rule(&strict, "no capitals 123"), Some("uppercase"));
        assert_eq!(rule(&strict, "No Digits Here"), Some("digit"));
        assert_eq!(rule(&strict, "NoSymbols123"), Some("symbol"));
        assert_eq!(rule(&strict, "Tr0ub4dor &3 alice"), Some("not_username"));
        assert_eq!(rule(&strict, "Tr0ub4dor &3 A.Liddell"), Some("not_email"));
        assert_eq!(rule(&strict, "Tr0ub4dor &3 horse"), None);

        let plain = PasswordPolicy::default();
        assert_eq!(rule(&plain, "Password1"), Some("common"));
        assert_eq!(rule(&plain, "correct horse battery"), None);
    }
}
