//! Proving who someone is: passwords, and the server secret behind key hashes.

pub mod password;
pub mod sealing;
pub mod secret;
pub mod signing;
pub mod tokens;
