//! How much a principal may use: rate-limit settings and the global counters behind them,
//! quotas and their periods, the allowances Envoy workers admit from, usage reports from the
//! data plane, and the refusals it saw.
//!
//! Calls `domain`, `accounts` for whose limits they are, and `store` for durable usage.

pub mod allowances;
pub mod counters;
pub mod inherited;
pub mod quota;
pub mod quota_state;
pub mod rate_limits;
pub mod refusal_log;
pub mod subjects;
pub mod tenant_pool;
pub mod usage_reports;
pub mod user_labels;
