//! Global rate-limit counters: GCRA token buckets shared by every Envoy, held in this
//! process or, for several control-plane replicas, in Redis.

mod batches;
mod envoys;
pub mod gcra;
mod local;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::RedisConfig;
pub use gcra::Limit;
pub use local::LocalCounters;
pub use redis_store::RedisCounters;

/// How long an Envoy counts as present after its last sync.
pub const ENVOY_PRESENCE: Duration = Duration::from_secs(60);
/// How long a charged sync batch's id is remembered, so that a retry is not charged again.
/// Retries come within seconds.
pub const BATCH_MEMORY: Duration = Duration::from_secs(300);

/// Why the counters could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("the counter store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the counter store failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the counter store answered unexpectedly: {0}")]
    Malformed(String),
}

/// Requests to take from, or charge to, one bucket. A bucket is named by its subject and
/// its limit's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub subject: String,
    pub limit: Limit,
    pub count: u32,
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// True when the requests were taken from every bucket.
    pub admitted: bool,
    /// Per bucket, in the order asked: how far its theoretical arrival time lies ahead of
    /// now, in milliseconds rounded up.
    pub backlog_ms: Vec<u64>,
}

/// The answer to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    /// Per bucket, in the order charged, as in [`Checked::backlog_ms`].
    pub backlog_ms: Vec<u64>,
    /// How many Envoys synced within [`ENVOY_PRESENCE`], at most the cap the charge named:
    /// the caller included, unless it was beyond the cap.
    pub envoys: u32,
    /// Whether the caller is among the Envoys counted.
    pub counted: bool,
    /// True when the batch was charged before: nothing was charged again, and the backlogs
    /// are the buckets' current ones.
    pub repeated: bool,
}

#[async_trait]
pub trait Counters: Send + Sync {
    /// Takes every draw from its bucket, or, when any bucket lacks room, none of them.
    /// The draws name distinct buckets, as every method's do.
    async fn check(&self, draws: &[Draw]) -> Result<Checked, CounterError>;

    /// Charges requests an Envoy already admitted in batch `batch_id`; never refused, and
    /// a batch charged within [`BATCH_MEMORY`] is not charged again. Also records that
    /// `node_id` synced, unless `max_envoys` other Envoys synced within [`ENVOY_PRESENCE`].
    async fn charge(
        &self,
        node_id: &str,
        batch_id: &str,
        max_envoys: u32,
        draws: &[Draw],
    ) -> Result<Charged, CounterError>;

    /// The service the counters live in, for the health report; `None` when in-process.
    fn dependency(&self) -> Option<&'static str>;

    /// Checks that the counters can be reached.
    async fn ping(&self) -> Result<(), CounterError>;
}

/// The counters the configuration asks for: Redis when `redis.url` is set.
pub fn open(config: &RedisConfig) -> Result<Arc<dyn Counters>, CounterError> {
    if config.url.is_empty() {
        return Ok(Arc::new(LocalCounters::new()));
    }
    Ok(Arc::new(RedisCounters::new(config)?))
}
