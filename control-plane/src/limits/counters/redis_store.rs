//! Counters in Redis, shared by every control-plane replica. Each call is one script that
//! reads and writes all its buckets atomically, timed by Redis's own clock.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use super::{Charged, Checked, CounterError, Counters, Draw, BATCH_MEMORY, ENVOY_PRESENCE};
use crate::config::RedisConfig;

/// How long a bucket outlives the moment it is full again.
const EXPIRY_MARGIN_MS: u64 = 1_000;
/// The longest pause between two attempts to reconnect.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

pub struct RedisCounters {
    connection: ConnectionManager,
    script: Script,
    key_prefix: String,
    timeout: Duration,
}

impl RedisCounters {
    /// Connects lazily: a Redis that is down at start-up fails calls, not the start.
    pub fn new(config: &RedisConfig) -> Result<Self, CounterError> {
        let timeout = Duration::from_millis(config.command_timeout_ms);
        let client = redis::Client::open(config.url.as_str())?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_max_delay(RECONNECT_MAX_DELAY);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, manager)?,
            script: Script::new(include_str!("buckets.lua")),
            key_prefix: config.key_prefix.clone(),
            timeout,
        })
    }

    fn bucket_key(&self, draw: &Draw) -> String {
        format!(
            "{}rl:{}:{}",
            self.key_prefix, draw.subject, draw.limit.window_seconds
        )
    }

    /// Runs the bucket script over `draws`; the caller adds what its mode needs. The reply
    /// is `header` values, then one backlog per draw.
    async fn run(
        &self,
        mode: &str,
        draws: &[Draw],
        extra_keys: &[String],
        extra_args: &[String],
        header: usize,
    ) -> Result<(Vec<u64>, Vec<u64>), CounterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(mode).arg(EXPIRY_MARGIN_MS);
        for draw in draws {
            invocation
                .key(self.bucket_key(draw))
                .arg(draw.limit.window_us())
                .arg(draw.limit.requests)
                .arg(draw.limit.burst)
                .arg(draw.count);
        }
        for key in extra_keys {
            invocation.key(key);
        }
        for arg in extra_args {
            invocation.arg(arg);
        }
        let mut connection = self.connection.clone();
        let mut reply: Vec<u64> = self
            .bounded(invocation.invoke_async(&mut connection))
            .await?;
        if reply.len() != draws.len() + header {
            return Err(CounterError::Malformed(format!(
                "{} values for {} buckets",
                reply.len(),
                draws.len()
            )));
        }
        let backlogs = reply.split_off(header);
        Ok((reply, backlogs))
    }

    /// Fails a call that takes longer than the command timeout, reconnection included, and
    /// keeps the backend gauge current.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, CounterError> {
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(CounterError::Redis(error)),
            Err(_) => Err(CounterError::Timeout(self.timeout)),
        };
        let up = if result.is_ok() { 1.0 } else { 0.0 };
        metrics::gauge!("tollgate_counter_backend_up").set(up);
        result
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn check(&self, draws: &[Draw]) -> Result<Checked, CounterError> {
        let (header, backlog_ms) = self.run("check", draws, &[], &[], 1).await?;
        Ok(Checked {
            admitted: header[0] == 1,
            backlog_ms,
        })
    }

    async fn charge(
        &self,
        node_id: &str,
        batch_id: &str,
        max_envoys: u32,
        draws: &[Draw],
    ) -> Result<Charged, CounterError> {
        let envoys_key = format!("{}envoys", self.key_prefix);
        let batch_key = format!("{}rlbatch:{batch_id}", self.key_prefix);
        let (header, backlog_ms) = self
            .run(
                "charge",
                draws,
                &[envoys_key, batch_key],
                &[
                    node_id.to_string(),
                    ENVOY_PRESENCE.as_micros().to_string(),
                    max_envoys.to_string(),
                    BATCH_MEMORY.as_millis().to_string(),
                ],
                3,
            )
            .await?;
        Ok(Charged {
            backlog_ms,
            envoys: u32::try_from(header[0]).unwrap_or(u32::MAX),
            counted: header[1] == 1,
            repeated: header[2] == 1,
        })
    }

    fn dependency(&self) -> Option<&'static str> {
        Some("redis")
    }

    async fn ping(&self) -> Result<(), CounterError> {
        let mut connection = self.connection.clone();
        let ping = redis::cmd("PING");
        self.bounded(ping.query_async::<()>(&mut connection)).await
    }
}
