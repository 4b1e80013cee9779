//! Domain types and the rules that hold whatever the storage or transport.

pub mod api_key;
pub mod audit;
pub mod backend;
pub mod change;
pub mod group;
pub mod ids;
pub mod limits;
pub mod pool;
pub mod quota;
pub mod session;
pub mod user;

/// A timestamp as stored and shown: RFC 3339, UTC, millisecond precision.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time, truncated to what storage keeps so values round-trip.
pub fn now() -> Timestamp {
    use chrono::{SubsecRound, Utc};
    Utc::now().trunc_subsecs(3)
}
