//! Proving who someone is: the login methods, passwords and the policy for new ones, second
//! factors (TOTP and backup codes), sessions
//! and their signing keys, the server secret behind key hashes, and holding back those who
//! keep failing to (account backoff and lockout, failures per address). Calls `domain`, `accounts`, `store`, `limits` for the shared counters, and
//! `changes` to tell the data plane of new signing keys.

pub mod address_failures;
pub mod device;
pub mod email_links;
pub mod envoy_credential;
pub mod ldap;
pub mod lockout;
pub mod methods;
pub mod mfa;
pub mod oidc;
pub mod password;
pub mod password_policy;
pub mod sealing;
pub mod secret;
pub mod self_service;
pub mod session;
pub mod signing;
pub mod tokens;
pub mod totp;
