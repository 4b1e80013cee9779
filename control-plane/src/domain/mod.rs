//! The vocabulary every capability shares: identifiers, timestamps and how values are
//! validated where they enter.

pub mod at_most_every;
pub mod audit_sample;
pub mod correlation;
pub mod derived_key;
pub mod ids;
pub mod live;
pub mod validation;
pub mod web_origin;

/// A timestamp as stored and shown: RFC 3339, UTC, millisecond precision.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time, truncated to what storage keeps so values round-trip.
pub fn now() -> Timestamp {
    use chrono::{SubsecRound, Utc};
    Utc::now().trunc_subsecs(3)
}
