//! Proving who someone is: passwords, sessions and their signing keys, and the server secret
//! behind key hashes. Calls `domain`, `accounts`, `store`, and `changes` to tell the data plane
//! of new signing keys.

pub mod envoy_credential;
pub mod password;
pub mod sealing;
pub mod secret;
pub mod session;
pub mod signing;
pub mod tokens;
