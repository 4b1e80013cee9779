//! The messages Tollgate mails, in plain text. Each carries at most one link and says what to
//! do when the reader did not ask for it.

/// One message, before it is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub subject: String,
    pub body: String,
}

/// The link that proves the reader owns the address `username` registered with.
pub fn verify_email(username: &str, link: &str, valid_hours: i64) -> Letter {
    Letter {
        subject: "Confirm your email address".into(),
        body: format!(
            "Someone, hopefully you, registered the account \"{username}\" with this address.\n\n\
             To confirm the address, open this link within {valid_hours} hours:\n\n{link}\n\n\
             If it was not you, ignore this message: the account cannot be used without it.\n"
        ),
    }
}

/// Sent instead of a verification link when the address already belongs to an account, so a
/// registration reveals nothing about which addresses have one.
pub fn already_registered() -> Letter {
    Letter {
        subject: "Your email address is already registered".into(),
        body: "Someone, hopefully you, tried to register a new account with this address, \
               which already has one.\n\n\
               If you forgot your password, ask for a password reset instead. If it was not \
               you, ignore this message: nothing changed.\n"
            .into(),
    }
}

/// The link that sets a new password.
pub fn reset_password(username: &str, link: &str, valid_minutes: i64) -> Letter {
    Letter {
        subject: "Reset your password".into(),
        body: format!(
            "Someone, hopefully you, asked to reset the password of the account \
             \"{username}\".\n\n\
             To choose a new password, open this link within {valid_minutes} minutes:\n\n\
             {link}\n\n\
             If it was not you, ignore this message: your password stays as it is.\n"
        ),
    }
}
