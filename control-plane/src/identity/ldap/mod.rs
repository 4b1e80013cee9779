//! Logins against an LDAP directory: search for the person with a service account, then bind
//! as the entry found with their password ([`directory`]); the Tollgate user that mirrors the
//! entry ([`accounts`]); and the periodic re-reading of every mirrored user ([`sync`]).

pub mod accounts;
pub mod directory;
pub mod filter;
pub mod settings;
pub mod sync;

pub use settings::{BindPassword, GroupLookup, GroupMap, LdapSettings, OnUnavailable};
